package main

import (
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testutil"
)

const (
	testHookSecret  = "hook-secret-0123456789abcdef"
	testAdminToken  = "0123456789abcdef0123"
	spoofedClientIP = "203.0.113.9"
)

func serveEnv(key string) string {
	switch key {
	case "STAGEDOOR_HOOK_SECRET":
		return testHookSecret
	case "STAGEDOOR_ADMIN_TOKEN":
		return testAdminToken
	}
	return ""
}

// TestServeRefusesNonLoopbackInternalAddr is T33: the internal listener serves auth and
// hooks, so anything but loopback is a usage error that creates no database.
func TestServeRefusesNonLoopbackInternalAddr(t *testing.T) {
	for _, tt := range []struct {
		name string
		addr string
	}{
		{"AllIPv4Refused", "0.0.0.0:0"},
		{"AllIPv6Refused", "[::]:0"},
		{"EmptyHostRefused", ":0"},
		{"PublicIPRefused", "192.0.2.1:0"},
		{"LookalikeHostnameRefused", "localhost.example.com:0"},
		{"NoPortRefused", "127.0.0.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dbPath := filepath.Join(t.TempDir(), "stagedoor.db")
			var stderr testutil.Buffer
			err := run(t.Context(), []string{"stagedoor", "serve", "--internal-addr", tt.addr, "--db", dbPath,
				"--public-addr", "127.0.0.1:0"}, serveEnv, strings.NewReader(""), io.Discard, &stderr)
			if err == nil {
				t.Fatalf("serve --internal-addr %s: err = nil, want a usage error", tt.addr)
			}
			if got, want := exitCode(err), 2; got != want {
				t.Errorf("exitCode(%v) = %d, want %d", err, got, want)
			}
			if !strings.Contains(err.Error(), "loopback") {
				t.Errorf("err = %q, want it to mention loopback", err)
			}
			if _, statErr := os.Stat(dbPath); !errors.Is(statErr, os.ErrNotExist) {
				t.Errorf("database file after refusal: stat err = %v, want not exist", statErr)
			}
		})
	}
}

// TestNewServerLimits is T33's server half: every limit of docs/threats.md §6 is set.
func TestNewServerLimits(t *testing.T) {
	s := newServer(http.NotFoundHandler())
	for _, tt := range []struct {
		name string
		got  int64
	}{
		{"ReadHeaderTimeoutSet", int64(s.ReadHeaderTimeout)},
		{"ReadTimeoutSet", int64(s.ReadTimeout)},
		{"WriteTimeoutSet", int64(s.WriteTimeout)},
		{"IdleTimeoutSet", int64(s.IdleTimeout)},
		{"MaxHeaderBytesSet", int64(s.MaxHeaderBytes)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got <= 0 {
				t.Errorf("got %d, want > 0", tt.got)
			}
		})
	}
	if s.Handler == nil {
		t.Errorf("Handler = nil, want the handler passed in")
	}
}

// freeLoopbackPort returns a port that was free on 127.0.0.1 a moment ago.
//
// It comes from below the kernel's ephemeral range (32768 and up on Linux) and from a range
// the e2e harness does not use (12000–19999), never twice in this test binary: a port
// that ":0" handed out and that was closed again can be taken by any outgoing connection
// (a PostgreSQL or HTTP client of another test) before the service binds it.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	start := 12000 + rand.IntN(8000)
	for i := range 8000 {
		p := 12000 + (start-12000+i)%8000
		if portsUsed[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ln.Close()
		portsUsed[p] = true
		return p
	}
	t.Fatal("no free loopback port in 12000–19999")
	return 0
}

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{}
)

// nonLoopbackIP returns one of the machine's IPv4 or IPv6 unicast addresses that is not
// loopback, or "".
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatalf("InterfaceAddrs: %v", err)
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || n.IP.IsLinkLocalUnicast() || n.IP.IsUnspecified() {
			continue
		}
		return n.IP.String()
	}
	return ""
}

// TestServeListeners is T33 against a running `serve`: the internal listener answers on
// loopback only, a slow-header client is cut off, and the admin audit records the TCP
// peer, not X-Forwarded-For.
func TestServeListeners(t *testing.T) {
	ts := startTestService(t)
	internal, public := ts.internal, ts.public
	internalPort, publicPort := portOf(t, internal), portOf(t, public)
	client := &http.Client{Timeout: 5 * time.Second}

	t.Run("InternalPortClosedOnNonLoopbackIP", func(t *testing.T) {
		ip := nonLoopbackIP(t)
		if ip == "" {
			t.Skip("this machine has no non-loopback address to dial")
		}
		d := net.Dialer{Timeout: 3 * time.Second}
		for _, port := range []int{internalPort, publicPort} {
			addr := net.JoinHostPort(ip, strconv.Itoa(port))
			c, err := d.DialContext(t.Context(), "tcp", addr)
			if err == nil {
				c.Close()
				t.Errorf("dial %s: connected, want refused (listener must be loopback only)", addr)
			}
		}
	})

	t.Run("SlowHeaderClientDisconnected", func(t *testing.T) {
		c, err := net.Dial("tcp", internal)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatalf("SetDeadline: %v", err)
		}
		request := "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris-test-client\r\n\r\n"
		readErr := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, c) // returns nil on EOF
			readErr <- err
		}()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		written := 0
		var rerr error
	loop:
		for written < len(request) {
			if _, err := c.Write([]byte{request[written]}); err != nil {
				rerr = <-readErr
				break
			}
			written++
			select {
			case rerr = <-readErr:
				break loop
			case <-tick.C:
			}
		}
		if written >= len(request) {
			t.Fatalf("sent the whole %d-byte header one byte a second without being cut off", len(request))
		}
		if ne, ok := errors.AsType[net.Error](rerr); ok && ne.Timeout() {
			t.Fatalf("read hit the client's 10 s deadline (%v), want the server to close first", rerr)
		}
		if rerr != nil && !errors.Is(rerr, syscall.ECONNRESET) {
			t.Errorf("read error = %v, want EOF or connection reset", rerr)
		}
		t.Logf("server closed after %d header bytes", written)
	})

	t.Run("XForwardedForIgnoredInAudit", func(t *testing.T) {
		base := "http://" + public + "/api/v1/admin"
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/users", strings.NewReader(`{"name":"benw"}`))
		if err != nil {
			t.Fatalf("NewRequest: %v", err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		req.Header.Set("X-Forwarded-For", spoofedClientIP)
		req.Header.Set("X-Real-IP", spoofedClientIP)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST /users: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST /users = %d %s, want 2xx", resp.StatusCode, body)
		}

		type entry struct {
			Kind string `json:"kind"`
			User string `json:"user"`
			IP   string `json:"ip"`
		}
		var admin []entry
		for range 100 { // the recorder flushes every 250 ms; 100 × 50 ms bounds the wait
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/audit", nil)
			req.Header.Set("Authorization", "Bearer "+testAdminToken)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("GET /audit: %v", err)
			}
			var es []entry
			err = json.NewDecoder(resp.Body).Decode(&es)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("decode audit: %v", err)
			}
			admin = admin[:0]
			for _, e := range es {
				if e.Kind == "admin" {
					admin = append(admin, e)
				}
			}
			if len(admin) > 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(admin) == 0 {
			t.Fatalf("no admin audit entry appeared")
		}
		for _, e := range admin {
			if e.IP != "127.0.0.1" {
				t.Errorf("audit ip = %q (user %q), want 127.0.0.1, not the X-Forwarded-For %s", e.IP, e.User, spoofedClientIP)
			}
		}
	})
}

// TestPolicyChangedNeverAllowsMediaMTX: a MediaMTX auth body posted to the notification
// endpoint (a mistaken authHTTPAddress) is answered non-2xx, which MediaMTX reads as deny;
// the CLI's own notification is accepted.
func TestPolicyChangedNeverAllowsMediaMTX(t *testing.T) {
	internal := startTestService(t).internal
	url := "http://" + internal + "/internal/policy-changed"
	var res *http.Response
	var err error
	for range 100 {
		if res, err = http.Post(url, "application/json",
			strings.NewReader(`{"action":"publish","path":"live/benw","protocol":"rtmp","ip":"127.0.0.1"}`)); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode/100 == 2 {
		t.Errorf("MediaMTX-shaped POST answered %d: would allow", res.StatusCode)
	}
	c := &cliFlags{internal: internal}
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	req.Header.Set(policyNotifyHeader, "1")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Errorf("CLI notification answered %d, want 204", res.StatusCode)
	}
	c.notify(t.Context()) // must not fail or block
}

// TestRunRefusesNonLoopbackMediaMTXAddrs: `run` binds MediaMTX's API and (behind the
// front) its RTMP listener where these flags point; anything but loopback would open
// them to the network, so it is a usage error that creates no database.
func TestRunRefusesNonLoopbackMediaMTXAddrs(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"mediamtx", "mediamtx.yml"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"APIOnAllInterfaces", []string{"--mediamtx-api", "http://0.0.0.0:9997"}},
		{"APIOnHostAddress", []string{"--mediamtx-api", "http://192.0.2.7:9997"}},
		{"RTMPOnAllInterfaces", []string{"--mediamtx-rtmp", "0.0.0.0:1936"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dbPath := filepath.Join(t.TempDir(), "stagedoor.db")
			args := append([]string{"stagedoor", "run", "--db", dbPath, "--mediamtx", filepath.Join(dir, "mediamtx"),
				"--mediamtx-config", filepath.Join(dir, "mediamtx.yml"), "--internal-addr", "127.0.0.1:0",
				"--public-addr", "127.0.0.1:0", "--rtmp-addr", "127.0.0.1:0"}, tt.args...)
			err := run(t.Context(), args, serveEnv, strings.NewReader(""), io.Discard, io.Discard)
			if got := exitCode(err); got != 2 {
				t.Fatalf("run %v: err = %v (exit %d), want a usage error (exit 2)", tt.args, err, got)
			}
			if !strings.Contains(err.Error(), "loopback") {
				t.Errorf("err = %q, want it to mention loopback", err)
			}
			if _, statErr := os.Stat(dbPath); !errors.Is(statErr, os.ErrNotExist) {
				t.Errorf("database file after refusal: stat err = %v, want not exist", statErr)
			}
		})
	}
}

// portOf returns the port of a host:port address.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
