package main

import (
	"flag"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testutil"
)

// testService is the service as `serve` runs it (same flags, validation and secrets,
// JSON log), started in this test process: the one starter of this package's tests
// that need a running service. It calls startService rather than run so that tests can
// reach the parts (the database pool's statistics).
type testService struct {
	internal, public string // host:port
	logs             *testutil.Buffer
	svc              *service
	stop             func() // idempotent; closing must return nil
}

// startTestService starts the service with `serve` flags: by default a fresh database,
// free loopback ports and a MediaMTX API nobody answers (only hooks and the reconciler
// use it); args come after the defaults, so they override them. Secrets come from
// serveEnv. It waits until GET /healthz answers 200 and stops the service when the test
// ends.
func startTestService(t *testing.T, args ...string) *testService {
	t.Helper()
	return startTestServiceEnv(t, serveEnv, args...)
}

// startTestServiceEnv is startTestService with getenv in place of serveEnv. With
// --no-mediamtx among args (a replica), no --mediamtx-api is added.
func startTestServiceEnv(t *testing.T, getenv func(string) string, args ...string) *testService {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cfg serviceConfig
	cfg.register(fs, getenv, "")
	cfg.registerNoMediaMTX(fs)
	defaults := []string{"--db", filepath.Join(t.TempDir(), "stagedoor.db"),
		"--internal-addr", "127.0.0.1:" + strconv.Itoa(freeLoopbackPort(t)),
		"--public-addr", "127.0.0.1:" + strconv.Itoa(freeLoopbackPort(t))}
	if !slices.Contains(args, "--no-mediamtx") {
		defaults = append(defaults, "--mediamtx-api", "http://127.0.0.1:1")
	}
	if _, err := parseFlags(fs, append(defaults, args...)); err != nil {
		t.Fatalf("flags: %v", err)
	}
	if err := cfg.checkNoMediaMTX(fs); err != nil {
		t.Fatalf("config: %v", err)
	}
	if err := cfg.validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	sec, err := loadSecrets(getenv)
	if err != nil {
		t.Fatalf("secrets: %v", err)
	}
	s := &testService{internal: cfg.internalAddr, public: cfg.publicAddr, logs: &testutil.Buffer{}}
	s.svc, err = startService(t.Context(), cfg, sec, slog.New(slog.NewJSONHandler(s.logs, nil)))
	if err != nil {
		t.Fatalf("startService: %v", err)
	}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			if err := s.svc.close(); err != nil {
				t.Errorf("close: %v, want nil", err)
			}
		})
	}
	t.Cleanup(s.stop)

	client := &http.Client{Timeout: 2 * time.Second}
	for range 400 { // 400 × 25 ms bounds the start under -race; a poll, not a timing assertion
		if res, err := client.Get("http://" + s.internal + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("GET /healthz never answered 200\n%s", s.logs.String())
	return nil
}
