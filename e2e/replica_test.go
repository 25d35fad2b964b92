package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/store/pgtest"
)

// startReplica starts `stagedoor serve --no-mediamtx` on the database dsn (in
// STAGEDOOR_DB), with the admin token, on free loopback ports, and waits for its
// /healthz. It returns it as a stack without MediaMTX ports: its public listener (admin
// API, status API) and internal one are what the stack helpers may use.
func startReplica(t *testing.T, bin, dsn string) *stack {
	t.Helper()
	r := &stack{t: t, bin: bin, db: dsn, internal: freePort(t), public: freePort(t), out: &testutil.Buffer{}}
	r.startProcess([]string{"serve", "--no-mediamtx",
		"--internal-addr", fmt.Sprintf("127.0.0.1:%d", r.internal),
		"--public-addr", fmt.Sprintf("127.0.0.1:%d", r.public),
		"--reconcile-interval", "2s",
	}, append(os.Environ(), "STAGEDOOR_DB="+dsn, "STAGEDOOR_ADMIN_TOKEN="+adminToken, "STAGEDOOR_LOG_FORMAT=json"), "[replica]")
	t.Cleanup(func() {
		_ = r.cmd.Process.Signal(os.Interrupt)
		select {
		case <-r.exited:
		case <-time.After(30 * time.Second):
			_ = r.cmd.Process.Kill()
			t.Errorf("stagedoor serve --no-mediamtx did not stop within 30 s of SIGINT")
		}
	})
	eventually(t, 30*time.Second, "replica ready", func() error {
		select {
		case err := <-r.done:
			t.Fatalf("stagedoor serve --no-mediamtx exited early: %v", err)
		default:
		}
		res, err := http.Get(r.url(r.internal, "/healthz"))
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz %d", res.StatusCode)
		}
		return nil
	})
	return r
}

// TestReplica: a `run` stack (node a) and a control-plane replica (`serve
// --no-mediamtx`) share one PostgreSQL. The channel is created through the replica's
// admin API and published on the stack; the replica shows it live; a kick asked of the
// replica makes node a kick its publisher (a kick request); a ban through the replica's admin API kicks the publisher
// on the stack within 2 s (+1 s slack), and the replica shows the channel offline.
func TestReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped with -short")
	}
	dsn := pgtest.DSN(t)
	s := startStack(t, stackOptions{dsn: dsn, args: []string{"--node-id", "a"}})
	r := startReplica(t, s.bin, dsn)

	code, body := r.admin(http.MethodPost, "/users", adminToken, map[string]string{"name": "benw"})
	if code != http.StatusCreated {
		t.Fatalf("replica POST /users = %d %s, want 201", code, body)
	}
	key := jsonField(t, string(body), "stream_key")
	p := s.publish(s.rtmpURL(key))
	src := s.publisherOf("live/benw", 30*time.Second)
	s.waitLive("benw", true, 30*time.Second)
	r.waitLive("benw", true, 10*time.Second)

	// A kick asked of the replica: node a kicks its publisher; the encoder reconnects.
	kicked := time.Now()
	code, body = r.admin(http.MethodPost, "/users/benw/kick", adminToken, nil)
	if code != http.StatusOK || !strings.Contains(string(body), `"kicked":true`) {
		t.Fatalf("kick through the replica = %d %s, want 200 kicked", code, body)
	}
	took := s.gone(src, kicked, 3*time.Second)
	t.Logf("kick through the replica: the publisher on node a left MediaMTX %v after it", took.Round(time.Millisecond))
	p.kicked(t, 10*time.Second)
	p = s.publish(s.rtmpURL(key))
	src = s.publisherOf("live/benw", 30*time.Second)
	s.waitLive("benw", true, 30*time.Second)

	banned := time.Now()
	if code, body := r.admin(http.MethodPost, "/users/benw/ban", adminToken, nil); code != http.StatusOK {
		t.Fatalf("replica ban = %d %s, want 200", code, body)
	}
	took = s.gone(src, banned, 3*time.Second)
	t.Logf("ban through the replica: the publisher on node a left MediaMTX %v after the ban", took.Round(time.Millisecond))
	p.kicked(t, 10*time.Second)
	r.waitLive("benw", false, 10*time.Second)

	for line := range strings.SplitSeq(r.out.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
			t.Errorf("replica logged: %s", line)
		}
	}
}
