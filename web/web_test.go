package web_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/store"
	"github.com/stagedoor/stagedoor/web"
)

var _ web.Channels = (*store.DB)(nil)

const hlsBase = "http://127.0.0.1:8888"

const wantCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self' http://127.0.0.1:8888; media-src http://127.0.0.1:8888 blob:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

var liveSince = time.Date(2026, 11, 23, 5, 35, 2, 0, time.UTC)

// fixture is a real store with alice live on her channel and on her stream "concert"
// (which has a publishing password), and bob offline; secrets lists what must never
// appear in a response.
type fixture struct {
	srv     *httptest.Server
	secrets []string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	ctx := t.Context()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "stagedoor.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	db.Now = func() time.Time { return liveSince }
	alice, err := db.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	bob, err := db.CreateUser(ctx, "bob")
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	hash, err := stagedoor.HashPassword("correct horse battery", stagedoor.MinCost)
	if err != nil {
		t.Fatalf("HashPassword: %v", err)
	}
	if err := db.SetPasswordHash(ctx, "alice", hash); err != nil {
		t.Fatalf("SetPasswordHash: %v", err)
	}
	if _, err := db.CreateStream(ctx, "concert", "alice", true); err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	d := stagedoor.KeyDigest(alice.StreamKey)
	for _, name := range []string{"alice", "concert"} {
		if err := db.SetLive(ctx, stagedoor.LiveState{NodeID: "local", Kind: stagedoor.LiveDirect, Name: name, UserID: alice.ID, UserName: "alice",
			KeyDigest: &d, SourceID: "src-" + name, SourceType: "rtmpConn"}); err != nil {
			t.Fatalf("SetLive: %v", err)
		}
	}
	return fixture{
		srv:     serve(t, db),
		secrets: []string{"sk_", "$2a$", alice.StreamKey, bob.StreamKey, hash, "src-alice", "rtmpConn"},
	}
}

func serve(t *testing.T, ch web.Channels) *httptest.Server {
	t.Helper()
	h, err := web.NewRouter(slog.New(slog.DiscardHandler), ch, web.Options{HLSBase: hlsBase})
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// reply is what a test reads of a response; get has read and closed its body.
type reply struct {
	StatusCode int
	Header     http.Header
}

// get fetches path as a browser would and checks the headers every response carries.
func get(t *testing.T, srv *httptest.Server, path string, header ...string) (reply, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	// A bare transport: no transparent gzip, so Content-Encoding is what the server chose.
	res, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	for k, want := range map[string]string{
		"Content-Security-Policy": wantCSP,
		"Referrer-Policy":         "no-referrer",
		"X-Content-Type-Options":  "nosniff",
	} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("GET %s: %s = %q, want %q", path, k, got, want)
		}
	}
	return reply{StatusCode: res.StatusCode, Header: res.Header}, string(body)
}

func noSecrets(t *testing.T, f fixture, path, body string) {
	t.Helper()
	for _, s := range f.secrets {
		if strings.Contains(body, s) {
			t.Errorf("GET %s: response contains %q", path, s)
		}
	}
}

func TestChannelPage(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		name, path string
		want       []string
		notWant    []string
	}{
		{"LiveChannel", "/alice", []string{
			`<h1>alice</h1>`,
			`id="badge" class="badge live">Live</span>`,
			`Live since <time datetime="2026-11-23T05:35:02Z">2026-11-23 05:35 UTC</time>`,
			`data-hls="http://127.0.0.1:8888/live/alice/index.m3u8"`,
			`data-status="/api/v1/channels/alice"`,
			`<video id="player" muted autoplay playsinline controls></video>`,
			`<p id="placeholder" class="placeholder" hidden>`,
			`<script src="/static/app.js" defer></script>`,
		}, []string{"Offline"}},
		{"OfflineChannel", "/bob", []string{
			`<h1>bob</h1>`,
			`id="badge" class="badge offline">Offline</span>`,
			`<span id="since" class="since" hidden>`,
			`<video id="player" muted autoplay playsinline controls hidden></video>`,
			`<p id="placeholder" class="placeholder">bob is offline.`,
		}, []string{">Live<"}},
		{"LiveStream", "/concert", []string{
			`<h1>concert</h1>`,
			`id="badge" class="badge live">Live</span>`,
			`data-hls="http://127.0.0.1:8888/live/concert/index.m3u8"`,
		}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, body := get(t, f.srv, tt.path)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", res.StatusCode)
			}
			if got := res.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q\n%s", w, body)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("page contains %q", w)
				}
			}
			if strings.Contains(body, "<script>") || strings.Contains(body, " style=") {
				t.Errorf("page has inline script or style:\n%s", body)
			}
			noSecrets(t, f, tt.path, body)
		})
	}
	t.Run("LoadsVendoredHLSJS", func(t *testing.T) {
		needHLSJS(t, f.srv)
		if _, body := get(t, f.srv, "/alice"); !strings.Contains(body, `<script src="/static/hls.min.js" defer></script>`) {
			t.Errorf("channel page does not load hls.js:\n%s", body)
		}
	})
}

func TestChannelPageNotFound(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct{ name, path string }{
		{"UnknownName", "/nobody"},
		{"UpperCase", "/Alice"},
		{"TooShort", "/al"},
		{"KeyShaped", "/" + stagedoor.NewKey()},
		{"Reserved", "/api"},
		{"Markup", "/%3Cscript%3E"},
		{"Dotted", "/al.ice"},
		{"UnknownAsset", "/static/nope.js"},
		{"DeepPath", "/alice/extra"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, body := get(t, f.srv, tt.path)
			if res.StatusCode != http.StatusNotFound {
				t.Fatalf("status = %d, want 404", res.StatusCode)
			}
			if !strings.Contains(body, "No such channel") {
				t.Errorf("body is not the 404 page:\n%s", body)
			}
			if strings.Contains(body, "<script>") {
				t.Errorf("404 page echoes markup:\n%s", body)
			}
		})
	}
}

func TestIndexListsLiveChannelsOnly(t *testing.T) {
	f := newFixture(t)
	res, body := get(t, f.srv, "/")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", res.StatusCode)
	}
	for _, w := range []string{`<a href="/alice">alice</a>`, `<a href="/concert">concert</a>`,
		`<time datetime="2026-11-23T05:35:02Z">`} {
		if !strings.Contains(body, w) {
			t.Errorf("index lacks %q\n%s", w, body)
		}
	}
	if strings.Contains(body, "bob") {
		t.Errorf("index lists offline bob:\n%s", body)
	}
	if strings.Contains(body, "hls.min.js") {
		t.Errorf("index loads hls.js, which only channel pages need")
	}
	noSecrets(t, f, "/", body)
}

// fakeChannels produces what a real store cannot: markup in a name, and failures.
type fakeChannels struct {
	channelByName func(ctx context.Context, name string) (stagedoor.Channel, error)
	liveStates    func(ctx context.Context) ([]stagedoor.LiveState, error)
}

func (f fakeChannels) ChannelByName(ctx context.Context, name string) (stagedoor.Channel, error) {
	return f.channelByName(ctx, name)
}

func (f fakeChannels) LiveStates(ctx context.Context) ([]stagedoor.LiveState, error) {
	return f.liveStates(ctx)
}

func TestPagesEscapeNames(t *testing.T) {
	const evil = `<script>alert("x")</script>`
	srv := serve(t, fakeChannels{
		channelByName: func(context.Context, string) (stagedoor.Channel, error) {
			return stagedoor.Channel{Name: evil, Live: &stagedoor.LiveState{Name: evil, Since: liveSince}}, nil
		},
		liveStates: func(context.Context) ([]stagedoor.LiveState, error) {
			return []stagedoor.LiveState{{Name: evil, Since: liveSince}}, nil
		},
	})
	for _, path := range []string{"/", "/evil_name"} {
		_, body := get(t, srv, path)
		if strings.Contains(body, "<script>alert") {
			t.Errorf("GET %s: name not escaped:\n%s", path, body)
		}
		if !strings.Contains(body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
			t.Errorf("GET %s: escaped name missing:\n%s", path, body)
		}
	}
}

func TestStoreErrorIsAGeneric500(t *testing.T) {
	boom := errors.New("disk I/O error at /var/lib/stagedoor/stagedoor.db")
	var logs bytes.Buffer
	h, err := web.NewRouter(slog.New(slog.NewTextHandler(&logs, nil)), fakeChannels{
		channelByName: func(context.Context, string) (stagedoor.Channel, error) { return stagedoor.Channel{}, boom },
		liveStates:    func(context.Context) ([]stagedoor.LiveState, error) { return nil, boom },
	}, web.Options{HLSBase: hlsBase})
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for _, path := range []string{"/", "/alice"} {
		res, body := get(t, srv, path)
		if res.StatusCode != http.StatusInternalServerError {
			t.Errorf("GET %s: status = %d, want 500", path, res.StatusCode)
		}
		if strings.Contains(body, "disk I/O") || strings.Contains(body, "/var/lib") {
			t.Errorf("GET %s: error details reach the viewer:\n%s", path, body)
		}
	}
	if got := strings.Count(logs.String(), "disk I/O"); got != 2 {
		t.Errorf("logged the error %d times, want once per request:\n%s", got, logs.String())
	}
}

// needHLSJS skips (locally) or fails (under CI) when hls.js was not vendored.
func needHLSJS(t *testing.T, srv *httptest.Server) {
	t.Helper()
	if res, _ := get(t, srv, "/static/"+web.HLSJS); res.StatusCode == http.StatusOK {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("web/static/%s missing: `make hlsjs` must run before the tests", web.HLSJS)
	}
	t.Skipf("web/static/%s missing: run `make hlsjs` (npm package hls.js)", web.HLSJS)
}

func TestStaticAssets(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct{ file, ctype string }{
		{"app.js", "text/javascript; charset=utf-8"},
		{"page.css", "text/css; charset=utf-8"},
		{"favicon.svg", "image/svg+xml"},
		{web.HLSJS, "text/javascript; charset=utf-8"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			if tt.file == web.HLSJS {
				needHLSJS(t, f.srv)
			}
			path := "/static/" + tt.file
			res, plain := get(t, f.srv, path)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", res.StatusCode)
			}
			if got := res.Header.Get("Content-Type"); got != tt.ctype {
				t.Errorf("Content-Type = %q, want %q", got, tt.ctype)
			}
			if res.Header.Get("Content-Encoding") != "" {
				t.Errorf("Content-Encoding = %q without Accept-Encoding", res.Header.Get("Content-Encoding"))
			}
			noSecrets(t, f, path, plain)

			etag := res.Header.Get("ETag")
			if res, _ := get(t, f.srv, path, "If-None-Match", etag); etag == "" || res.StatusCode != http.StatusNotModified {
				t.Errorf("revalidation with ETag %q = %d, want 304", etag, res.StatusCode)
			}

			if res, _ := get(t, f.srv, path, "Accept-Encoding", "gzip;q=0, identity"); res.Header.Get("Content-Encoding") != "" {
				t.Errorf("Content-Encoding = %q although gzip;q=0", res.Header.Get("Content-Encoding"))
			}
			res, zipped := get(t, f.srv, path, "Accept-Encoding", "br, gzip")
			if res.Header.Get("Content-Encoding") != "gzip" {
				if len(plain) > 1024 {
					t.Errorf("Content-Encoding = %q for %d bytes, want gzip", res.Header.Get("Content-Encoding"), len(plain))
				}
				return
			}
			zr, err := gzip.NewReader(strings.NewReader(zipped))
			if err != nil {
				t.Fatalf("gzip: %v", err)
			}
			if unzipped, err := io.ReadAll(zr); err != nil || string(unzipped) != plain {
				t.Errorf("gzip body differs from the plain body (err %v)", err)
			}
		})
	}
}

func TestNewRouterRejectsBadHLSURL(t *testing.T) {
	for _, base := range []string{"", "127.0.0.1:8888", "/live", "ftp://host:8888", "http://", "http://viewer:secret@host:8888"} {
		if _, err := web.NewRouter(slog.New(slog.DiscardHandler), fakeChannels{}, web.Options{HLSBase: base}); err == nil {
			t.Errorf("NewRouter(%q) = nil error, want one", base)
		}
	}
}

// TestPanelMount: opts.Panel serves everything under /panel/ (with its own headers, not
// the pages'), /panel redirects there, and without it /panel/ is the 404 page.
func TestPanelMount(t *testing.T) {
	panelHit := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Panel", r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	})
	h, err := web.NewRouter(slog.New(slog.DiscardHandler), fakeChannels{}, web.Options{HLSBase: hlsBase, Panel: panelHit})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/panel/", "/panel/login", "/panel/channels/benw"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		if rec.Code != http.StatusTeapot || rec.Header().Get("X-Panel") != p || rec.Header().Get("Content-Security-Policy") != "" {
			t.Errorf("GET %s: %d %v, want the panel's answer alone", p, rec.Code, rec.Header())
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/panel", nil))
	if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "/panel/" {
		t.Errorf("GET /panel: %d %s, want a redirect to /panel/", rec.Code, rec.Header().Get("Location"))
	}
	without, err := web.NewRouter(slog.New(slog.DiscardHandler), fakeChannels{}, web.Options{HLSBase: hlsBase})
	if err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	without.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/panel/login", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /panel/login without a panel: %d, want 404", rec.Code)
	}
}
