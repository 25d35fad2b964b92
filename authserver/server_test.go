package authserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/authserver"
)

// logBuffer is a bytes.Buffer safe for the server's goroutines to log into.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// authServer serves NewHandler over real HTTP on a :0 port.
func authServer(t *testing.T, creds authserver.Credentials, opts authserver.Options) (*httptest.Server, *logBuffer) {
	t.Helper()
	logger, lb := newLogger()
	srv := httptest.NewServer(authserver.NewHandler(logger, creds, opts))
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
	var decisions []authserver.Decision
	var mu sync.Mutex
	srv, _ := authServer(t, f.db, authserver.Options{Policy: testPolicy, OnDecision: func(_ authserver.Request, d authserver.Decision, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		decisions = append(decisions, d)
	}})

	rep := postJSON(t, srv, mediaMTXBody("publish", "live/"+f.activeKey, "rtmp"))
	if !is2xx(rep.status) {
		t.Fatalf("status = %d (%q), want 2xx", rep.status, rep.body)
	}
	if rep.body != "" {
		t.Errorf("allow body = %q, want empty", rep.body)
	}
	rep = post(t, srv, "application/json; charset=utf-8", strings.NewReader(mediaMTXBody("read", "live/benw", "hls")))
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
	srv, _ := authServer(t, f.db, authserver.Options{Policy: testPolicy})
	body := strings.TrimSuffix(mediaMTXBody("publish", "live/"+f.activeKey, "srt"), "}") +
		`,"newInV2":{"nested":[1,2,3]},"flag":true,"n":null}`
	if rep := postJSON(t, srv, body); !is2xx(rep.status) {
		t.Errorf("publish with unknown extra fields: status = %d (%q), want 2xx", rep.status, rep.body)
	}
}

func TestHandlerDenials(t *testing.T) {
	f := newFixture(t)
	srv, _ := authServer(t, f.db, authserver.Options{Policy: testPolicy})
	key := "live/" + f.activeKey
	publish := mediaMTXBody("publish", key, "rtmp")
	for _, tt := range []struct {
		name        string
		contentType string
		body        string
		want        int
	}{
		{"WrongKeyDenied", "application/json", mediaMTXBody("publish", "live/"+stagedoor.NewKey(), "rtmp"), http.StatusUnauthorized},
		{"BannedKeyDenied", "application/json", mediaMTXBody("publish", "live/"+f.bannedKey, "rtmp"), http.StatusUnauthorized},
		{"KeyPathReadDenied", "application/json", mediaMTXBody("read", key, "hls"), http.StatusUnauthorized},
		{"PublishToPublicPathDenied", "application/json", mediaMTXBody("publish", "live/benw", "rtmp"), http.StatusUnauthorized},
		{"UnknownActionDenied", "application/json", mediaMTXBody("x", key, "rtmp"), http.StatusUnauthorized},
		{"UnknownProtocolDenied", "application/json", mediaMTXBody("publish", key, "x"), http.StatusUnauthorized},
		{"AnonymousAPIDenied", "application/json", mediaMTXBody("api", "", ""), http.StatusUnauthorized},
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
	srv, _ := authServer(t, f.db, authserver.Options{Policy: testPolicy})
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
				strings.NewReader(mediaMTXBody("publish", "live/"+f.activeKey, "rtmp")))
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
	b := mediaMTXBody("publish", "live/"+key, "rtmp")
	if len(b) > n {
		t.Fatalf("body is %d bytes, more than %d", len(b), n)
	}
	return b + strings.Repeat(" ", n-len(b))
}

func TestHandlerBodyLimit(t *testing.T) {
	f := newFixture(t)
	srv, _ := authServer(t, f.db, authserver.Options{Policy: testPolicy})
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
			rep := postJSON(t, srv, paddedPublish(t, f.activeKey, tt.size))
			if tt.want == 0 {
				if !is2xx(rep.status) {
					t.Errorf("status = %d (%q), want 2xx", rep.status, rep.body)
				}
				return
			}
			wantDenied(t, rep, tt.want)
			// The next request is served normally.
			if rep := postJSON(t, srv, mediaMTXBody("publish", "live/"+f.activeKey, "rtmp")); !is2xx(rep.status) {
				t.Errorf("publish after a too-large body: status = %d, want 2xx", rep.status)
			}
		})
	}
}

func TestHandlerFaults(t *testing.T) {
	closed := mustOpen(t)
	_ = closed.Close()
	publish := mediaMTXBody("publish", "live/"+stagedoor.NewKey(), "rtmp")
	for _, tt := range []struct {
		name    string
		creds   authserver.Credentials
		timeout time.Duration
		want    int
	}{
		{"LookupErrorIs500", failingCreds(), 0, http.StatusInternalServerError},
		{"ClosedDatabaseIs500", closed, 0, http.StatusInternalServerError},
		{"PanicIs500", panickingCreds(), 0, http.StatusInternalServerError},
		{"BlockedLookupIs503", blockingCreds(), 50 * time.Millisecond, http.StatusServiceUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, lb := authServer(t, tt.creds, authserver.Options{Policy: testPolicy, Timeout: tt.timeout})
			wantDenied(t, postJSON(t, srv, publish), tt.want)
			// The server survives: a public read needs no lookup and is still answered.
			if rep := postJSON(t, srv, mediaMTXBody("read", "live/benw", "hls")); !is2xx(rep.status) {
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
	srv, lb := authServer(t, f.db, authserver.Options{Policy: testPolicy})
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
	relay := mediaMTXBody("read", "live/"+f.activeKey, "rtsp")
	relay = strings.Replace(relay, `"user":""`, `"user":"`+relaySecret.User+`"`, 1)
	relay = strings.Replace(relay, `"password":""`, `"password":"`+relaySecret.Password+`"`, 1)
	for _, body := range []string{
		withSecrets(mediaMTXBody("publish", "live/"+f.activeKey, "rtmp")),        // allowed
		withSecrets(mediaMTXBody("publish", "live/"+f.bannedKey, "rtmp")),        // banned
		withSecrets(mediaMTXBody("publish", "live/"+stagedoor.NewKey(), "rtmp")), // unknown
		withSecrets(mediaMTXBody("read", "live/"+f.activeKey, "hls")),            // key-path read
		withSecrets(mediaMTXBody("publish", "live/benw", "rtmp")),                // hijack attempt
		relay, // relay read, logged at debug
	} {
		postJSON(t, srv, body)
	}
	log := lb.String()
	// Positive control: the requests were logged, by fingerprint.
	if !strings.Contains(log, stagedoor.Fingerprint(f.activeKey)) || strings.Count(log, "msg=auth") != 6 {
		t.Fatalf("log does not hold the six auth lines with the key fingerprint:\n%s", log)
	}
	for _, secret := range []struct{ what, s string }{
		{"active key", f.activeKey},
		{"banned key", f.bannedKey},
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

func channelStatus(t *testing.T, srv *httptest.Server, name string) (int, string) {
	t.Helper()
	r, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/api/v1/channels/"+name, nil)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	resp, err := srv.Client().Do(r)
	if err != nil {
		t.Fatalf("GET channel %s: %v", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	return resp.StatusCode, string(b)
}

func TestPublicChannelStatus(t *testing.T) {
	f := newFixture(t)
	since := time.Date(2026, 3, 1, 20, 15, 0, 0, time.UTC)
	f.db.Now = func() time.Time { return since }
	logger, _ := newLogger()
	srv := httptest.NewServer(authserver.NewPublicHandler(logger, f.db, "http://h:8888"))
	t.Cleanup(srv.Close)

	for _, tt := range []struct{ name, channel string }{
		{"UnknownNameIs404", "nobody"},
		{"InvalidNameIs404", "BenW"},
		{"ReservedNameIs404", "api"},
		{"KeyAsNameIs404", f.activeKey},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if status, body := channelStatus(t, srv, tt.channel); status != http.StatusNotFound {
				t.Errorf("status = %d (%s), want 404", status, body)
			}
		})
	}

	decode := func(t *testing.T, body string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("status JSON %q: %v", body, err)
		}
		return m
	}
	checkNoSecrets := func(t *testing.T, body string) {
		t.Helper()
		if strings.Contains(body, f.activeKey) || strings.Contains(body, stagedoor.Fingerprint(f.activeKey)) {
			t.Errorf("status JSON carries benw's key or its fingerprint: %s", body)
		}
		if strings.Contains(body, "src-1") {
			t.Errorf("status JSON carries the source id: %s", body)
		}
	}

	t.Run("OfflineChannel", func(t *testing.T) {
		status, body := channelStatus(t, srv, "benw")
		if status != http.StatusOK {
			t.Fatalf("status = %d (%s), want 200", status, body)
		}
		want := map[string]any{"name": "benw", "live": false, "live_since": nil, "hls_url": "http://h:8888/live/benw/index.m3u8"}
		got := decode(t, body)
		if len(got) != len(want) {
			t.Errorf("fields = %v, want exactly %v", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %#v, want %#v", k, got[k], v)
			}
		}
		checkNoSecrets(t, body)
	})

	t.Run("LiveChannel", func(t *testing.T) {
		o, err := f.db.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(f.activeKey))
		if err != nil {
			t.Fatalf("UserByKeyDigest: %v", err)
		}
		if err := f.db.SetLive(t.Context(), stagedoor.LiveState{Name: o.UserName, UserID: o.UserID, KeyID: o.KeyID, SourceID: "src-1", SourceType: "rtmpConn"}); err != nil {
			t.Fatalf("SetLive: %v", err)
		}
		status, body := channelStatus(t, srv, "benw")
		if status != http.StatusOK {
			t.Fatalf("status = %d (%s), want 200", status, body)
		}
		got := decode(t, body)
		if got["live"] != true {
			t.Errorf("live = %#v, want true", got["live"])
		}
		if got["live_since"] != since.Format(time.RFC3339) {
			t.Errorf("live_since = %#v, want %q", got["live_since"], since.Format(time.RFC3339))
		}
		if got["hls_url"] != "http://h:8888/live/benw/index.m3u8" {
			t.Errorf("hls_url = %#v", got["hls_url"])
		}
		checkNoSecrets(t, body)
	})
}

func TestHealthHandler(t *testing.T) {
	db := mustOpen(t)
	srv := httptest.NewServer(authserver.HealthHandler(db))
	t.Cleanup(srv.Close)
	get := func(t *testing.T) (int, string) {
		t.Helper()
		r, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/healthz", nil)
		if err != nil {
			t.Fatalf("NewRequest: %v", err)
		}
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatalf("GET /healthz: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if status, body := get(t); status != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Errorf("open DB: %d %q, want 200 ok", status, body)
	}
	_ = db.Close()
	if status, body := get(t); status != http.StatusServiceUnavailable || !strings.Contains(body, "unhealthy") {
		t.Errorf("closed DB: %d %q, want 503 unhealthy", status, body)
	}
}

func TestHLSURLTrimsTrailingSlash(t *testing.T) {
	for _, base := range []string{"http://h:8888", "http://h:8888/", "http://h:8888//"} {
		if got, want := authserver.HLSURL(base, "benw"), "http://h:8888/live/benw/index.m3u8"; got != want {
			t.Errorf("HLSURL(%q) = %q, want %q", base, got, want)
		}
	}
}

// TestHandlerDeniesWhileUnhealthy: while the database fails its write probe every
// request is denied, even one the policy would allow, and the first good probe restores
// the allow without a restart.
func TestHandlerDeniesWhileUnhealthy(t *testing.T) {
	var probeErr atomic.Pointer[error]
	fail := errors.New("disk I/O error")
	probeErr.Store(&fail)
	health := authserver.NewHealth(slog.New(slog.DiscardHandler), func(context.Context) error { return *probeErr.Load() }, pingOK{})
	if err := health.Check(t.Context()); err == nil {
		t.Fatal("Check with a failing probe returned nil")
	}
	srv, _ := authServer(t, failingCreds(), authserver.Options{Policy: testPolicy, Healthy: health.Err})
	read := mediaMTXBody("read", "live/benw", "hls") // allowed without any lookup when healthy
	wantDenied(t, postJSON(t, srv, read), http.StatusServiceUnavailable)

	var ok error
	probeErr.Store(&ok)
	if err := health.Check(t.Context()); err != nil {
		t.Fatalf("Check with a passing probe: %v", err)
	}
	if rep := postJSON(t, srv, read); !is2xx(rep.status) {
		t.Errorf("public read after recovery: status = %d, want 2xx", rep.status)
	}
}

// TestHealthBeforeFirstProbe: a Health that has not probed yet is unhealthy.
func TestHealthBeforeFirstProbe(t *testing.T) {
	h := authserver.NewHealth(slog.New(slog.DiscardHandler), func(context.Context) error { return nil }, pingOK{})
	if h.Err() == nil {
		t.Error("Err() before the first probe = nil, want an error")
	}
	if h.Ping(t.Context()) == nil {
		t.Error("Ping() before the first probe = nil, want an error")
	}
}

type pingOK struct{}

func (pingOK) Ping(context.Context) error { return nil }

// TestHealthInconclusiveAndShutdown: an inconclusive probe (a busy write queue) and a
// probe cut short by shutdown leave the health as it was.
func TestHealthInconclusiveAndShutdown(t *testing.T) {
	var next atomic.Pointer[error]
	set := func(err error) { next.Store(&err) }
	h := authserver.NewHealth(slog.New(slog.DiscardHandler), func(ctx context.Context) error {
		if err := *next.Load(); err != nil {
			return err
		}
		return ctx.Err()
	}, pingOK{})
	set(nil)
	if err := h.Check(t.Context()); err != nil {
		t.Fatalf("first probe: %v", err)
	}
	set(authserver.ErrProbeInconclusive)
	_ = h.Check(t.Context())
	if err := h.Err(); err != nil {
		t.Errorf("after an inconclusive probe Err() = %v, want nil (unchanged)", err)
	}
	set(nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_ = h.Check(ctx)
	if err := h.Err(); err != nil {
		t.Errorf("after a probe cut short by shutdown Err() = %v, want nil (unchanged)", err)
	}
	set(errors.New("disk I/O error"))
	_ = h.Check(t.Context())
	if h.Err() == nil {
		t.Error("after a failing probe Err() = nil, want the error")
	}
	set(authserver.ErrProbeInconclusive)
	_ = h.Check(t.Context())
	if h.Err() == nil {
		t.Error("an inconclusive probe cleared a failure")
	}
}
