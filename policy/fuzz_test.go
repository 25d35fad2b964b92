package policy_test

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/store"
)

// FuzzDecodeAndDecide feeds arbitrary bodies through DecodeRequest and Decide against a
// real store. Invariants: no panic; Decide is deterministic; it allows exactly when the
// truth table of the default policy says so, and an allow is always on an allowlisted
// path shape (and, for publish, with a key that verifies in the store).
func FuzzDecodeAndDecide(f *testing.F) {
	fx := newFixture(f)
	key := "live/" + fx.ActiveKey
	withCreds := func(body, user, password, ip string) string {
		body = strings.Replace(body, `"user":""`, `"user":"`+user+`"`, 1)
		body = strings.Replace(body, `"password":""`, `"password":"`+password+`"`, 1)
		return strings.Replace(body, `"ip":"127.0.0.1"`, `"ip":"`+ip+`"`, 1)
	}
	for _, s := range []string{
		testutil.MediaMTXAuthBody("publish", key, "rtmp"),
		testutil.MediaMTXAuthBody("publish", key, "srt"),
		testutil.MediaMTXAuthBody("publish", "live/"+fx.BannedKey, "rtmp"),
		testutil.MediaMTXAuthBody("publish", "live/"+stagedoor.NewKey(), "rtmp"),
		testutil.MediaMTXAuthBody("publish", "live/benw", "rtmp"),
		testutil.MediaMTXAuthBody("read", key, "hls"),
		testutil.MediaMTXAuthBody("read", "live/benw", "hls"),
		testutil.MediaMTXAuthBody("read", "live/benw", "rtsp"),
		withCreds(testutil.MediaMTXAuthBody("read", key, "rtsp"), relaySecret.User, relaySecret.Password, "127.0.0.1"),
		withCreds(testutil.MediaMTXAuthBody("read", key, "rtsp"), relaySecret.User, relaySecret.Password, "10.0.0.5"),
		withCreds(testutil.MediaMTXAuthBody("api", "", ""), adminSecret.User, adminSecret.Password, "127.0.0.1"),
		withCreds(testutil.MediaMTXAuthBody("playback", key, ""), adminSecret.User, adminSecret.Password, "::1"),
		withCreds(testutil.MediaMTXAuthBody("metrics", "", ""), adminSecret.User, adminSecret.Password, "10.0.0.5"),
		// threats.md T03.
		`{"action":"publish","path":"` + key,
		`{"action":"read"}garbage`,
		`{"action":"read","ACTION":"publish","path":"` + key + `","protocol":"rtmp"}`,
		`{"action":"publish","path":"live/benw","path":"` + key + `","protocol":"rtmp"}`,
		`{"action":1,"path":"` + key + `"}`,
		`{"action":null,"path":null,"protocol":null,"id":null}`,
		"{\"action\":\"publish\",\"path\":\"live/\xff\",\"protocol\":\"rtmp\"}",
		`{"action":"publish","path":"` + key + `\u0000","protocol":"rtmp"}`,
		`{"action":"publish","path":"` + key + `","protocol":"rtmp","brandNew":[1,{"x":null}]}`,
		`[{"action":"publish"}]`,
		strings.Repeat("[", 1000),
		// threats.md T04.
		testutil.MediaMTXAuthBody("read", "live/../benw", "hls"),
		testutil.MediaMTXAuthBody("publish", "live//"+fx.ActiveKey, "rtmp"),
		testutil.MediaMTXAuthBody("publish", "/"+key, "rtmp"),
		testutil.MediaMTXAuthBody("publish", key+"/", "rtmp"),
		testutil.MediaMTXAuthBody("read", "LIVE/BENW", "hls"),
		testutil.MediaMTXAuthBody("read", "live/ｂｅｎｗ", "hls"),
		testutil.MediaMTXAuthBody("read", "live/benw\u200b", "hls"),
		testutil.MediaMTXAuthBody("read", "live/index.m3u8", "hls"),
		testutil.MediaMTXAuthBody("publish", "live/sk_"+strings.Repeat("a", 42), "rtmp"),
		testutil.MediaMTXAuthBody("publish", "live/sk_"+strings.Repeat("a", 44), "rtmp"),
	} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := authserver.DecodeRequest(body)
		if err != nil {
			if r != (authserver.Request{}) {
				t.Fatalf("DecodeRequest error %v with a non-zero request", err)
			}
			return
		}
		d := decide(t.Context(), r.Attempt(), fx.DB, testPolicy)
		if again := decide(t.Context(), r.Attempt(), fx.DB, testPolicy); again != d {
			t.Fatalf("Decide not deterministic: %+v then %+v", d, again)
		}
		want := oracle(t, fx.DB, fx.ActiveKey, r)
		if d.Allow && !want {
			t.Fatalf("fail-open: allowed %+v for %+v", d, r)
		}
		if !d.Allow && want {
			t.Fatalf("denied %+v for %+v, the truth table allows it", d, r)
		}
		switch {
		case d.Allow && authserver.Status(d) != http.StatusNoContent:
			t.Fatalf("allow with status %d", authserver.Status(d))
		case !d.Allow && authserver.Status(d) != http.StatusUnauthorized:
			t.Fatalf("policy deny with status %d, want 401", authserver.Status(d))
		}
		if d.Allow && r.Action != "playback" && r.Action != "api" && r.Action != "metrics" && r.Action != "pprof" {
			if kind, _ := stagedoor.ParsePath(r.Path); kind == stagedoor.PathOther {
				t.Fatalf("allowed %s on a path outside the two shapes", r.Action)
			}
		}
	})
}

// oracle is wantAllow for an arbitrary decoded request: it classifies the request's
// path and credentials into the matrix dimensions, looking the key up in the store.
func oracle(t *testing.T, db *store.DB, activeKey string, r authserver.Request) bool {
	t.Helper()
	kind, rest := stagedoor.ParsePath(r.Path)
	path := pathGarbage
	switch {
	case r.Path == "":
		path = pathEmpty
	case kind == stagedoor.PathPublic && rest == "benw":
		path = pathOwnChannel // benw plays alice's part: his channel, no streams
	case kind == stagedoor.PathPublic:
		path = pathNobodys
	case kind == stagedoor.PathKey:
		o, err := db.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(rest))
		switch {
		case errors.Is(err, stagedoor.ErrNotFound):
			path = pathUnknownKey
		case err != nil:
			t.Fatalf("UserByKeyDigest: %v", err)
		case o.Active:
			path = pathActiveKey
		default:
			path = pathBannedKey
		}
	}
	ip := net.ParseIP(r.IP)
	loopback := ip != nil && ip.IsLoopback()
	creds := credsNone
	switch {
	case r.User == relaySecret.User && r.Password == relaySecret.Password && loopback:
		creds = credsRelayLoopback
	case r.User == adminSecret.User && r.Password == adminSecret.Password && loopback:
		creds = credsAdminLoopback
	}
	// A key presented on a public name: benw's own (alice's part) or anything else.
	a := r.Attempt()
	key, presented := "", false
	if q, err := url.ParseQuery(a.Query); err == nil && q.Get("key") != "" {
		key, presented = q.Get("key"), true
	} else if stagedoor.IsKey(a.Password) {
		key, presented = a.Password, true
	} else if stagedoor.IsKey(a.Token) {
		key, presented = a.Token, true
	}
	if presented && kind == stagedoor.PathPublic && r.Action == "publish" {
		creds = credsWrongKeyQuery
		if key == activeKey && (a.User == "" || a.User == rest) {
			creds = credsOwnKeyQuery
		}
	}
	return wantAllow(r.Action, r.Protocol, path, creds)
}
