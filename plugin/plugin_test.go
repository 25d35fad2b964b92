package plugin_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/plugin"
	"github.com/stagedoor/stagedoor/store"
)

func mustOpen(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "stagedoor.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeAPI stands in for MediaMTX's control API so that hook events can be delivered
// in any order against a chosen runtime state, which a real MediaMTX cannot do on demand.
type fakeAPI struct {
	mu      sync.Mutex
	paths   map[string]plugin.Path // runtime paths by name
	configs map[string]string      // runtime path configs: name -> source
	calls   []string
}

func newFakeAPI(t *testing.T) (*fakeAPI, *plugin.MediaMTX) {
	f := &fakeAPI{paths: map[string]plugin.Path{}, configs: map[string]string{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, &plugin.MediaMTX{BaseURL: srv.URL, User: "admin", Password: "adminpw"}
}

func (f *fakeAPI) setSource(path, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == "" {
		delete(f.paths, path)
		return
	}
	f.paths[path] = plugin.Path{Name: path, Available: true, Source: &plugin.PathSource{Type: "rtmpConn", ID: id}}
}

func (f *fakeAPI) config(name string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.configs[name]
	return s, ok
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, p, ok := r.BasicAuth(); !ok || u != "admin" || p != "adminpw" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v3/paths/list":
		var items []plugin.Path
		for _, p := range f.paths {
			items = append(items, p)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"pageCount": 1, "items": items})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v3/paths/get/"):
		p, ok := f.paths[strings.TrimPrefix(r.URL.Path, "/v3/paths/get/")]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(p)
	case r.Method == http.MethodGet && r.URL.Path == "/v3/config/paths/list":
		var items []plugin.PathConfig
		for n, s := range f.configs {
			items = append(items, plugin.PathConfig{Name: n, Source: s})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"pageCount": 1, "items": items})
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v3/config/paths/replace/"):
		var c struct {
			Source string `json:"source"`
		}
		_ = json.NewDecoder(r.Body).Decode(&c)
		f.configs[strings.TrimPrefix(r.URL.Path, "/v3/config/paths/replace/")] = c.Source
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/v3/config/paths/delete/"):
		name := strings.TrimPrefix(r.URL.Path, "/v3/config/paths/delete/")
		if _, ok := f.configs[name]; !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		delete(f.configs, name)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

var relay = plugin.Relay{User: "stagedoor-relay", Password: "relaypw", RTSPAddress: "127.0.0.1:8554"}

type fixture struct {
	db  *store.DB
	api *fakeAPI
	m   *plugin.Manager
	key string
	id  int64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := mustOpen(t)
	nu, err := db.CreateUser(t.Context(), "benw")
	if err != nil {
		t.Fatal(err)
	}
	api, client := newFakeAPI(t)
	return &fixture{db: db, api: api, m: plugin.NewManager(discard(), db, client, relay), key: nu.StreamKey, id: nu.ID}
}

func (f *fixture) keyPath() string { return "live/" + f.key }

func (f *fixture) event(t *testing.T, kind, source string) {
	t.Helper()
	ev := plugin.Event{Kind: kind, Path: f.keyPath(), SourceID: source, SourceType: "rtmpConn"}
	if err := f.m.HandleEvent(t.Context(), ev); err != nil {
		t.Fatalf("%s(%s): %v", kind, source, err)
	}
}

// live returns the source benw is live on, or "" when offline.
func (f *fixture) live(t *testing.T) string {
	t.Helper()
	u, err := f.db.UserByName(t.Context(), "benw")
	if err != nil {
		t.Fatal(err)
	}
	if u.Live == nil {
		return ""
	}
	return u.Live.SourceID
}

func (f *fixture) wantState(t *testing.T, source string) {
	t.Helper()
	if got := f.live(t); got != source {
		t.Errorf("live source = %q, want %q", got, source)
	}
	conf, ok := f.api.config("live/benw")
	switch {
	case source == "" && ok:
		t.Errorf("alias live/benw present while offline")
	case source != "" && !ok:
		t.Errorf("alias live/benw missing while live")
	case source != "" && conf != "rtsp://stagedoor-relay:relaypw@127.0.0.1:8554/"+f.keyPath():
		t.Errorf("alias source does not point at the key path")
	}
}

func TestHandleEvent(t *testing.T) {
	t.Run("AvailableConfirmedGoesLiveWithAlias", func(t *testing.T) {
		f := newFixture(t)
		f.api.setSource(f.keyPath(), "A")
		f.event(t, plugin.EventAvailable, "A")
		f.wantState(t, "A")
	})
	t.Run("AvailableNotConfirmedIgnored", func(t *testing.T) {
		f := newFixture(t)
		f.event(t, plugin.EventAvailable, "A") // MediaMTX has no such path: a spoofed or stale hook
		f.wantState(t, "")
		f.api.setSource(f.keyPath(), "B")
		f.event(t, plugin.EventAvailable, "A") // available, but with another source
		f.wantState(t, "")
	})
	t.Run("OldSourceUnavailableAfterTakeoverIgnored", func(t *testing.T) {
		f := newFixture(t)
		f.api.setSource(f.keyPath(), "A")
		f.event(t, plugin.EventAvailable, "A")
		f.api.setSource(f.keyPath(), "B")
		f.event(t, plugin.EventAvailable, "B")
		f.event(t, plugin.EventUnavailable, "A") // arrives last
		f.wantState(t, "B")
	})
	t.Run("UnavailableBeforeNewAvailable", func(t *testing.T) {
		f := newFixture(t)
		f.api.setSource(f.keyPath(), "A")
		f.event(t, plugin.EventAvailable, "A")
		f.api.setSource(f.keyPath(), "B")
		f.event(t, plugin.EventUnavailable, "A")
		f.event(t, plugin.EventAvailable, "B")
		f.wantState(t, "B")
	})
	t.Run("DuplicateAvailableKeepsLiveSince", func(t *testing.T) {
		f := newFixture(t)
		now := time.Unix(1_700_000_000, 0)
		f.db.Now = func() time.Time { return now }
		f.api.setSource(f.keyPath(), "A")
		f.event(t, plugin.EventAvailable, "A")
		now = now.Add(time.Hour)
		f.event(t, plugin.EventAvailable, "A")
		u, _ := f.db.UserByName(t.Context(), "benw")
		if u.Live == nil || !u.Live.Since.Equal(time.Unix(1_700_000_000, 0)) {
			t.Errorf("live = %+v, want since the first event", u.Live)
		}
		f.wantState(t, "A")
	})
	t.Run("UnavailableTakesDownAlias", func(t *testing.T) {
		f := newFixture(t)
		f.api.setSource(f.keyPath(), "A")
		f.event(t, plugin.EventAvailable, "A")
		f.api.setSource(f.keyPath(), "")
		f.event(t, plugin.EventUnavailable, "A")
		f.wantState(t, "")
		f.event(t, plugin.EventUnavailable, "A") // duplicate
		f.wantState(t, "")
	})
	t.Run("UnavailableNeverAvailableIsNoop", func(t *testing.T) {
		f := newFixture(t)
		f.event(t, plugin.EventUnavailable, "Z")
		f.wantState(t, "")
	})
	t.Run("UnknownKeyIgnored", func(t *testing.T) {
		f := newFixture(t)
		other := "live/" + stagedoor.NewKey()
		f.api.setSource(other, "A")
		if err := f.m.HandleEvent(t.Context(), plugin.Event{Kind: plugin.EventAvailable, Path: other, SourceID: "A"}); err != nil {
			t.Fatal(err)
		}
		f.wantState(t, "")
	})
	t.Run("RotatedKeyIgnored", func(t *testing.T) {
		f := newFixture(t)
		old := f.keyPath()
		if _, err := f.db.ResetKeys(t.Context(), "benw"); err != nil {
			t.Fatal(err)
		}
		f.api.setSource(old, "A")
		f.event(t, plugin.EventAvailable, "A")
		f.wantState(t, "")
	})
	t.Run("BannedUserNotAliased", func(t *testing.T) {
		f := newFixture(t)
		if err := f.db.SetActive(t.Context(), "benw", false); err != nil {
			t.Fatal(err)
		}
		f.api.setSource(f.keyPath(), "A")
		f.event(t, plugin.EventAvailable, "A")
		f.wantState(t, "")
	})
	t.Run("EventWithoutSourceIgnored", func(t *testing.T) {
		f := newFixture(t)
		f.api.setSource(f.keyPath(), "A")
		f.event(t, plugin.EventAvailable, "A")
		f.event(t, plugin.EventUnavailable, "") // must not be an unconditional offline
		f.wantState(t, "A")
	})
}

func TestReconcile(t *testing.T) {
	t.Run("MissedAvailableRepaired", func(t *testing.T) {
		f := newFixture(t)
		f.api.setSource(f.keyPath(), "A")
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		f.wantState(t, "A")
	})
	t.Run("MissedUnavailableRepaired", func(t *testing.T) {
		f := newFixture(t)
		f.api.setSource(f.keyPath(), "A")
		f.event(t, plugin.EventAvailable, "A")
		f.api.setSource(f.keyPath(), "") // MediaMTX died: no unavailable hook at all
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		f.wantState(t, "")
	})
	t.Run("StaleLiveFlagCleared", func(t *testing.T) {
		f := newFixture(t)
		if err := f.db.SetLive(t.Context(), stagedoor.LiveState{Name: "benw", UserID: f.id, SourceID: "ghost", SourceType: "rtmpConn"}); err != nil {
			t.Fatal(err)
		}
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		f.wantState(t, "")
	})
	t.Run("ForeignConfigsUntouched", func(t *testing.T) {
		f := newFixture(t)
		f.api.configs["live/cam"] = "rtsp://camera.local/stream"
		f.api.configs["~^live/[a-z0-9_]{3,25}$"] = ""
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		if len(f.api.configs) != 2 {
			t.Errorf("configs = %v, want the operator's entries kept", f.api.configs)
		}
	})
	t.Run("StaleAliasFromEarlierRunReplaced", func(t *testing.T) {
		f := newFixture(t)
		f.api.setSource(f.keyPath(), "A")
		f.api.configs["live/benw"] = "rtsp://stagedoor-relay:oldsecret@127.0.0.1:8554/" + f.keyPath()
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		f.wantState(t, "A")
	})
	t.Run("BannedUserAliasRemoved", func(t *testing.T) {
		f := newFixture(t)
		f.api.setSource(f.keyPath(), "A")
		f.event(t, plugin.EventAvailable, "A")
		if err := f.db.SetActive(t.Context(), "benw", false); err != nil {
			t.Fatal(err)
		}
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		f.wantState(t, "")
	})
	t.Run("APIDownChangesNothing", func(t *testing.T) {
		db := mustOpen(t)
		nu, _ := db.CreateUser(t.Context(), "benw")
		_ = db.SetLive(t.Context(), stagedoor.LiveState{Name: "benw", UserID: nu.ID, SourceID: "A", SourceType: "rtmpConn"})
		m := plugin.NewManager(discard(), db, &plugin.MediaMTX{BaseURL: "http://127.0.0.1:1"}, relay)
		if err := m.Reconcile(t.Context()); err == nil {
			t.Fatal("Reconcile with MediaMTX down: nil error")
		}
		u, _ := db.UserByName(t.Context(), "benw")
		if u.Live == nil {
			t.Error("live flag cleared although MediaMTX could not be asked")
		}
	})
}

type recorder struct {
	mu  sync.Mutex
	evs []plugin.Event
}

func (r *recorder) HandleEvent(_ context.Context, ev plugin.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return nil
}

func TestHookHandler(t *testing.T) {
	key := stagedoor.NewKey()
	good := `{"event":"available","path":"live/` + key + `","source_id":"A","source_type":"rtmpConn"}`
	for _, tt := range []struct {
		name, secret, ctype, origin, body string
		want                              int
	}{
		{"Accepted", "hooksecret", "application/json", "", good, http.StatusNoContent},
		{"NoSecret", "", "application/json", "", good, http.StatusForbidden},
		{"WrongSecret", "guess", "application/json", "", good, http.StatusForbidden},
		{"BrowserOrigin", "hooksecret", "application/json", "https://evil.example", good, http.StatusForbidden},
		{"TextPlain", "hooksecret", "text/plain", "", good, http.StatusUnsupportedMediaType},
		{"Malformed", "hooksecret", "application/json", "", `{"event":`, http.StatusBadRequest},
		{"UnknownEvent", "hooksecret", "application/json", "", strings.Replace(good, "available", "ready", 1), http.StatusBadRequest},
		{"NotAStagedoorPath", "hooksecret", "application/json", "", strings.Replace(good, "live/"+key, "live/../x", 1), http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			srv := httptest.NewServer(plugin.NewHookHandler(discard(), "hooksecret", rec))
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", tt.ctype)
			if tt.secret != "" {
				req.Header.Set(plugin.HookSecretHeader, tt.secret)
			}
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tt.want {
				t.Errorf("status = %d, want %d", res.StatusCode, tt.want)
			}
			if accepted := len(rec.evs) == 1; accepted != (tt.want == http.StatusNoContent) {
				t.Errorf("event delivered = %v, want %v", accepted, tt.want == http.StatusNoContent)
			}
		})
	}
}

func TestNotifyFromEnv(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(plugin.NewHookHandler(discard(), "hooksecret", rec))
	defer srv.Close()
	key := stagedoor.NewKey()
	env := map[string]string{"MTX_PATH": "live/" + key, "MTX_SOURCE_ID": "src-1", "MTX_SOURCE_TYPE": "rtmpConn"}
	ev, err := plugin.EventFromEnv(plugin.EventUnavailable, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if err := plugin.Notify(t.Context(), srv.URL, "hooksecret", ev); err != nil {
		t.Fatal(err)
	}
	want := plugin.Event{Kind: "unavailable", Path: "live/" + key, SourceID: "src-1", SourceType: "rtmpConn"}
	if len(rec.evs) != 1 || rec.evs[0] != want {
		t.Errorf("delivered %+v, want %+v", rec.evs, want)
	}
	if err := plugin.Notify(t.Context(), srv.URL, "wrong", ev); err == nil {
		t.Error("Notify with a wrong secret: nil error")
	}
	if _, err := plugin.EventFromEnv("available", func(string) string { return "" }); err == nil {
		t.Error("EventFromEnv without MTX_PATH: nil error")
	}
}

func TestDirectIngest(t *testing.T) {
	t.Run("PublicNameAvailableGoesLiveWithoutAlias", func(t *testing.T) {
		f := newFixture(t)
		f.api.setSource("live/benw", "P") // benw?key=… straight to the public name
		if err := f.m.HandleEvent(t.Context(), plugin.Event{Kind: plugin.EventAvailable, Path: "live/benw", SourceID: "P"}); err != nil {
			t.Fatal(err)
		}
		if got := f.live(t); got != "P" {
			t.Errorf("live source = %q, want P", got)
		}
		if _, ok := f.api.config("live/benw"); ok {
			t.Error("direct ingest got an alias entry")
		}
		f.api.setSource("live/benw", "")
		if err := f.m.HandleEvent(t.Context(), plugin.Event{Kind: plugin.EventUnavailable, Path: "live/benw", SourceID: "P"}); err != nil {
			t.Fatal(err)
		}
		if got := f.live(t); got != "" {
			t.Errorf("live source = %q after unavailable, want offline", got)
		}
	})
	t.Run("StreamNameLiveByReconcile", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.db.CreateStream(t.Context(), "concert", "benw", true); err != nil {
			t.Fatal(err)
		}
		f.api.setSource("live/concert", "S")
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		l, err := f.db.LiveByName(t.Context(), "concert")
		if err != nil || l.SourceID != "S" || l.UserName != "benw" {
			t.Errorf("concert live = %+v, %v; want source S owned by benw", l, err)
		}
		f.api.setSource("live/concert", "")
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := f.db.LiveByName(t.Context(), "concert"); err == nil {
			t.Error("concert still live after its stream ended")
		}
	})
	t.Run("UnknownPublicNameIgnored", func(t *testing.T) {
		f := newFixture(t)
		f.api.setSource("live/nobody", "X")
		if err := f.m.HandleEvent(t.Context(), plugin.Event{Kind: plugin.EventAvailable, Path: "live/nobody", SourceID: "X"}); err != nil {
			t.Fatal(err)
		}
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		if ls, _ := f.db.LiveStates(t.Context()); len(ls) != 0 {
			t.Errorf("live states = %+v, want none", ls)
		}
	})
	t.Run("KeyAliasNeverReplacesDirectIngest", func(t *testing.T) {
		// Adding the exact-name alias entry would recreate live/benw and drop its publisher.
		f := newFixture(t)
		f.api.setSource("live/benw", "P")
		f.api.setSource(f.keyPath(), "K")
		f.event(t, plugin.EventAvailable, "K")
		if _, ok := f.api.config("live/benw"); ok {
			t.Error("alias set over a name held by direct ingest (event)")
		}
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, ok := f.api.config("live/benw"); ok {
			t.Error("alias set over a name held by direct ingest (reconcile)")
		}
		if got := f.live(t); got != "P" {
			t.Errorf("live source = %q, want the direct publisher P", got)
		}
	})
}

func (f *fakeAPI) kicked(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c == "POST /v3/rtmp/conns/kick/"+id {
			return true
		}
	}
	return false
}

func TestEnforcement(t *testing.T) {
	reconcile := func(t *testing.T, f *fixture) {
		t.Helper()
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("BanKicksKeyStream", func(t *testing.T) {
		f := newFixture(t)
		f.api.setSource(f.keyPath(), "A")
		f.event(t, plugin.EventAvailable, "A")
		if err := f.db.SetActive(t.Context(), "benw", false); err != nil {
			t.Fatal(err)
		}
		reconcile(t, f)
		if !f.api.kicked("A") {
			t.Error("banned user's stream not kicked")
		}
		f.wantState(t, "")
	})
	t.Run("RevokedKeyKicked", func(t *testing.T) {
		f := newFixture(t)
		f.api.setSource(f.keyPath(), "A")
		f.event(t, plugin.EventAvailable, "A")
		if _, err := f.db.ResetKeys(t.Context(), "benw"); err != nil {
			t.Fatal(err)
		}
		reconcile(t, f)
		if !f.api.kicked("A") {
			t.Error("stream on a revoked key not kicked")
		}
	})
	t.Run("KeepLiveFinishes", func(t *testing.T) {
		f := newFixture(t)
		f.api.setSource(f.keyPath(), "A")
		f.event(t, plugin.EventAvailable, "A")
		if _, err := f.db.ResetKeysWith(t.Context(), "benw", stagedoor.Revocation{KeepLive: true}); err != nil {
			t.Fatal(err)
		}
		reconcile(t, f)
		if f.api.kicked("A") {
			t.Error("--keep-live stream kicked")
		}
		f.wantState(t, "A")
	})
	t.Run("UnbannedNotKicked", func(t *testing.T) {
		f := newFixture(t)
		f.api.setSource(f.keyPath(), "A")
		f.event(t, plugin.EventAvailable, "A")
		reconcile(t, f)
		if f.api.kicked("A") {
			t.Error("active user's stream kicked")
		}
	})
	t.Run("DirectIngestKeyRevokedKicked", func(t *testing.T) {
		f := newFixture(t)
		d := stagedoor.KeyDigest(f.key)
		f.api.setSource("live/benw", "Q")
		ev := plugin.Event{Kind: plugin.EventAvailable, Path: "live/benw", SourceID: "Q", KeyDigest: hexDigest(d)}
		if err := f.m.HandleEvent(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
		reconcile(t, f)
		if f.api.kicked("Q") {
			t.Fatal("kicked while the key is valid")
		}
		if err := f.db.RevokeKey(t.Context(), "benw", d.Fingerprint(), stagedoor.Revocation{}); err != nil {
			t.Fatal(err)
		}
		reconcile(t, f)
		if !f.api.kicked("Q") {
			t.Error("direct ingest on a revoked key not kicked")
		}
	})
	t.Run("DeletedStreamKicked", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.db.CreateStream(t.Context(), "concert", "benw", false); err != nil {
			t.Fatal(err)
		}
		f.api.setSource("live/concert", "S")
		reconcile(t, f)
		if err := f.db.DeleteStream(t.Context(), "concert"); err != nil {
			t.Fatal(err)
		}
		reconcile(t, f)
		if !f.api.kicked("S") {
			t.Error("stream on a deleted name not kicked")
		}
	})
}

func hexDigest(d stagedoor.Digest) string { return hex.EncodeToString(d[:]) }
