package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testdb"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/store"
	"github.com/stagedoor/stagedoor/web"
)

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
	u := testdb.NewUsers(t)
	f := struct {
		db        *store.DB
		activeKey string
	}{u.DB, u.ActiveKey}
	since := time.Date(2026, 3, 1, 20, 15, 0, 0, time.UTC)
	f.db.Now = func() time.Time { return since }
	h, err := web.NewRouter(testutil.Discard(), f.db, web.Options{HLSBase: "http://h:8888"})
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	srv := httptest.NewServer(h)
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
		if err := f.db.SetLive(t.Context(), stagedoor.LiveState{NodeID: "local", Kind: stagedoor.LiveDirect, Name: o.UserName, UserID: o.UserID, KeyID: o.KeyID, SourceID: "src-1", SourceType: "rtmpConn"}); err != nil {
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
