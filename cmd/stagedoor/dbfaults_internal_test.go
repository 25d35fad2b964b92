package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/store"
	"github.com/stagedoor/stagedoor/store/pgtest"
)

// The lock holder runs in a second process: SQLite locks are per process, and T24 is
// about another program (a backup, an operator's sqlite3 shell) holding the database.
const lockHolderEnv = "STAGEDOOR_TEST_HOLD_LOCK_DB"

// TestMain runs this test binary as the lock holder of TestDatabaseFaults when
// lockHolderEnv is set; otherwise it runs the tests. The holder takes BEGIN EXCLUSIVE on
// that database, prints "locked", and holds the lock until its stdin closes.
func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode) // as main does
	path := os.Getenv(lockHolderEnv)
	if path == "" {
		os.Exit(pgtest.Main(m))
	}
	if err := holdExclusiveLock(path); err != nil {
		fmt.Fprintln(os.Stderr, "lock holder:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func holdExclusiveLock(path string) error {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		return err
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_, err = conn.ExecContext(ctx, "ROLLBACK")
	return err
}

// faultService is `serve` on a database at a path of the test's choosing.
type faultService struct {
	t        *testing.T
	internal string
	key      string
	client   *http.Client
}

func startFaultService(t *testing.T, dbPath string) *faultService {
	t.Helper()
	db, err := store.Open(t.Context(), dbPath)
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	u, err := db.CreateUser(t.Context(), "benw")
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	_ = db.Close()

	ts := startTestService(t, "--db", dbPath)
	s := &faultService{t: t, internal: ts.internal, key: u.StreamKey, client: &http.Client{Timeout: 5 * time.Second}}
	t.Cleanup(func() {
		ts.stop()
		if strings.Contains(ts.logs.String(), s.key) {
			t.Errorf("service log contains the stream key")
		}
	})
	return s
}

// auth asks what MediaMTX asks for an RTMP publish on live/<key>; it returns the status
// and how long the answer took.
func (s *faultService) auth(key string) (int, time.Duration, error) {
	body := `{"user":"","password":"","token":"","ip":"192.0.2.10","action":"publish","path":"live/` + key +
		`","protocol":"rtmp","id":null,"query":""}`
	start := time.Now()
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.internal+"/mediamtx/auth", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Close = true // a new connection per call, as MediaMTX does
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, time.Since(start), err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, time.Since(start), nil
}

func (s *faultService) healthy(want bool) error {
	resp, err := s.client.Get("http://" + s.internal + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if got := resp.StatusCode == http.StatusOK; got != want {
		return fmt.Errorf("/healthz = %d, want healthy=%v", resp.StatusCode, want)
	}
	return nil
}

// eventually polls fn every 100 ms until it returns nil or timeout passes. The timeouts
// are functional bounds from threats.md (fault seen, recovery), not speed targets.
func (s *faultService) eventually(timeout time.Duration, what string, fn func() error) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: not reached within %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkFaulted asserts T24 while the fault lasts: /healthz is unhealthy and every publish,
// the valid key's included, gets a non-2xx answer within 2 s.
func (s *faultService) checkFaulted() {
	s.t.Helper()
	s.eventually(5*time.Second, "fault noticed", func() error {
		if err := s.healthy(false); err != nil {
			return err
		}
		code, _, err := s.auth(s.key)
		if err != nil {
			return err
		}
		if code < 300 {
			return fmt.Errorf("valid key answered %d during the fault", code)
		}
		return nil
	})
	for i := range 10 {
		for _, key := range []string{s.key, stagedoor.NewKey()} {
			code, took, err := s.auth(key)
			if err != nil {
				s.t.Fatalf("auth %d during the fault: %v", i, err)
			}
			if code >= 200 && code < 300 {
				s.t.Fatalf("auth %d during the fault answered %d: fail-open", i, code)
			}
			if took > 2*time.Second {
				s.t.Errorf("auth %d during the fault took %v, want an answer within 2 s", i, took)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkRecovered asserts that the service recovers by itself once the fault clears.
func (s *faultService) checkRecovered() {
	s.t.Helper()
	s.eventually(10*time.Second, "recovery", func() error {
		if err := s.healthy(true); err != nil {
			return err
		}
		if code, _, err := s.auth(s.key); err != nil || code != http.StatusNoContent {
			return fmt.Errorf("valid key: %d, %v; want 204", code, err)
		}
		return nil
	})
	if code, _, err := s.auth(stagedoor.NewKey()); err != nil || code < 300 {
		s.t.Errorf("unknown key after recovery: %d, %v; want a denial", code, err)
	}
}

// integrityOK opens the database afresh and runs PRAGMA integrity_check.
func integrityOK(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var res string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	if res != "ok" {
		t.Errorf("integrity_check = %q, want ok", res)
	}
}

// mountTmpfs mounts a small tmpfs for a database whose file system the test breaks.
// Mounting needs root (CAP_SYS_ADMIN), which CI has: without it the test fails in CI
// and is skipped elsewhere.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	opts := fmt.Sprintf("size=%s,mode=0700,uid=%d,gid=%d", size, os.Getuid(), os.Getgid())
	if out, err := privileged("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount tmpfs (needs root): %v: %s", err, out)
		}
		t.Skipf("mount tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		_ = privileged("umount", "-l", dir).Run()
	})
	return dir
}

// privileged runs a command as root: directly when the test is root, else through
// passwordless sudo (a CI runner that installs packages with sudo).
func privileged(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command(name, args...)
	}
	return exec.Command("sudo", append([]string{"-n", name}, args...)...)
}

// chattr sets or clears a file attribute; +i needs root (CAP_LINUX_IMMUTABLE), which
// CI has.
func chattr(t *testing.T, mode string, files ...string) {
	t.Helper()
	if out, err := privileged("chattr", append([]string{mode}, files...)...).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "" && mode == "+i" {
			t.Skipf("chattr %s (needs root on a file system with attributes): %v: %s", mode, err, out)
		}
		t.Fatalf("chattr %s: %v: %s", mode, err, out)
	}
}

// TestDatabaseFaults is T24: the database file turns read-only, the disk fills up,
// another process holds an exclusive lock, the WAL file is deleted. While a fault lasts
// every auth is denied within 2 s and /healthz is unhealthy; the service recovers by
// itself once the fault clears, and the file stays intact.
func TestDatabaseFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("T24 database faults: skipped under -short")
	}

	t.Run("ReadOnlyFile", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "stagedoor.db")
		s := startFaultService(t, path)
		// The immutable attribute refuses writes even to root and even through
		// descriptors already open, which is what a file system remounted read-only
		// after an error does to a running service (a plain remount,ro is refused while
		// the service holds the files open for writing).
		files := []string{path, path + "-wal"}
		chattr(t, "+i", files...)
		t.Cleanup(func() { _ = privileged("chattr", append([]string{"-i"}, files...)...).Run() })
		s.checkFaulted()
		chattr(t, "-i", files...)
		s.checkRecovered()
		integrityOK(t, path)
	})

	t.Run("DiskFull", func(t *testing.T) {
		dir := mountTmpfs(t, "8m")
		path := filepath.Join(dir, "stagedoor.db")
		s := startFaultService(t, path)
		filler := filepath.Join(dir, "filler")
		fillDisk(t, filler)
		s.checkFaulted()
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		s.checkRecovered()
		integrityOK(t, path)
	})

	t.Run("ExclusiveLockByAnotherProcess", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "stagedoor.db")
		s := startFaultService(t, path)
		holder := exec.Command(os.Args[0])
		holder.Env = append(os.Environ(), lockHolderEnv+"="+path)
		stdin, err := holder.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		stdout, err := holder.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
		buf := make([]byte, 64)
		n, _ := io.ReadAtLeast(stdout, buf, len("locked"))
		out.Write(buf[:n])
		if !strings.Contains(out.String(), "locked") {
			t.Fatalf("lock holder did not take the lock: %q", out.String())
		}
		held := time.Now()
		s.checkFaulted()
		// threats.md holds the lock for 10 s: keep it that long before releasing.
		time.Sleep(time.Until(held.Add(10 * time.Second)))
		s.checkFaulted()
		_ = stdin.Close()
		if err := holder.Wait(); err != nil {
			t.Fatalf("lock holder: %v", err)
		}
		s.checkRecovered()
		integrityOK(t, path)
	})

	t.Run("WALDeleted", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "stagedoor.db")
		s := startFaultService(t, path)
		if err := os.Remove(path + "-wal"); err != nil {
			t.Fatal(err)
		}
		// Without its WAL a new connection would see a database missing the writes
		// still in the deleted file: only a restart repairs that, so the service stays
		// unhealthy and denies rather than guess.
		s.checkFaulted()
	})
}

// fillDisk writes filler until the file system reports ENOSPC.
func fillDisk(t *testing.T, filler string) {
	t.Helper()
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("fill disk: %v", err)
		}
	}
}
