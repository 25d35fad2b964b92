package plugin_test

import (
	"context"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testdb"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/mediamtx"
	"github.com/stagedoor/stagedoor/mediamtx/mediamtxtest"
	"github.com/stagedoor/stagedoor/plugin"
	"github.com/stagedoor/stagedoor/policy"
	"github.com/stagedoor/stagedoor/store"
)

// standing is the policy's continue check over db, as the service wires it.
func standing(db *store.DB) *policy.Policy { return &policy.Policy{Credentials: db} }

func newFakeAPI(t *testing.T) (*mediamtxtest.Server, *mediamtx.Client) {
	f := mediamtxtest.New(t, "admin", "adminpw")
	return f, f.Client()
}

var relay = plugin.Relay{User: "stagedoor-relay", Password: "relaypw", RTSPAddress: "127.0.0.1:8554"}

type fixture struct {
	db  *store.DB
	api *mediamtxtest.Server
	m   *plugin.Manager
	key string
	id  int64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := testdb.MustOpen(t)
	nu, err := db.CreateUser(t.Context(), "benw")
	if err != nil {
		t.Fatal(err)
	}
	api, client := newFakeAPI(t)
	return &fixture{db: db, api: api, m: plugin.NewManager(testutil.Discard(), db, client, relay, standing(db)), key: nu.StreamKey, id: nu.ID}
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
	conf, ok := f.api.Config("live/benw")
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
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
		f.event(t, plugin.EventAvailable, "A")
		f.wantState(t, "A")
		// MediaMTX logs "ERR [API] path not found" for every paths/get of a path it does
		// not have: a normal publish must not ask for one (the alias's path is not there
		// yet when its key path becomes available).
		if n := f.api.PathNotFound.Load(); n != 0 {
			t.Errorf("%d paths/get calls for a missing path during a normal publish", n)
		}
	})
	t.Run("AvailableNotConfirmedIgnored", func(t *testing.T) {
		f := newFixture(t)
		f.event(t, plugin.EventAvailable, "A") // MediaMTX has no such path: a spoofed or stale hook
		f.wantState(t, "")
		f.api.SetSource(f.keyPath(), "rtmpConn", "B")
		f.event(t, plugin.EventAvailable, "A") // available, but with another source
		f.wantState(t, "")
	})
	t.Run("OldSourceUnavailableAfterTakeoverIgnored", func(t *testing.T) {
		f := newFixture(t)
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
		f.event(t, plugin.EventAvailable, "A")
		f.api.SetSource(f.keyPath(), "rtmpConn", "B")
		f.event(t, plugin.EventAvailable, "B")
		f.event(t, plugin.EventUnavailable, "A") // arrives last
		f.wantState(t, "B")
	})
	t.Run("UnavailableBeforeNewAvailable", func(t *testing.T) {
		f := newFixture(t)
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
		f.event(t, plugin.EventAvailable, "A")
		f.api.SetSource(f.keyPath(), "rtmpConn", "B")
		f.event(t, plugin.EventUnavailable, "A")
		f.event(t, plugin.EventAvailable, "B")
		f.wantState(t, "B")
	})
	t.Run("DuplicateAvailableKeepsLiveSince", func(t *testing.T) {
		f := newFixture(t)
		now := time.Unix(1_700_000_000, 0)
		f.db.Now = func() time.Time { return now }
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
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
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
		f.event(t, plugin.EventAvailable, "A")
		f.api.SetSource(f.keyPath(), "rtmpConn", "")
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
		f.api.SetSource(other, "rtmpConn", "A")
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
		f.api.SetSource(old, "rtmpConn", "A")
		f.event(t, plugin.EventAvailable, "A")
		f.wantState(t, "")
	})
	t.Run("BannedUserNotAliased", func(t *testing.T) {
		f := newFixture(t)
		if err := f.db.SetActive(t.Context(), "benw", false); err != nil {
			t.Fatal(err)
		}
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
		f.event(t, plugin.EventAvailable, "A")
		f.wantState(t, "")
	})
	t.Run("EventWithoutSourceIgnored", func(t *testing.T) {
		f := newFixture(t)
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
		f.event(t, plugin.EventAvailable, "A")
		f.event(t, plugin.EventUnavailable, "") // must not be an unconditional offline
		f.wantState(t, "A")
	})
}

func TestReconcile(t *testing.T) {
	t.Run("MissedAvailableRepaired", func(t *testing.T) {
		f := newFixture(t)
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		f.wantState(t, "A")
	})
	t.Run("MissedUnavailableRepaired", func(t *testing.T) {
		f := newFixture(t)
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
		f.event(t, plugin.EventAvailable, "A")
		f.api.SetSource(f.keyPath(), "rtmpConn", "") // MediaMTX died: no unavailable hook at all
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		f.wantState(t, "")
	})
	t.Run("StaleLiveFlagCleared", func(t *testing.T) {
		f := newFixture(t)
		if err := f.db.SetLive(t.Context(), stagedoor.LiveState{NodeID: "local", Kind: stagedoor.LiveDirect, Name: "benw", UserID: f.id, SourceID: "ghost", SourceType: "rtmpConn"}); err != nil {
			t.Fatal(err)
		}
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		f.wantState(t, "")
	})
	// Another node's live name (a cluster sharing the database) is that node's to take
	// offline: this node's MediaMTX not carrying it says nothing.
	t.Run("OtherNodesLiveStateKept", func(t *testing.T) {
		f := newFixture(t)
		if err := f.db.SetLive(t.Context(), stagedoor.LiveState{NodeID: "node-b", Kind: stagedoor.LiveDirect, Name: "benw", UserID: f.id, SourceID: "b1", SourceType: "rtmpConn"}); err != nil {
			t.Fatal(err)
		}
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := f.live(t); got != "b1" {
			t.Errorf("after reconcile: live source = %q, want node-b's b1 kept", got)
		}
		f.event(t, plugin.EventUnavailable, "b1") // an unavailable hook for that source here
		if got := f.live(t); got != "b1" {
			t.Errorf("after an unavailable hook here: live source = %q, want node-b's b1 kept", got)
		}
	})
	t.Run("ForeignConfigsUntouched", func(t *testing.T) {
		f := newFixture(t)
		f.api.SetConfig("live/cam", "rtsp://camera.local/stream")
		f.api.SetConfig("~^live/[a-z0-9_]{3,25}$", "")
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		if len(f.api.Configs()) != 2 {
			t.Errorf("configs = %v, want the operator's entries kept", f.api.Configs())
		}
	})
	t.Run("StaleAliasFromEarlierRunReplaced", func(t *testing.T) {
		f := newFixture(t)
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
		f.api.SetConfig("live/benw", "rtsp://stagedoor-relay:oldsecret@127.0.0.1:8554/"+f.keyPath())
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		f.wantState(t, "A")
	})
	t.Run("BannedUserAliasRemoved", func(t *testing.T) {
		f := newFixture(t)
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
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
		db := testdb.MustOpen(t)
		nu, _ := db.CreateUser(t.Context(), "benw")
		_ = db.SetLive(t.Context(), stagedoor.LiveState{NodeID: "local", Kind: stagedoor.LiveDirect, Name: "benw", UserID: nu.ID, SourceID: "A", SourceType: "rtmpConn"})
		m := plugin.NewManager(testutil.Discard(), db, &mediamtx.Client{BaseURL: "http://127.0.0.1:1"}, relay, standing(db))
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
			srv := httptest.NewServer(plugin.NewHookHandler(testutil.Discard(), "hooksecret", rec))
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
	srv := httptest.NewServer(plugin.NewHookHandler(testutil.Discard(), "hooksecret", rec))
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
		f.api.SetSource("live/benw", "rtmpConn", "P") // benw?key=… straight to the public name
		if err := f.m.HandleEvent(t.Context(), plugin.Event{Kind: plugin.EventAvailable, Path: "live/benw", SourceID: "P"}); err != nil {
			t.Fatal(err)
		}
		if got := f.live(t); got != "P" {
			t.Errorf("live source = %q, want P", got)
		}
		if _, ok := f.api.Config("live/benw"); ok {
			t.Error("direct ingest got an alias entry")
		}
		f.api.SetSource("live/benw", "rtmpConn", "")
		if err := f.m.HandleEvent(t.Context(), plugin.Event{Kind: plugin.EventUnavailable, Path: "live/benw", SourceID: "P"}); err != nil {
			t.Fatal(err)
		}
		if got := f.live(t); got != "" {
			t.Errorf("live source = %q after unavailable, want offline", got)
		}
	})
	t.Run("KeyOnPublicNameRecordsLastUse", func(t *testing.T) {
		f := newFixture(t)
		d := stagedoor.KeyDigest(f.key)
		f.api.SetSource("live/benw", "rtmpConn", "Q")
		if err := f.m.HandleEvent(t.Context(), plugin.Event{Kind: plugin.EventAvailable, Path: "live/benw", SourceID: "Q",
			KeyDigest: hex.EncodeToString(d[:])}); err != nil {
			t.Fatal(err)
		}
		keys, err := f.db.Keys(t.Context(), "benw")
		if err != nil || len(keys) != 1 || keys[0].LastUsedAt == nil {
			t.Errorf("keys after a key publish on the public name = %+v, %v; want last used set", keys, err)
		}
	})
	t.Run("AuthEnabledKicksPublishWithoutCredentials", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.db.CreateStream(t.Context(), "lobby", "benw", false); err != nil {
			t.Fatal(err)
		}
		f.api.SetSource("live/lobby", "rtmpConn", "L")
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		if l, err := f.db.LiveByName(t.Context(), "lobby"); err != nil || l.SourceID != "L" {
			t.Fatalf("lobby (authentication off) live = %+v, %v; want source L", l, err)
		}
		if len(f.api.Kicks()) != 0 {
			t.Fatalf("kicks %v while authentication is off", f.api.Kicks())
		}
		if err := f.db.SetStreamAuth(t.Context(), "lobby", true); err != nil {
			t.Fatal(err)
		}
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := f.api.Kicks(); len(got) != 1 || got[0] != "rtmpConn/L" {
			t.Errorf("kicks after authentication was enabled = %v, want [rtmpConn/L]", got)
		}
	})
	t.Run("StreamNameLiveByReconcile", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.db.CreateStream(t.Context(), "concert", "benw", false); err != nil {
			t.Fatal(err)
		}
		f.api.SetSource("live/concert", "rtmpConn", "S")
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		l, err := f.db.LiveByName(t.Context(), "concert")
		if err != nil || l.SourceID != "S" || l.UserName != "benw" {
			t.Errorf("concert live = %+v, %v; want source S owned by benw", l, err)
		}
		f.api.SetSource("live/concert", "rtmpConn", "")
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := f.db.LiveByName(t.Context(), "concert"); err == nil {
			t.Error("concert still live after its stream ended")
		}
	})
	t.Run("UnknownPublicNameIgnored", func(t *testing.T) {
		f := newFixture(t)
		f.api.SetSource("live/nobody", "rtmpConn", "X")
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
		f.api.SetSource("live/benw", "rtmpConn", "P")
		f.api.SetSource(f.keyPath(), "rtmpConn", "K")
		f.event(t, plugin.EventAvailable, "K")
		if _, ok := f.api.Config("live/benw"); ok {
			t.Error("alias set over a name held by direct ingest (event)")
		}
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, ok := f.api.Config("live/benw"); ok {
			t.Error("alias set over a name held by direct ingest (reconcile)")
		}
		if got := f.live(t); got != "P" {
			t.Errorf("live source = %q, want the direct publisher P", got)
		}
	})
}

// kicked reports whether the fake saw a kick of the RTMP publisher id.
func kicked(api *mediamtxtest.Server, id string) bool {
	return slices.Contains(api.Kicks(), "rtmpConn/"+id)
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
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
		f.event(t, plugin.EventAvailable, "A")
		if err := f.db.SetActive(t.Context(), "benw", false); err != nil {
			t.Fatal(err)
		}
		reconcile(t, f)
		if !kicked(f.api, "A") {
			t.Error("banned user's stream not kicked")
		}
		f.wantState(t, "")
	})
	t.Run("RevokedKeyKicked", func(t *testing.T) {
		f := newFixture(t)
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
		f.event(t, plugin.EventAvailable, "A")
		if _, err := f.db.ResetKeys(t.Context(), "benw"); err != nil {
			t.Fatal(err)
		}
		reconcile(t, f)
		if !kicked(f.api, "A") {
			t.Error("stream on a revoked key not kicked")
		}
	})
	t.Run("KeepLiveFinishes", func(t *testing.T) {
		f := newFixture(t)
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
		f.event(t, plugin.EventAvailable, "A")
		if _, err := f.db.ResetKeysWith(t.Context(), "benw", stagedoor.Revocation{KeepLive: true}); err != nil {
			t.Fatal(err)
		}
		reconcile(t, f)
		if kicked(f.api, "A") {
			t.Error("--keep-live stream kicked")
		}
		f.wantState(t, "A")
	})
	t.Run("KeepLiveEndedByLaterReset", func(t *testing.T) {
		for _, tt := range []struct {
			name  string
			reset func(*fixture) error
		}{
			{"ResetKeys", func(f *fixture) error { _, err := f.db.ResetKeys(t.Context(), "benw"); return err }},
			{"ResetAllKeys", func(f *fixture) error { _, err := f.db.ResetAllKeys(t.Context(), stagedoor.Revocation{}); return err }},
		} {
			t.Run(tt.name, func(t *testing.T) {
				f := newFixture(t)
				f.api.SetSource(f.keyPath(), "rtmpConn", "A")
				f.event(t, plugin.EventAvailable, "A")
				if err := f.db.RevokeKey(t.Context(), "benw", stagedoor.Fingerprint(f.key), stagedoor.Revocation{KeepLive: true}); err != nil {
					t.Fatal(err)
				}
				reconcile(t, f)
				if kicked(f.api, "A") {
					t.Fatal("--keep-live stream kicked before the reset")
				}
				if err := tt.reset(f); err != nil {
					t.Fatal(err)
				}
				reconcile(t, f)
				if !kicked(f.api, "A") {
					t.Error("stream on a key revoked with --keep-live not kicked by a later reset without it")
				}
			})
		}
	})
	t.Run("UnbannedNotKicked", func(t *testing.T) {
		f := newFixture(t)
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
		f.event(t, plugin.EventAvailable, "A")
		reconcile(t, f)
		if kicked(f.api, "A") {
			t.Error("active user's stream kicked")
		}
	})
	t.Run("DirectIngestKeyRevokedKicked", func(t *testing.T) {
		f := newFixture(t)
		d := stagedoor.KeyDigest(f.key)
		f.api.SetSource("live/benw", "rtmpConn", "Q")
		ev := plugin.Event{Kind: plugin.EventAvailable, Path: "live/benw", SourceID: "Q", KeyDigest: hexDigest(d)}
		if err := f.m.HandleEvent(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
		reconcile(t, f)
		if kicked(f.api, "Q") {
			t.Fatal("kicked while the key is valid")
		}
		if err := f.db.RevokeKey(t.Context(), "benw", d.Fingerprint(), stagedoor.Revocation{}); err != nil {
			t.Fatal(err)
		}
		reconcile(t, f)
		if !kicked(f.api, "Q") {
			t.Error("direct ingest on a revoked key not kicked")
		}
	})
	t.Run("DeletedStreamKicked", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.db.CreateStream(t.Context(), "concert", "benw", false); err != nil {
			t.Fatal(err)
		}
		f.api.SetSource("live/concert", "rtmpConn", "S")
		reconcile(t, f)
		if err := f.db.DeleteStream(t.Context(), "concert"); err != nil {
			t.Fatal(err)
		}
		reconcile(t, f)
		if !kicked(f.api, "S") {
			t.Error("stream on a deleted name not kicked")
		}
	})
}

func hexDigest(d stagedoor.Digest) string { return hex.EncodeToString(d[:]) }

// blockableFixture is a fixture whose manager waits a minute for MediaMTX's API, so that
// a route the test blocks with Block hangs for as long as the test holds it, and a second
// user, carol.
func blockableFixture(t *testing.T) (*fixture, string) {
	t.Helper()
	f := newFixture(t)
	client := f.api.Client()
	client.Client = &http.Client{Timeout: time.Minute}
	f.m = plugin.NewManager(testutil.Discard(), f.db, client, relay, standing(f.db))
	nu, err := f.db.CreateUser(t.Context(), "carol")
	if err != nil {
		t.Fatal(err)
	}
	return f, nu.StreamKey
}

// async runs fn in a goroutine; its error arrives on the channel. fn must not use t.
func async(fn func() error) <-chan error {
	c := make(chan error, 1)
	go func() { c <- fn() }()
	return c
}

// stallBound is how long a hook may take while a reconcile is stuck in a MediaMTX call.
// It is no speed target (a hook takes milliseconds): a hook that waited for the reconcile
// would wait until the test releases the call, so any bound far above a hook's cost on a
// loaded machine under -race tells the two apart.
const stallBound = 20 * time.Second

func await(t *testing.T, c <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(stallBound):
		t.Fatalf("%s did not finish within %v while a reconcile was held in a MediaMTX call: it waited for the reconcile", what, stallBound)
		return nil
	}
}

func entered(t *testing.T, c <-chan struct{}, route string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(stallBound):
		t.Fatalf("reconcile never called %s", route)
	}
}

// TestHookDoesNotWaitForReconcile: a reconcile that hangs in a MediaMTX API call (listing,
// or changing another name's alias) does not hold up a hook, which sets its alias at once.
// Before, HandleEvent took the lock Reconcile held for its whole run, so a hook waited
// behind the slowest reconcile; a hook that waited past the hook client's 10 s left a live
// stream without its public path until the next reconcile.
func TestHookDoesNotWaitForReconcile(t *testing.T) {
	for _, tt := range []struct{ name, route string }{
		{"WhileListing", "GET /v3/paths/list"},
		{"WhileRemovingAnotherAlias", "DELETE /v3/config/paths/delete/live/benw"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, carolKey := blockableFixture(t)
			// A stale alias of benw from an earlier run: the reconcile removes it.
			f.api.SetConfig("live/benw", "rtsp://stagedoor-relay:old@127.0.0.1:8554/"+f.keyPath())
			// Only the reconcile's call hangs: the hook lists paths too.
			in, release := f.api.BlockFirst(tt.route)
			rec := async(func() error { return f.m.Reconcile(context.Background()) })
			entered(t, in, tt.route)

			carolPath := "live/" + carolKey
			f.api.SetSource(carolPath, "rtmpConn", "C")
			hook := async(func() error {
				return f.m.HandleEvent(context.Background(), plugin.Event{Kind: plugin.EventAvailable, Path: carolPath, SourceID: "C", SourceType: "rtmpConn"})
			})
			if err := await(t, hook, "the available hook of carol"); err != nil {
				t.Fatalf("hook: %v", err)
			}
			if conf, ok := f.api.Config("live/carol"); !ok || !strings.HasSuffix(conf, "/"+carolPath) {
				t.Errorf("carol's alias = %q, %v while the reconcile is held; want it set by the hook", conf, ok)
			}
			release()
			if err := await(t, rec, "the released reconcile"); err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			if _, ok := f.api.Config("live/benw"); ok {
				t.Error("benw's stale alias survived the reconcile")
			}
			if l, err := f.db.LiveByName(t.Context(), "carol"); err != nil || l.SourceID != "C" {
				t.Errorf("carol live = %+v, %v; want live on C", l, err)
			}
			if _, ok := f.api.Config("live/carol"); !ok {
				t.Error("carol's alias removed by the reconcile")
			}
		})
	}
}

// TestReconcileDoesNotUndoConcurrentHook: a reconcile that read MediaMTX's runtime paths
// before a hook, and applies its plan after it, leaves the name the hook changed alone
// (the hook asks for another reconcile, which sees the new state). The listing of path
// configs is held so that the hook falls between the two listings: the reconcile's view
// of the paths is older than the hook, its view of aliases and live state newer.
func TestReconcileDoesNotUndoConcurrentHook(t *testing.T) {
	const route = "GET /v3/config/paths/list" // after GET /v3/paths/list
	t.Run("Available", func(t *testing.T) {
		f, _ := blockableFixture(t)
		in, release := f.api.Block(route)
		rec := async(func() error { return f.m.Reconcile(context.Background()) })
		entered(t, in, route) // the reconcile saw no stream of benw
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
		hook := async(func() error {
			return f.m.HandleEvent(context.Background(), plugin.Event{Kind: plugin.EventAvailable, Path: f.keyPath(), SourceID: "A", SourceType: "rtmpConn"})
		})
		if err := await(t, hook, "the available hook"); err != nil {
			t.Fatalf("hook: %v", err)
		}
		release()
		if err := await(t, rec, "the released reconcile"); err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		f.wantState(t, "A") // not offline, alias not removed
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		f.wantState(t, "A")
	})
	t.Run("Unavailable", func(t *testing.T) {
		f, _ := blockableFixture(t)
		f.api.SetSource(f.keyPath(), "rtmpConn", "A")
		f.event(t, plugin.EventAvailable, "A")
		in, release := f.api.Block(route)
		rec := async(func() error { return f.m.Reconcile(context.Background()) })
		entered(t, in, route) // the reconcile saw benw live on A
		f.api.SetSource(f.keyPath(), "", "")
		hook := async(func() error {
			return f.m.HandleEvent(context.Background(), plugin.Event{Kind: plugin.EventUnavailable, Path: f.keyPath(), SourceID: "A", SourceType: "rtmpConn"})
		})
		if err := await(t, hook, "the unavailable hook"); err != nil {
			t.Fatalf("hook: %v", err)
		}
		release()
		if err := await(t, rec, "the released reconcile"); err != nil {
			t.Fatalf("reconcile: %v", err)
		}
		f.wantState(t, "") // not live again, no alias to a stream that ended
		if err := f.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		f.wantState(t, "")
	})
}

func TestOperatorKick(t *testing.T) {
	f := newFixture(t)
	var ejected []plugin.Ejection
	f.m.OnEject = func(e plugin.Ejection) { ejected = append(ejected, e) }
	if was, err := f.m.Kick(t.Context(), "benw"); err != nil || was {
		t.Fatalf("Kick of an offline name = %v, %v; want false, nil", was, err)
	}
	f.api.SetSource(f.keyPath(), "srtConn", "K")
	f.event(t, plugin.EventAvailable, "K")
	was, err := f.m.Kick(t.Context(), "benw")
	if err != nil || !was {
		t.Fatalf("Kick of a live name = %v, %v; want true, nil", was, err)
	}
	if got := f.api.Kicks(); len(got) != 1 || got[0] != "srtConn/K" {
		t.Errorf("kicks = %v, want the key path's publisher [srtConn/K]", got)
	}
	if len(ejected) != 1 || ejected[0].Reason != plugin.ReasonOperatorKick || ejected[0].User != "benw" {
		t.Errorf("OnEject got %+v", ejected)
	}
}

// TestFrontDisconnectsWhenKickFails: the kick of an RTMP publisher on a public name (the
// RTMP front's renamed publish) closes it at the front first, with the name and the key's
// fingerprint, and counts as done although MediaMTX's kick API hangs.
func TestFrontDisconnectsWhenKickFails(t *testing.T) {
	for _, tt := range []struct {
		name   string
		closed int // what the front closed
		ejects int // OnEject calls expected
	}{{"FrontHeldIt", 1, 1}, {"FrontDidNot", 0, 0}} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			d := stagedoor.KeyDigest(f.key)
			f.api.SetSource("live/benw", "rtmpConn", "Q")
			ev := plugin.Event{Kind: plugin.EventAvailable, Path: "live/benw", SourceID: "Q", KeyDigest: hexDigest(d)}
			if err := f.m.HandleEvent(t.Context(), ev); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var calls []string
			f.m.Disconnect = func(name, keyFP string, _ time.Time) int {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, name+"/"+keyFP)
				return tt.closed
			}
			var ejects atomic.Int32
			f.m.OnEject = func(plugin.Ejection) { ejects.Add(1) }
			_, release := f.api.Block("POST /v3/rtmp/conns/kick/Q")
			defer release()
			if err := f.db.RevokeKey(t.Context(), "benw", d.Fingerprint(), stagedoor.Revocation{}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			_ = f.m.Reconcile(ctx)
			mu.Lock()
			defer mu.Unlock()
			if want := []string{"benw/" + d.Fingerprint()}; !slices.Equal(calls, want) {
				t.Errorf("front disconnects = %q, want %q", calls, want)
			}
			if got := int(ejects.Load()); got != tt.ejects {
				t.Errorf("OnEject called %d times, want %d", got, tt.ejects)
			}
		})
	}
}
