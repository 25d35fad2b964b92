// Package pgtest gives tests a real PostgreSQL: one throw-away cluster per test binary,
// started on first use, and one fresh schema per test. Only tests import it.
//
// A test package that uses it calls Main from its TestMain, so that the cluster is
// stopped when the tests end. With STAGEDOOR_TEST_POSTGRES set to a DSN (for example a
// PostgreSQL already running on 127.0.0.1:5432), that server is used instead and nothing
// is started. Without PostgreSQL, DSN skips the test with a hint, or fails it when CI is
// set (the needTool policy of the e2e suite).
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// EnvDSN names a PostgreSQL to use instead of a throw-away cluster.
const EnvDSN = "STAGEDOOR_TEST_POSTGRES"

// startTimeout bounds initdb and pg_ctl start: seconds on an idle machine, but tests run
// on busy 2-core machines beside other test binaries.
const startTimeout = 120 * time.Second

var (
	mainCalled atomic.Bool
	once       sync.Once
	srv        *server // nil until started; started is set when srv is usable
	srvErr     error   // why no server: errNotInstalled or a real failure
	schemaSeq  atomic.Int64
)

// errNotInstalled says PostgreSQL's programs are not on this machine.
var errNotInstalled = errors.New("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): " +
	"run scripts/test-deps.sh (apt-get install postgresql) or set " + EnvDSN + " to a DSN")

// server is the cluster the tests share.
type server struct {
	dsn   string  // of the database, without search_path
	admin *sql.DB // creates and drops the test schemas
	// started: a cluster of our own (dir, bin), stopped by Main; false for EnvDSN.
	started bool
	bin     string
	dir     string
	asUser  bool   // run the programs through runuser -u postgres (we are root)
	opts    string // pg_ctl -o: the server's options, kept for Restart
	// drop: drop each test's schema when the test ends (a server that outlives us).
	drop bool
}

// Main runs the tests of m and then stops the cluster if one was started; call it from
// TestMain as os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	mainCalled.Store(true)
	code := m.Run()
	if srv != nil {
		if err := srv.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stop PostgreSQL:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// DSN creates a fresh schema for t and returns a DSN whose connections use it (its
// search_path), starting the cluster on first use. It skips t when PostgreSQL is not
// installed, and fails it instead when CI is set.
func DSN(t testing.TB) string {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("pgtest: call pgtest.Main from this package's TestMain, so the cluster is stopped")
	}
	once.Do(func() { srv, srvErr = start() })
	if srvErr != nil {
		if errors.Is(srvErr, errNotInstalled) && os.Getenv("CI") == "" {
			t.Skip("pgtest:", srvErr)
		}
		t.Fatal("pgtest:", srvErr)
	}
	schema := fmt.Sprintf("t_%d_%d", os.Getpid(), schemaSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// schema is made of digits and a prefix of ours, never input.
	if _, err := srv.admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("pgtest: create schema: %v", err)
	}
	if srv.drop {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
			defer cancel()
			if _, err := srv.admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
				t.Errorf("pgtest: drop schema: %v", err)
			}
		})
	}
	return withSearchPath(srv.dsn, schema)
}

// Restart restarts the test binary's cluster as an operator's `pg_ctl restart -m fast`
// would: every connection is closed, and the server comes back on the same port with the
// same data. It returns once the server accepts connections again. Every test of the
// binary shares the cluster, so a test that calls it must not run in parallel with other
// users of DSN. A PostgreSQL given by STAGEDOOR_TEST_POSTGRES is not ours to restart: the
// test is skipped, or failed when CI is set.
func Restart(t testing.TB) {
	t.Helper()
	ours(t)
	if err := srv.ctl("restart"); err != nil {
		t.Fatal(err)
	}
	if err := srv.reconnect(); err != nil {
		t.Fatal(err)
	}
}

// Outage stops the test binary's cluster (`pg_ctl stop -m fast`), runs while, and starts
// the cluster again on the same port with the same data, also when while fails the test.
// What Restart says of parallel tests and STAGEDOOR_TEST_POSTGRES holds here too.
func Outage(t testing.TB, while func()) {
	t.Helper()
	ours(t)
	if err := srv.ctl("stop"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Errorf, not Fatalf: this may run while while's FailNow unwinds.
		if err := srv.ctl("start"); err != nil {
			t.Errorf("%v", err)
			return
		}
		if err := srv.reconnect(); err != nil {
			t.Errorf("%v", err)
		}
	}()
	while()
}

// ours fails or skips t unless the cluster is the throw-away one this binary started.
func ours(t testing.TB) {
	t.Helper()
	if srv != nil && srv.started {
		return
	}
	if os.Getenv("CI") == "" {
		t.Skip("pgtest: stopping PostgreSQL needs the throw-away cluster (call DSN first; unset " + EnvDSN + ")")
	}
	t.Fatal("pgtest: stopping PostgreSQL needs the throw-away cluster: call DSN first, and unset " + EnvDSN)
}

// ctl runs pg_ctl's stop, start or restart on the cluster, fast and waiting.
func (s *server) ctl(action string) error {
	args := []string{"-D", filepath.Join(s.dir, "data"), "-l", filepath.Join(s.dir, "log"),
		"-w", "-t", strconv.Itoa(int(startTimeout.Seconds()))}
	if action != "start" {
		args = append(args, "-m", "fast")
	}
	if action != "stop" {
		args = append(args, "-o", s.opts)
	}
	if out, err := s.run(filepath.Join(s.bin, "pg_ctl"), append(args, action)...); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log")) //nolint:gosec // our own temp dir
		return fmt.Errorf("pgtest: pg_ctl %s: %w\n%s\n%s", action, err, out, log)
	}
	return nil
}

// reconnect drops the admin pool's connections, which died with the old server, so that
// the next DSN does not fail on one, and checks that the server answers.
func (s *server) reconnect() error {
	s.admin.SetMaxIdleConns(0)
	s.admin.SetMaxIdleConns(2)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.admin.PingContext(ctx); err != nil {
		return fmt.Errorf("pgtest: PostgreSQL after its restart: %w", err)
	}
	return nil
}

// withSearchPath adds search_path=schema to a URL DSN; pgx sends unknown query
// parameters as run-time parameters of every connection.
func withSearchPath(dsn, schema string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func start() (*server, error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		s := &server{dsn: dsn, drop: true}
		return s, s.connect()
	}
	bin, err := pgBin()
	if err != nil {
		return nil, err
	}
	s := &server{bin: bin, asUser: os.Geteuid() == 0}
	if err := s.startCluster(); err != nil {
		_ = s.stop()
		return nil, err
	}
	return s, nil
}

// pgBin is the newest /usr/lib/postgresql/*/bin holding initdb.
func pgBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var ok []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			ok = append(ok, d)
		}
	}
	if len(ok) == 0 {
		return "", errNotInstalled
	}
	slices.SortFunc(ok, func(a, b string) int { return versionOf(a) - versionOf(b) })
	return ok[len(ok)-1], nil
}

// versionOf reads the major version in /usr/lib/postgresql/<major>/bin.
func versionOf(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

func (s *server) startCluster() error {
	dir, err := os.MkdirTemp("", "stagedoor-pg-")
	if err != nil {
		return err
	}
	s.dir = dir
	// The postgres user must reach the directory: MkdirTemp makes it 0700 for root.
	if err := os.Chmod(dir, 0o755); err != nil { //nolint:gosec // a socket directory others must reach
		return err
	}
	if s.asUser {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root needs the postgres user of the Debian package: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return err
		}
	}
	if out, err := s.run(filepath.Join(s.bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", "stagedoor",
		"--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	// A port below the ephemeral range, free now; another process may take it before
	// PostgreSQL binds, so a failed start is retried on another.
	var lastErr error
	for range 5 {
		port := freePort()
		s.opts = "-c listen_addresses=127.0.0.1 -p " + strconv.Itoa(port) + " -k " + dir +
			" -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
		out, err := s.run(filepath.Join(s.bin, "pg_ctl"), "-D", filepath.Join(dir, "data"), "-l", filepath.Join(dir, "log"),
			"-w", "-t", strconv.Itoa(int(startTimeout.Seconds())), "-o", s.opts, "start")
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "log")) //nolint:gosec // our own temp dir
			lastErr = fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, log)
			continue
		}
		s.started = true
		s.dsn = fmt.Sprintf("postgres://stagedoor@127.0.0.1:%d/postgres?sslmode=disable", port)
		return s.connect()
	}
	return lastErr
}

// connect opens the admin pool and checks that the server answers.
func (s *server) connect() error {
	cfg, err := pgx.ParseConfig(s.dsn)
	if err != nil {
		return fmt.Errorf("parse %s: %w", EnvDSN, err)
	}
	s.admin = stdlib.OpenDB(*cfg)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.admin.PingContext(ctx); err != nil {
		return fmt.Errorf("connect to the test PostgreSQL: %w", err)
	}
	return nil
}

// run runs a PostgreSQL program, as the postgres user when we are root (initdb refuses
// root).
func (s *server) run(prog string, args ...string) ([]byte, error) {
	if s.asUser {
		args = append([]string{"-u", "postgres", "--", prog}, args...)
		prog = "runuser"
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...) //nolint:gosec // PostgreSQL's own programs, argv only
	cmd.Dir = os.TempDir()                         // the postgres user may not reach the test's working directory
	return cmd.CombinedOutput()
}

// stop stops a cluster of our own at once (nothing in it is worth a clean shutdown) and
// removes its directory.
func (s *server) stop() error {
	var errs []error
	if s.admin != nil {
		errs = append(errs, s.admin.Close())
	}
	if s.started {
		if out, err := s.run(filepath.Join(s.bin, "pg_ctl"), "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "stop"); err != nil {
			errs = append(errs, fmt.Errorf("pg_ctl stop: %w\n%s", err, out))
		}
	}
	if s.dir != "" {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	return errors.Join(errs...)
}

// freePort picks a port in 20000–32700 that nothing listens on now.
func freePort() int {
	for {
		port := 20000 + rand.IntN(12700) //nolint:gosec // not a secret
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			_ = l.Close()
			return port
		}
	}
}
