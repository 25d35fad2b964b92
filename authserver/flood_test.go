package authserver_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/policy"
)

// TestWrongKeyFloodRunsNoBcrypt is T16: thousands of wrong stream keys, as the path
// (live/sk_…) and on public names (?key=, as the password, as the token), POSTed through
// the real handler to a Policy with a real password limiter, are all denied with 401
// and run bcrypt zero times. benw has a password and a password stream, so a key that
// wrongly went to password verification would be counted. A last wrong plaintext
// password is the positive control: it must run bcrypt once.
func TestWrongKeyFloodRunsNoBcrypt(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	hash, err := stagedoor.HashPassword("correct horse battery", stagedoor.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.DB.SetPasswordHash(ctx, "benw", hash); err != nil {
		t.Fatal(err)
	}
	if _, err := f.DB.CreateStream(ctx, "concert", "benw", true); err != nil {
		t.Fatal(err)
	}
	pw := policy.NewPasswords()
	pol := testPolicy
	pol.Passwords = pw
	srv, _ := authServer(t, policy.NewCachedCredentials(f.DB), pol, authserver.Options{})

	body := func(ip, path, protocol, user, password, token, query string) string {
		b, err := json.Marshal(map[string]any{"user": user, "password": password, "token": token, "ip": ip,
			"action": "publish", "path": path, "protocol": protocol, "id": nil, "query": query})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// Each form, from one address (T16) and from addresses that never failed before.
	forms := []struct {
		name string
		body func(ip, key string) string
	}{
		{"KeyPath", func(ip, k string) string { return body(ip, "live/"+k, "rtmp", "", "", "", "") }},
		{"KeyPathWithUserAndPassword", func(ip, k string) string { return body(ip, "live/"+k, "rtsp", "benw", k, "", "") }},
		{"QueryKeyOnChannel", func(ip, k string) string { return body(ip, "live/benw", "rtmp", "", "", "", "key="+url.QueryEscape(k)) }},
		{"QueryKeyOnPasswordStream", func(ip, k string) string {
			return body(ip, "live/concert", "rtmp", "benw", "", "", "key="+url.QueryEscape(k))
		}},
		{"KeyAsPasswordOnPasswordStream", func(ip, k string) string { return body(ip, "live/concert", "srt", "benw", k, "", "") }},
		{"KeyAsPasswordOnChannel", func(ip, k string) string { return body(ip, "live/benw", "rtsp", "benw", k, "", "") }},
		{"KeyAsTokenOnPasswordStream", func(ip, k string) string { return body(ip, "live/concert", "webrtc", "", "", k, "") }},
		{"OtherUsersKeyOnPasswordStream", func(ip, _ string) string { return body(ip, "live/concert", "srt", "benw", f.BannedKey, "", "") }},
		{"MalformedQueryKey", func(ip, k string) string { return body(ip, "live/concert", "rtmp", "benw", "", "", "key="+k[:20]) }},
	}
	const perForm = 350
	n := 0
	for _, form := range forms {
		for i := range perForm {
			ip := "198.51.100.7"
			if i%2 == 1 {
				ip = fmt.Sprintf("10.8.%d.%d", i>>8, i&255)
			}
			rep := postJSON(t, srv, form.body(ip, stagedoor.NewKey()))
			n++
			if rep.status != http.StatusUnauthorized {
				t.Fatalf("%s #%d: status %d, want 401", form.name, i, rep.status)
			}
		}
	}
	if got := pw.BcryptRuns(); got != 0 {
		t.Errorf("BcryptRuns after %d wrong keys = %d, want 0", n, got)
	}
	// Positive control: the same limiter counts a plaintext guess.
	wantDenied(t, postJSON(t, srv, body("203.0.113.1", "live/concert", "rtmp", "benw", "not the password", "", "")), http.StatusUnauthorized)
	if got := pw.BcryptRuns(); got != 1 {
		t.Errorf("BcryptRuns after one wrong plaintext password = %d, want 1", got)
	}
}
