package authserver_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testdb"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/health"
	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/policy"
)

var (
	relaySecret = policy.Secret{User: "stagedoor-relay", Password: "relay-secret-1"}
	adminSecret = policy.Secret{User: "stagedoor-admin", Password: "admin-secret-1"}
	testPolicy  = policy.Policy{Relay: relaySecret, Admin: adminSecret}
)

// newFixture is a real store with an active user benw and a banned user mallory.
func newFixture(t testing.TB) testdb.Users { return testdb.NewUsers(t) }

// authServer serves NewHandler over real HTTP on a :0 port, with pol asking creds.
func authServer(t *testing.T, creds policy.Credentials, pol policy.Policy, opts authserver.Options) (*httptest.Server, *testutil.Buffer) {
	t.Helper()
	logger, lb := testutil.Logger()
	pol.Credentials = creds
	srv := httptest.NewServer(authserver.NewHandler(logger, &pol, opts))
	t.Cleanup(srv.Close)
	return srv, lb
}

type reply struct {
	status int
	body   string
}

func post(t *testing.T, srv *httptest.Server, contentType string, body io.Reader) reply {
	t.Helper()
	r, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/mediamtx/auth", body)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	resp, err := srv.Client().Do(r)
	if err != nil {
		t.Fatalf("POST /mediamtx/auth: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return reply{status: resp.StatusCode, body: string(b)}
}

func postJSON(t *testing.T, srv *httptest.Server, body string) reply {
	t.Helper()
	return post(t, srv, "application/json", strings.NewReader(body))
}

func is2xx(status int) bool { return status >= 200 && status < 300 }

// wantDenied fails unless rep is a denial with the given status and the one deny body.
func wantDenied(t *testing.T, rep reply, status int) {
	t.Helper()
	if rep.status != status {
		t.Errorf("status = %d, want %d", rep.status, status)
	}
	if rep.body != authserver.DenyBody {
		t.Errorf("body = %.80q, want %q", rep.body, authserver.DenyBody)
	}
}

func TestHandlerAllowsMediaMTXPublish(t *testing.T) {
	f := newFixture(t)
	var decisions []policy.Verdict
	var mu sync.Mutex
	srv, _ := authServer(t, f.DB, testPolicy, authserver.Options{OnDecision: func(_ policy.Attempt, d policy.Verdict, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		decisions = append(decisions, d)
	}})

	rep := postJSON(t, srv, testutil.MediaMTXAuthBody("publish", "live/"+f.ActiveKey, "rtmp"))
	if !is2xx(rep.status) {
		t.Fatalf("status = %d (%q), want 2xx", rep.status, rep.body)
	}
	if rep.body != "" {
		t.Errorf("allow body = %q, want empty", rep.body)
	}
	rep = post(t, srv, "application/json; charset=utf-8", strings.NewReader(testutil.MediaMTXAuthBody("read", "live/benw", "hls")))
	if !is2xx(rep.status) {
		t.Errorf("public HLS read with a charset parameter: status = %d, want 2xx", rep.status)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(decisions) != 2 || !decisions[0].Allow || decisions[0].User != "benw" {
		t.Errorf("OnDecision saw %+v, want two allows, the first for benw", decisions)
	}
}

func TestHandlerAllowsUnknownFields(t *testing.T) {
	f := newFixture(t)
	srv, _ := authServer(t, f.DB, testPolicy, authserver.Options{})
	body := strings.TrimSuffix(testutil.MediaMTXAuthBody("publish", "live/"+f.ActiveKey, "srt"), "}") +
		`,"newInV2":{"nested":[1,2,3]},"flag":true,"n":null}`
	if rep := postJSON(t, srv, body); !is2xx(rep.status) {
		t.Errorf("publish with unknown extra fields: status = %d (%q), want 2xx", rep.status, rep.body)
	}
}

func TestHandlerDenials(t *testing.T) {
	f := newFixture(t)
	srv, _ := authServer(t, f.DB, testPolicy, authserver.Options{})
	key := "live/" + f.ActiveKey
	publish := testutil.MediaMTXAuthBody("publish", key, "rtmp")
	for _, tt := range []struct {
		name        string
		contentType string
		body        string
		want        int
	}{
		{"WrongKeyDenied", "application/json", testutil.MediaMTXAuthBody("publish", "live/"+stagedoor.NewKey(), "rtmp"), http.StatusUnauthorized},
		{"BannedKeyDenied", "application/json", testutil.MediaMTXAuthBody("publish", "live/"+f.BannedKey, "rtmp"), http.StatusUnauthorized},
		{"KeyPathReadDenied", "application/json", testutil.MediaMTXAuthBody("read", key, "hls"), http.StatusUnauthorized},
		{"PublishToPublicPathDenied", "application/json", testutil.MediaMTXAuthBody("publish", "live/benw", "rtmp"), http.StatusUnauthorized},
		{"UnknownActionDenied", "application/json", testutil.MediaMTXAuthBody("x", key, "rtmp"), http.StatusUnauthorized},
		{"UnknownProtocolDenied", "application/json", testutil.MediaMTXAuthBody("publish", key, "x"), http.StatusUnauthorized},
		{"AnonymousAPIDenied", "application/json", testutil.MediaMTXAuthBody("api", "", ""), http.StatusUnauthorized},
		{"EmptyObjectDenied", "application/json", `{}`, http.StatusUnauthorized},
		{"NullFieldsDenied", "application/json", `{"action":null,"path":null,"protocol":null}`, http.StatusUnauthorized},

		{"TextPlainIs415", "text/plain", publish, http.StatusUnsupportedMediaType},
		{"FormIs415", "application/x-www-form-urlencoded", "action=publish&path=" + key + "&protocol=rtmp", http.StatusUnsupportedMediaType},
		{"MultipartIs415", "multipart/form-data; boundary=x", publish, http.StatusUnsupportedMediaType},
		{"MissingContentTypeIs415", "", publish, http.StatusUnsupportedMediaType},
		{"MalformedContentTypeIs415", "application/json; =", publish, http.StatusUnsupportedMediaType},
		{"JSONSuffixTypeIs415", "application/problem+json", publish, http.StatusUnsupportedMediaType},

		{"EmptyBodyIs400", "application/json", ``, http.StatusBadRequest},
		{"TruncatedJSONIs400", "application/json", publish[:len(publish)/2], http.StatusBadRequest},
		{"TrailingGarbageIs400", "application/json", publish + "garbage", http.StatusBadRequest},
		{"SecondObjectIs400", "application/json", publish + publish, http.StatusBadRequest},
		{"CaseVariantActionIs400", "application/json", `{"action":"read","ACTION":"publish","path":"` + key + `","protocol":"rtmp"}`, http.StatusBadRequest},
		{"DuplicatePathIs400", "application/json", `{"action":"publish","path":"live/benw","path":"` + key + `","protocol":"rtmp"}`, http.StatusBadRequest},
		{"NumberActionIs400", "application/json", `{"action":1,"path":"` + key + `","protocol":"rtmp"}`, http.StatusBadRequest},
		{"InvalidUTF8Is400", "application/json", "{\"action\":\"publish\",\"path\":\"" + key + "\",\"protocol\":\"rtmp\",\"userAgent\":\"\xff\"}", http.StatusBadRequest},
		{"TopLevelArrayIs400", "application/json", `[` + publish + `]`, http.StatusBadRequest},
		{"NestedBracketsIs400", "application/json", strings.Repeat("[", 1<<15), http.StatusBadRequest},
		{"MiBOfNestedBracketsIs413", "application/json", strings.Repeat("[", 1<<20), http.StatusRequestEntityTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantDenied(t, post(t, srv, tt.contentType, strings.NewReader(tt.body)), tt.want)
		})
	}
}

func TestHandlerOtherRoutesNeverAllow(t *testing.T) {
	f := newFixture(t)
	srv, _ := authServer(t, f.DB, testPolicy, authserver.Options{})
	for _, tt := range []struct {
		name, method, path string
	}{
		{"GetAuthNot2xx", http.MethodGet, "/mediamtx/auth"},
		{"PutAuthNot2xx", http.MethodPut, "/mediamtx/auth"},
		{"TrailingSlashNot2xx", http.MethodPost, "/mediamtx/auth/"},
		{"OtherPathNot2xx", http.MethodPost, "/auth"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+tt.path,
				strings.NewReader(testutil.MediaMTXAuthBody("publish", "live/"+f.ActiveKey, "rtmp")))
			if err != nil {
				t.Fatalf("NewRequest: %v", err)
			}
			r.Header.Set("Content-Type", "application/json")
			// Do not follow gin's trailing-slash redirect: a 3xx is the answer MediaMTX sees.
			c := srv.Client()
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := c.Do(r)
			if err != nil {
				t.Fatalf("%s %s: %v", tt.method, tt.path, err)
			}
			_ = resp.Body.Close()
			if is2xx(resp.StatusCode) {
				t.Errorf("%s %s: status = %d, want non-2xx", tt.method, tt.path, resp.StatusCode)
			}
		})
	}
}

// paddedPublish is a valid, allowed publish body padded with whitespace to exactly n bytes.
func paddedPublish(t *testing.T, key string, n int) string {
	t.Helper()
	b := testutil.MediaMTXAuthBody("publish", "live/"+key, "rtmp")
	if len(b) > n {
		t.Fatalf("body is %d bytes, more than %d", len(b), n)
	}
	return b + strings.Repeat(" ", n-len(b))
}

func TestHandlerBodyLimit(t *testing.T) {
	f := newFixture(t)
	srv, _ := authServer(t, f.DB, testPolicy, authserver.Options{})
	for _, tt := range []struct {
		name string
		size int
		want int // 0: 2xx
	}{
		{"AtLimitAllowed", authserver.MaxBodyBytes, 0},
		{"OneOverLimitIs413", authserver.MaxBodyBytes + 1, http.StatusRequestEntityTooLarge},
		{"TenMiBIs413", 10 << 20, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep := postJSON(t, srv, paddedPublish(t, f.ActiveKey, tt.size))
			if tt.want == 0 {
				if !is2xx(rep.status) {
					t.Errorf("status = %d (%q), want 2xx", rep.status, rep.body)
				}
				return
			}
			wantDenied(t, rep, tt.want)
			// The next request is served normally.
			if rep := postJSON(t, srv, testutil.MediaMTXAuthBody("publish", "live/"+f.ActiveKey, "rtmp")); !is2xx(rep.status) {
				t.Errorf("publish after a too-large body: status = %d, want 2xx", rep.status)
			}
		})
	}
}

// TestHandlerOversizedBodiesCostNoHeap is T02's memory half: refusing bodies over the
// limit allocates far less than the limit per request, so a flood of them cannot grow
// the heap (io.ReadAll allocated about 2.5 times the limit for each one).
func TestHandlerOversizedBodiesCostNoHeap(t *testing.T) {
	f := newFixture(t)
	logger, _ := testutil.Logger()
	h := authserver.NewHandler(logger, &policy.Policy{Credentials: f.DB}, authserver.Options{})
	for _, body := range []string{
		paddedPublish(t, f.ActiveKey, authserver.MaxBodyBytes+1),
		strings.Repeat("[", 1<<20),
	} {
		call := func() {
			req := httptest.NewRequest(http.MethodPost, "/mediamtx/auth", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413", rec.Code)
			}
		}
		call() // the first allocates the body buffer
		const n = 50
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range n {
			call()
		}
		runtime.ReadMemStats(&after)
		if per := (after.TotalAlloc - before.TotalAlloc) / n; per > authserver.MaxBodyBytes/4 {
			t.Errorf("%d-byte body: %d bytes allocated per refusal, want under %d", len(body), per, authserver.MaxBodyBytes/4)
		}
	}
}

func TestHandlerFaults(t *testing.T) {
	closed := testdb.MustOpen(t)
	_ = closed.Close()
	publish := testutil.MediaMTXAuthBody("publish", "live/"+stagedoor.NewKey(), "rtmp")
	for _, tt := range []struct {
		name    string
		creds   policy.Credentials
		timeout time.Duration
		want    int
	}{
		{"LookupErrorIs500", testutil.FailingCreds(), 0, http.StatusInternalServerError},
		{"ClosedDatabaseIs500", closed, 0, http.StatusInternalServerError},
		{"PanicIs500", testutil.PanickingCreds(), 0, http.StatusInternalServerError},
		{"BlockedLookupIs503", testutil.BlockingCreds(), 50 * time.Millisecond, http.StatusServiceUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, lb := authServer(t, tt.creds, withTimeout(testPolicy, tt.timeout), authserver.Options{})
			wantDenied(t, postJSON(t, srv, publish), tt.want)
			// The server survives: a public read needs no lookup and is still answered.
			if rep := postJSON(t, srv, testutil.MediaMTXAuthBody("read", "live/benw", "hls")); !is2xx(rep.status) {
				t.Errorf("public read after the fault: status = %d, want 2xx", rep.status)
			}
			if !strings.Contains(lb.String(), "level=ERROR") {
				t.Errorf("no error logged for the fault; log:\n%s", lb)
			}
		})
	}
}

func TestHandlerLogsNoSecrets(t *testing.T) {
	f := newFixture(t)
	srv, lb := authServer(t, f.DB, testPolicy, authserver.Options{})
	const (
		password = "s3cr3t-pass"
		query    = "pass=" + password
		token    = "tok-9f8e7d6c5b4a"
	)
	withSecrets := func(body string) string {
		body = strings.Replace(body, `"user":""`, `"user":"benw"`, 1)
		body = strings.Replace(body, `"password":""`, `"password":"`+password+`"`, 1)
		body = strings.Replace(body, `"token":""`, `"token":"`+token+`"`, 1)
		return strings.Replace(body, `"query":""`, `"query":"`+query+`"`, 1)
	}
	relay := testutil.MediaMTXAuthBody("read", "live/"+f.ActiveKey, "rtsp")
	relay = strings.Replace(relay, `"user":""`, `"user":"`+relaySecret.User+`"`, 1)
	relay = strings.Replace(relay, `"password":""`, `"password":"`+relaySecret.Password+`"`, 1)
	for _, body := range []string{
		withSecrets(testutil.MediaMTXAuthBody("publish", "live/"+f.ActiveKey, "rtmp")),        // allowed
		withSecrets(testutil.MediaMTXAuthBody("publish", "live/"+f.BannedKey, "rtmp")),        // banned
		withSecrets(testutil.MediaMTXAuthBody("publish", "live/"+stagedoor.NewKey(), "rtmp")), // unknown
		withSecrets(testutil.MediaMTXAuthBody("read", "live/"+f.ActiveKey, "hls")),            // key-path read
		withSecrets(testutil.MediaMTXAuthBody("publish", "live/benw", "rtmp")),                // hijack attempt
		relay, // relay read, logged at debug
	} {
		postJSON(t, srv, body)
	}
	log := lb.String()
	// Positive control: the requests were logged, by fingerprint.
	if !strings.Contains(log, stagedoor.Fingerprint(f.ActiveKey)) || strings.Count(log, "msg=auth") != 6 {
		t.Fatalf("log does not hold the six auth lines with the key fingerprint:\n%s", log)
	}
	for _, secret := range []struct{ what, s string }{
		{"active key", f.ActiveKey},
		{"banned key", f.BannedKey},
		{"password", password},
		{"query", query},
		{"token", token},
		{"relay password", relaySecret.Password},
	} {
		if strings.Contains(log, secret.s) {
			t.Errorf("log contains the %s", secret.what)
		}
	}
}

// TestHandlerDeniesWhileUnhealthy: while the database fails its write probe every
// publish is denied, even one the policy would allow, while a public read, which needs no
// database, is still allowed; the first good probe restores the publish without a
// restart.
func TestHandlerDeniesWhileUnhealthy(t *testing.T) {
	var probeErr atomic.Pointer[error]
	fail := errors.New("disk I/O error")
	probeErr.Store(&fail)
	h := health.New(slog.New(slog.DiscardHandler), func(context.Context) error { return *probeErr.Load() }, pingOK{})
	if err := h.Check(t.Context()); err == nil {
		t.Fatal("Check with a failing probe returned nil")
	}
	f := newFixture(t)
	srv, _ := authServer(t, f.DB, withHealth(testPolicy, h.Err), authserver.Options{})
	publish := testutil.MediaMTXAuthBody("publish", "live/"+f.ActiveKey, "rtmp")
	read := testutil.MediaMTXAuthBody("read", "live/benw", "hls")
	wantDenied(t, postJSON(t, srv, publish), http.StatusServiceUnavailable)
	if rep := postJSON(t, srv, read); !is2xx(rep.status) {
		t.Errorf("public read while unhealthy: status = %d, want 2xx (reads need no database)", rep.status)
	}

	var ok error
	probeErr.Store(&ok)
	if err := h.Check(t.Context()); err != nil {
		t.Fatalf("Check with a passing probe: %v", err)
	}
	if rep := postJSON(t, srv, publish); !is2xx(rep.status) {
		t.Errorf("valid publish after recovery: status = %d, want 2xx", rep.status)
	}
}

func withTimeout(p policy.Policy, d time.Duration) policy.Policy {
	p.Timeout = d
	return p
}

func withHealth(p policy.Policy, healthy func() error) policy.Policy {
	p.Healthy = healthy
	return p
}

type pingOK struct{}

func (pingOK) Ping(context.Context) error { return nil }
