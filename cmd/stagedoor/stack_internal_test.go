package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/plugin"
)

// Secrets of the environment tests: every one must stay out of MediaMTX's environment.
var envTestSecrets = map[string]string{
	"STAGEDOOR_ADMIN_TOKEN":      "admin-token-0123456789abcdef",
	"STAGEDOOR_WEBHOOK_SECRET":   "webhook-secret-0123456789abcdef",
	"STAGEDOOR_RELAY_PASSWORD":   "relay-password-0123456789abcdef",
	"STAGEDOOR_ADMIN_PASSWORD":   "admin-password-0123456789abcdef",
	"STAGEDOOR_ADMIN_TOKEN_FILE": "/run/secrets/admin-token-file-path",
	"STAGEDOOR_DB":               "/srv/secret-db-path/stagedoor.db",
	"AWS_SECRET_ACCESS_KEY":      "aws-secret-0123456789abcdef",
}

// TestMediaMTXEnvAllowList (issue 11 L2): MediaMTX gets the allow-listed variables, the
// operator's MTX_* overrides and what Stagedoor sets, nothing else of ours; Stagedoor's
// own MTX_* settings win over the operator's.
func TestMediaMTXEnvAllowList(t *testing.T) {
	environ := []string{
		"PATH=/usr/bin:/bin", "HOME=/home/sd", "TZ=UTC", "LANG=C.UTF-8", "LC_ALL=C", "TMPDIR=/tmp/x",
		"MTX_HLSADDRESS=127.0.0.1:8888", "MTX_AUTHHTTPADDRESS=http://198.51.100.7/steal",
		"MTX_RTMPTRUSTEDPROXIES=0.0.0.0/0", "RTSP_AUTHMETHOD=internal",
		"STAGEDOOR_HOOK_SECRET=operators-hook-secret-0123456789",
	}
	for k, v := range envTestSecrets {
		environ = append(environ, k+"="+v)
	}
	cfg := serviceConfig{internalAddr: "127.0.0.1:9090", mediamtxAPI: "http://127.0.0.1:9997",
		rtmpAddr: ":1935", mediamtxRTMP: "127.0.0.1:1936"}
	sec := secrets{hook: "hook-secret-0123456789abcdef", admin: envTestSecrets["STAGEDOOR_ADMIN_PASSWORD"],
		relay: envTestSecrets["STAGEDOOR_RELAY_PASSWORD"], adminToken: envTestSecrets["STAGEDOOR_ADMIN_TOKEN"],
		webhook: envTestSecrets["STAGEDOOR_WEBHOOK_SECRET"]}
	env, err := mediamtxEnv(cfg, sec, environ, "/opt/stagedoor/bin/stagedoor")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"PATH": "/opt/stagedoor/bin:/usr/bin:/bin", "HOME": "/home/sd", "TZ": "UTC", "LANG": "C.UTF-8",
		"LC_ALL": "C", "TMPDIR": "/tmp/x", "MTX_HLSADDRESS": "127.0.0.1:8888",
		"MTX_AUTHHTTPADDRESS":    "http://127.0.0.1:9090/mediamtx/auth",
		"MTX_APIADDRESS":         "127.0.0.1:9997",
		"MTX_RTMPADDRESS":        "127.0.0.1:1936",
		"MTX_RTMPTRUSTEDPROXIES": "127.0.0.1",
		plugin.EnvHookURL:        "http://127.0.0.1:9090/internal/hook",
		plugin.EnvHookSecret:     sec.hook,
	}
	got := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := got[k]; dup {
			t.Errorf("%s set twice", k)
		}
		got[k] = v
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected variable %s in MediaMTX's environment", k)
		}
	}
	joined := strings.Join(env, "\n")
	for k, v := range envTestSecrets {
		if strings.Contains(joined, v) {
			t.Errorf("the value of %s is in MediaMTX's environment", k)
		}
	}
}

// TestMediaMTXEnvRefusesSmuggledSecret: an operator's MTX_* override that carries one of
// Stagedoor's secrets (here the relay password in a path source URL) is refused at start.
func TestMediaMTXEnvRefusesSmuggledSecret(t *testing.T) {
	sec := secrets{hook: "hook-secret-0123456789abcdef", relay: "relay-password-0123456789abcdef"}
	cfg := serviceConfig{internalAddr: "127.0.0.1:9090", mediamtxAPI: "http://127.0.0.1:9997"}
	environ := []string{"MTX_PATHDEFAULTS_SOURCE=rtsp://stagedoor-relay:" + sec.relay + "@127.0.0.1:8554/x"}
	_, err := mediamtxEnv(cfg, sec, environ, "/bin/stagedoor")
	if exitCode(err) != 2 || !strings.Contains(fmt.Sprint(err), "MTX_PATHDEFAULTS_SOURCE") {
		t.Fatalf("err = %v, want a usage error naming the variable", err)
	}
	if strings.Contains(err.Error(), sec.relay) {
		t.Error("the error shows the secret")
	}
	// Every secret of secrets.list but the hook's, which MediaMTX's environment carries.
	sec.cluster = "cluster-secret-0123456789abcdef"
	environ = []string{"MTX_PATHS_X_SOURCE=rtsp://stagedoor-peer:" + sec.cluster + "@10.0.0.1:8554/live/x"}
	if _, err := mediamtxEnv(cfg, sec, environ, "/bin/stagedoor"); exitCode(err) != 2 {
		t.Errorf("an MTX_* variable with the cluster secret: err = %v, want a usage error", err)
	}
}

// TestHookRunsInMediaMTXEnv: `stagedoor hook` finds everything it needs in MediaMTX's
// environment plus what MediaMTX adds for a hook, and posts its event.
func TestHookRunsInMediaMTXEnv(t *testing.T) {
	got := make(chan *http.Request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := serviceConfig{internalAddr: srv.Listener.Addr().String(), mediamtxAPI: "http://127.0.0.1:9997"}
	sec := secrets{hook: "hook-secret-0123456789abcdef"}
	env, err := mediamtxEnv(cfg, sec, []string{"PATH=/bin"}, "/bin/stagedoor")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"MTX_PATH": "live/benw", "MTX_SOURCE_TYPE": "rtmpConn",
		"MTX_SOURCE_ID": "0f2b7c3e-8a1d-4e5f-9a6b-1c2d3e4f5a6b", "MTX_QUERY": ""}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	var stderr bytes.Buffer
	err = run(t.Context(), []string{"stagedoor", "hook", "available"}, func(k string) string { return vars[k] },
		strings.NewReader(""), io.Discard, &stderr)
	if err != nil {
		t.Fatalf("hook: %v (%s)", err, stderr.String())
	}
	select {
	case r := <-got:
		if r.URL.Path != "/internal/hook" {
			t.Errorf("hook posted to %s, want /internal/hook", r.URL.Path)
		}
	default:
		t.Fatal("the hook posted nothing")
	}
}

// TestResolveMediaMTXAddrs (issue 11 L3): `localhost` becomes a loopback IP wherever
// `run` hands MediaMTX an address; anything that is not loopback is refused.
func TestResolveMediaMTXAddrs(t *testing.T) {
	for _, tt := range []struct {
		name, api, rtmp   string
		wantAPI, wantRTMP string // "" : refused
	}{
		{"IPs", "http://127.0.0.1:9997", "127.0.0.1:1936", "http://127.0.0.1:9997", "127.0.0.1:1936"},
		{"LocalhostRTMP", "http://127.0.0.1:9997", "localhost:1936", "http://127.0.0.1:9997", "127.0.0.1:1936"},
		{"LocalhostAPI", "http://localhost:9997", "127.0.0.1:1936", "http://127.0.0.1:9997", "127.0.0.1:1936"},
		{"IPv6", "http://[::1]:9997", "[::1]:1936", "http://[::1]:9997", "[::1]:1936"},
		{"OtherLoopback", "http://127.0.0.2:9997", "127.0.0.3:1936", "http://127.0.0.2:9997", "127.0.0.3:1936"},
		{"RTMPHostName", "http://127.0.0.1:9997", "example.com:1936", "", ""},
		{"RTMPNoHost", "http://127.0.0.1:9997", ":1936", "", ""},
		{"RTMPAllInterfaces", "http://127.0.0.1:9997", "0.0.0.0:1936", "", ""},
		{"RTMPNoPort", "http://127.0.0.1:9997", "127.0.0.1", "", ""},
		{"APIHostName", "http://example.com:9997", "127.0.0.1:1936", "", ""},
		{"APINoPort", "http://127.0.0.1", "127.0.0.1:1936", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := serviceConfig{mediamtxAPI: tt.api, mediamtxRTMP: tt.rtmp, rtmpAddr: ":1935"}
			err := cfg.resolveMediaMTXAddrs(t.Context())
			if tt.wantAPI == "" {
				if exitCode(err) != 2 {
					t.Fatalf("err = %v, want a usage error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.mediamtxAPI != tt.wantAPI || cfg.mediamtxRTMP != tt.wantRTMP {
				t.Errorf("api, rtmp = %q, %q; want %q, %q", cfg.mediamtxAPI, cfg.mediamtxRTMP, tt.wantAPI, tt.wantRTMP)
			}
		})
	}
}

// fakeMediaMTX writes a stand-in MediaMTX that only sleeps, and an empty config.
func fakeMediaMTX(t *testing.T) (bin, conf string) {
	t.Helper()
	dir := t.TempDir()
	bin, conf = filepath.Join(dir, "mediamtx"), filepath.Join(dir, "mediamtx.yml")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 60\n"), 0o700); err != nil { // #nosec G306 -- test script
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return bin, conf
}

var startedPID = regexp.MustCompile(`"msg":"mediamtx started"[^\n]*"pid":(\d+)`)

// runUntilMediaMTX starts `stagedoor run` in-process with args and the real environment
// (os.Getenv), waits for its MediaMTX child and returns the child's pid; the stack stops
// at the test's end.
func runUntilMediaMTX(t *testing.T, args ...string) int {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	out := &testutil.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"stagedoor", "run"}, args...),
			os.Getenv, strings.NewReader(""), io.Discard, out)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := startedPID.FindStringSubmatch(out.String()); m != nil {
			pid, _ := strconv.Atoi(m[1])
			return pid
		}
		select {
		case err := <-done:
			t.Fatalf("run exited early: %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("MediaMTX never started:\n%s", out)
	return 0
}

// TestRunMediaMTXEnviron (issue 11 L2, L3): with every secret in Stagedoor's environment,
// /proc/<mediamtx>/environ holds none of them (the hook secret excepted, on purpose), and
// `--mediamtx-rtmp localhost:PORT` reaches MediaMTX as an IP it accepts as trusted proxy.
func TestRunMediaMTXEnviron(t *testing.T) {
	bin, conf := fakeMediaMTX(t)
	for k, v := range envTestSecrets {
		t.Setenv(k, v)
	}
	hookSecret := "hook-secret-0123456789abcdef"
	t.Setenv(plugin.EnvHookSecret, hookSecret)
	dbDir := filepath.Join(t.TempDir(), "secret-db-dir")
	if err := os.Mkdir(dbDir, 0o700); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dbDir, "stagedoor.db")
	t.Setenv("STAGEDOOR_DB", dbPath)
	t.Setenv("STAGEDOOR_WEBHOOK_URLS", "http://127.0.0.1:9/hook")
	pid := runUntilMediaMTX(t, "--mediamtx", bin, "--mediamtx-config", conf,
		"--internal-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0", "--rtmp-addr", "127.0.0.1:0",
		"--mediamtx-rtmp", "localhost:1", "--mediamtx-api", "http://127.0.0.1:1")
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	environ := string(raw)
	for k, v := range envTestSecrets {
		if strings.Contains(environ, v) {
			t.Errorf("the value of %s is in /proc/<mediamtx>/environ", k)
		}
	}
	if strings.Contains(environ, "secret-db-dir") {
		t.Error("the database path is in /proc/<mediamtx>/environ")
	}
	if !strings.Contains(environ, plugin.EnvHookSecret+"="+hookSecret+"\x00") {
		t.Error("the hook secret is missing: hooks could not post")
	}
	vars := map[string]string{}
	for _, kv := range strings.Split(environ, "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	if ip := net.ParseIP(vars["MTX_RTMPTRUSTEDPROXIES"]); ip == nil || !ip.IsLoopback() {
		t.Errorf("MTX_RTMPTRUSTEDPROXIES = %q, want a loopback IP (MediaMTX refuses a name)", vars["MTX_RTMPTRUSTEDPROXIES"])
	}
	if vars["MTX_RTMPADDRESS"] != "127.0.0.1:1" {
		t.Errorf("MTX_RTMPADDRESS = %q, want 127.0.0.1:1", vars["MTX_RTMPADDRESS"])
	}
}
