package authserver_test

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/store"
)

// mediaMTXID is a MediaMTX connection id, as sent in the "id" field.
const mediaMTXID = "6c4d5f3e-2b1a-4c9d-8e7f-0a1b2c3d4e5f"

// mediaMTXBody is the exact shape MediaMTX v1.21.0 POSTs (internal/auth/manager.go and
// the TestAuthHTTP fixture in manager_test.go).
func mediaMTXBody(action, path, protocol string) string {
	return `{"user":"","password":"","token":"","ip":"127.0.0.1","action":"` + action +
		`","path":"` + path + `","protocol":"` + protocol + `","id":"` + mediaMTXID +
		`","query":"","userAgent":"FMLE/3.0 (compatible; Lavf59.27.100)"}`
}

func TestDecodeRequestMediaMTXBody(t *testing.T) {
	key := stagedoor.NewKey()
	got, err := authserver.DecodeRequest([]byte(mediaMTXBody("publish", "live/"+key, "rtmp")))
	if err != nil {
		t.Fatalf("DecodeRequest: %v", err)
	}
	id := mediaMTXID
	want := authserver.Request{
		IP: "127.0.0.1", Action: "publish", Path: "live/" + key, Protocol: "rtmp",
		ID: &id, UserAgent: "FMLE/3.0 (compatible; Lavf59.27.100)",
	}
	if got.ID == nil || *got.ID != *want.ID {
		t.Fatalf("ID = %v, want %q", got.ID, *want.ID)
	}
	got.ID, want.ID = nil, nil
	if got != want {
		t.Errorf("request = %+v, want %+v", got, want)
	}
}

func TestDecodeRequest(t *testing.T) {
	for _, tt := range []struct {
		name   string
		body   string
		wantOK bool
		check  func(authserver.Request) bool // for accepted bodies
	}{
		{"MediaMTXBodyAccepted", mediaMTXBody("read", "live/benw", "hls"), true,
			func(r authserver.Request) bool {
				return r.Action == "read" && r.Path == "live/benw" && r.Protocol == "hls"
			}},
		{"UnknownFieldsAccepted", `{"action":"read","path":"live/benw","protocol":"hls","newField":{"a":[1,2]},"other":true}`, true,
			func(r authserver.Request) bool { return r.Action == "read" && r.Path == "live/benw" }},
		{"DuplicateUnknownFieldAccepted", `{"action":"read","x":1,"x":2}`, true,
			func(r authserver.Request) bool { return r.Action == "read" }},
		{"NullIDAccepted", `{"action":"read","id":null}`, true,
			func(r authserver.Request) bool { return r.ID == nil }},
		{"NullStringLeavesEmpty", `{"action":null,"path":null}`, true,
			func(r authserver.Request) bool { return r.Action == "" && r.Path == "" }},
		{"EscapedNULKept", `{"action":"read","path":"live/benw\u0000"}`, true,
			func(r authserver.Request) bool { return r.Path == "live/benw\x00" }},
		{"EscapedKeyNameAccepted", `{"p\u0061th":"live/benw"}`, true,
			func(r authserver.Request) bool { return r.Path == "live/benw" }},
		{"NestedSecurityNameAccepted", `{"action":"read","extra":{"action":"publish","ACTION":"x"}}`, true,
			func(r authserver.Request) bool { return r.Action == "read" }},
		{"TrailingWhitespaceAccepted", `{"action":"read"}` + " \n\t", true,
			func(r authserver.Request) bool { return r.Action == "read" }},
		{"EmptyObjectAccepted", `{}`, true,
			func(r authserver.Request) bool { return r == authserver.Request{} }},

		{"EmptyBodyRejected", ``, false, nil},
		{"WhitespaceBodyRejected", `   `, false, nil},
		{"TruncatedRejected", `{"action":"publish","path":"live/`, false, nil},
		{"TruncatedAfterObjectKeyRejected", `{"action"`, false, nil},
		{"TrailingGarbageRejected", `{"action":"read"}garbage`, false, nil},
		{"SecondObjectRejected", `{"action":"read"}{"action":"publish"}`, false, nil},
		{"CaseVariantActionRejected", `{"action":"read","ACTION":"publish","path":"live/benw","protocol":"hls"}`, false, nil},
		{"CaseVariantAloneRejected", `{"Action":"publish"}`, false, nil},
		{"CaseVariantUserAgentRejected", `{"useragent":"x"}`, false, nil},
		{"UnicodeFoldUserRejected", `{"u\u017fer":"admin"}`, false, nil},            // ſ folds to s
		{"UnicodeFoldTokenRejected", `{"to\u212aen":"x"}`, false, nil},              // Kelvin sign folds to k
		{"UnicodeFoldLiteralUserRejected", "{\"u\u017fer\":\"admin\"}", false, nil}, // raw UTF-8, not an escape
		{"DuplicatePathRejected", `{"action":"read","path":"live/benw","path":"live/sk_x"}`, false, nil},
		{"DuplicateEscapedPathRejected", `{"path":"live/benw","p\u0061th":"live/x"}`, false, nil},
		{"DuplicatePasswordRejected", `{"password":"a","password":"b"}`, false, nil},
		{"NumberActionRejected", `{"action":1}`, false, nil},
		{"BoolPathRejected", `{"path":true}`, false, nil},
		{"ObjectUserRejected", `{"user":{"a":1}}`, false, nil},
		{"ArrayProtocolRejected", `{"protocol":["rtmp"]}`, false, nil},
		{"NumberIDRejected", `{"id":5}`, false, nil},
		{"InvalidUTF8Rejected", "{\"action\":\"read\",\"path\":\"live/\xff\xfe\"}", false, nil},
		{"InvalidUTF8InKeyRejected", "{\"\xc3\":1}", false, nil},
		{"TopLevelArrayRejected", `[{"action":"publish"}]`, false, nil},
		{"TopLevelStringRejected", `"publish"`, false, nil},
		{"TopLevelNullRejected", `null`, false, nil},
		{"TopLevelNumberRejected", `1`, false, nil},
		{"NestedBracketsRejected", strings.Repeat("[", 10000), false, nil},
		{"SingleQuotesRejected", `{'action':'read'}`, false, nil},
		{"UnquotedKeyRejected", `{action:"read"}`, false, nil},
		{"TrailingCommaRejected", `{"action":"read",}`, false, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := authserver.DecodeRequest([]byte(tt.body))
			if gotOK := err == nil; gotOK != tt.wantOK {
				t.Fatalf("DecodeRequest(%.80q) error = %v, want ok=%v", tt.body, err, tt.wantOK)
			}
			if !tt.wantOK {
				if r != (authserver.Request{}) {
					t.Errorf("rejected body returned a non-zero request %+v", r)
				}
				return
			}
			if !tt.check(r) {
				t.Errorf("DecodeRequest(%.80q) = %+v, not what the body says", tt.body, r)
			}
		})
	}
}

// FuzzDecodeAndDecide feeds arbitrary bodies through DecodeRequest and Decide against a
// real store. Invariants: no panic; Decide is deterministic; it allows exactly when the
// truth table of the default policy says so, and an allow is always on an allowlisted
// path shape (and, for publish, with a key that verifies in the store).
func FuzzDecodeAndDecide(f *testing.F) {
	fx := newFixture(f)
	key := "live/" + fx.activeKey
	withCreds := func(body, user, password, ip string) string {
		body = strings.Replace(body, `"user":""`, `"user":"`+user+`"`, 1)
		body = strings.Replace(body, `"password":""`, `"password":"`+password+`"`, 1)
		return strings.Replace(body, `"ip":"127.0.0.1"`, `"ip":"`+ip+`"`, 1)
	}
	for _, s := range []string{
		mediaMTXBody("publish", key, "rtmp"),
		mediaMTXBody("publish", key, "srt"),
		mediaMTXBody("publish", "live/"+fx.bannedKey, "rtmp"),
		mediaMTXBody("publish", "live/"+stagedoor.NewKey(), "rtmp"),
		mediaMTXBody("publish", "live/benw", "rtmp"),
		mediaMTXBody("read", key, "hls"),
		mediaMTXBody("read", "live/benw", "hls"),
		mediaMTXBody("read", "live/benw", "rtsp"),
		withCreds(mediaMTXBody("read", key, "rtsp"), relaySecret.User, relaySecret.Password, "127.0.0.1"),
		withCreds(mediaMTXBody("read", key, "rtsp"), relaySecret.User, relaySecret.Password, "10.0.0.5"),
		withCreds(mediaMTXBody("api", "", ""), adminSecret.User, adminSecret.Password, "127.0.0.1"),
		withCreds(mediaMTXBody("playback", key, ""), adminSecret.User, adminSecret.Password, "::1"),
		withCreds(mediaMTXBody("metrics", "", ""), adminSecret.User, adminSecret.Password, "10.0.0.5"),
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
		mediaMTXBody("read", "live/../benw", "hls"),
		mediaMTXBody("publish", "live//"+fx.activeKey, "rtmp"),
		mediaMTXBody("publish", "/"+key, "rtmp"),
		mediaMTXBody("publish", key+"/", "rtmp"),
		mediaMTXBody("read", "LIVE/BENW", "hls"),
		mediaMTXBody("read", "live/ｂｅｎｗ", "hls"),
		mediaMTXBody("read", "live/benw\u200b", "hls"),
		mediaMTXBody("read", "live/index.m3u8", "hls"),
		mediaMTXBody("publish", "live/sk_"+strings.Repeat("a", 42), "rtmp"),
		mediaMTXBody("publish", "live/sk_"+strings.Repeat("a", 44), "rtmp"),
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
		d := authserver.Decide(t.Context(), r, fx.db, testPolicy)
		if again := authserver.Decide(t.Context(), r, fx.db, testPolicy); again != d {
			t.Fatalf("Decide not deterministic: %+v then %+v", d, again)
		}
		want := oracle(t, fx.db, r)
		if d.Allow && !want {
			t.Fatalf("fail-open: allowed %+v for %+v", d, r)
		}
		if !d.Allow && want {
			t.Fatalf("denied %+v for %+v, the truth table allows it", d, r)
		}
		switch {
		case d.Allow && d.Status != http.StatusOK:
			t.Fatalf("allow with status %d", d.Status)
		case !d.Allow && d.Status != http.StatusUnauthorized:
			t.Fatalf("policy deny with status %d, want 401", d.Status)
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
func oracle(t *testing.T, db *store.DB, r authserver.Request) bool {
	t.Helper()
	kind, rest := stagedoor.ParsePath(r.Path)
	path := pathGarbage
	switch {
	case r.Path == "":
		path = pathEmpty
	case kind == stagedoor.PathPublic:
		path = pathPublic
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
	return wantAllow(r.Action, r.Protocol, path, creds)
}
