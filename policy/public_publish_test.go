package policy_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testdb"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/policy"
	"github.com/stagedoor/stagedoor/store"
)

const (
	alicePassword = "correct horse battery staple"
	bobPassword   = "bob's own password"
)

// publishFixture is a real store with users alice and bob, each with a cost-10
// password, and streams concert (alice), lobbycam (alice, no auth) and bobcam (bob).
type publishFixture struct {
	db        *store.DB
	aliceKey  string
	aliceHash string
	bobHash   string
}

// publishHashes are alice's and bob's cost-10 hashes, made once for all tests (each takes
// about 750 ms under -race), concurrently.
var publishHashes = sync.OnceValues(func() ([2]string, error) {
	var (
		wg     sync.WaitGroup
		hashes [2]string
		errs   [2]error
	)
	for i, pw := range []string{alicePassword, bobPassword} {
		wg.Go(func() { hashes[i], errs[i] = stagedoor.HashPassword(pw, stagedoor.DefaultCost) })
	}
	wg.Wait()
	return hashes, errors.Join(errs[:]...)
})

func newPublishFixture(t *testing.T) publishFixture {
	t.Helper()
	ctx := t.Context()
	db := testdb.MustOpen(t)
	alice, err := db.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatalf("CreateUser(alice): %v", err)
	}
	if _, err := db.CreateUser(ctx, "bob"); err != nil {
		t.Fatalf("CreateUser(bob): %v", err)
	}
	hashes, err := publishHashes()
	if err != nil {
		t.Fatalf("HashPassword: %v", err)
	}
	for i, user := range []string{"alice", "bob"} {
		if err := db.SetPasswordHash(ctx, user, hashes[i]); err != nil {
			t.Fatalf("SetPasswordHash(%s): %v", user, err)
		}
	}
	for _, s := range []struct {
		name, owner string
		auth        bool
	}{{"concert", "alice", true}, {"lobbycam", "alice", false}, {"bobcam", "bob", true}} {
		if _, err := db.CreateStream(ctx, s.name, s.owner, s.auth); err != nil {
			t.Fatalf("CreateStream(%s): %v", s.name, err)
		}
	}
	return publishFixture{db: db, aliceKey: alice.StreamKey, aliceHash: hashes[0], bobHash: hashes[1]}
}

func publish(protocol, path, user, password string) policy.Attempt {
	return policy.Attempt{IP: "203.0.113.7", Action: policy.ActionPublish, Protocol: protocol,
		Path: path, User: user, Password: password}
}

// changeLastChar returns a hash with its last character replaced.
func changeLastChar(h string) string {
	c := "A"
	if strings.HasSuffix(h, "A") {
		c = "B"
	}
	return h[:len(h)-1] + c
}

func TestDecidePublicPublish(t *testing.T) {
	t.Parallel()
	f := newPublishFixture(t)
	pw := policy.NewPasswords()
	pol := policy.Policy{Passwords: pw}
	keyQuery := func(r policy.Attempt, key string) policy.Attempt {
		r.Query = "key=" + key
		return r
	}
	for _, tt := range []struct {
		name     string
		req      policy.Attempt
		allow    bool
		user     string // Decision.User when allowed
		noBcrypt bool
	}{
		{"AlicePlaintextOnConcertAllowed", publish("rtmp", "live/concert", "alice", alicePassword), true, "alice", false},
		{"AlicePlaintextAgainCached", publish("rtmp", "live/concert", "alice", alicePassword), true, "alice", true},
		{"AliceHashOnConcertAllowed", publish("rtmp", "live/concert", "alice", f.aliceHash), true, "alice", true},
		{"AliceHashOverSRTAllowed", publish("srt", "live/concert", "alice", f.aliceHash), true, "alice", true},
		{"AliceHashOverRTSPAllowed", publish("rtsp", "live/concert", "alice", f.aliceHash), true, "alice", true},
		{"AliceHashOverWHIPAllowed", publish("webrtc", "live/concert", "alice", f.aliceHash), true, "alice", true},
		{"BobHashOnBobcamAllowed", publish("rtmp", "live/bobcam", "bob", f.bobHash), true, "bob", true},
		{"WrongPasswordDenied", publish("rtmp", "live/concert", "alice", "correct horse battery stapler"), false, "", false},
		{"HashOneCharChangedDenied", publish("rtmp", "live/concert", "alice", changeLastChar(f.aliceHash)), false, "", true},
		{"Hash2yVariantDenied", publish("rtmp", "live/concert", "alice", "$2y$"+f.aliceHash[4:]), false, "", true},
		{"MissingCredentialsDenied", publish("rtmp", "live/concert", "", ""), false, "", true},
		{"MissingPasswordDenied", publish("rtmp", "live/concert", "alice", ""), false, "", true},
		{"PasswordWithoutUserDenied", publish("rtmp", "live/concert", "", f.aliceHash), false, "", true},
		{"BobCredentialsOnConcertDenied", publish("rtmp", "live/concert", "bob", bobPassword), false, "", true},
		{"BobHashOnConcertDenied", publish("rtmp", "live/concert", "bob", f.bobHash), false, "", true},
		{"AliceHashAsBobDenied", publish("rtmp", "live/concert", "bob", f.aliceHash), false, "", true},
		{"AliceOnBobcamDenied", publish("rtmp", "live/bobcam", "alice", f.aliceHash), false, "", true},
		{"UnknownStreamDenied", publish("rtmp", "live/nosuch", "alice", f.aliceHash), false, "", true},
		// A user's own channel live/<user> is not a stream: only its keys publish there.
		{"AlicePasswordOnOwnChannelDenied", publish("rtmp", "live/alice", "alice", f.aliceHash), false, "", true},
		{"AliceKeyOnOwnChannelAllowed", keyQuery(publish("rtmp", "live/alice", "", ""), f.aliceKey), true, "alice", true},
		{"AliceKeyAsPasswordOnOwnChannelAllowed", publish("srt", "live/alice", "alice", f.aliceKey), true, "alice", true},
		// A key must belong to the user of the name it is presented on (decidePublic).
		{"AliceKeyOnConcertDenied", keyQuery(publish("rtmp", "live/concert", "", ""), f.aliceKey), false, "", true},
		{"LobbycamNoCredentialsAllowed", publish("rtmp", "live/lobbycam", "", ""), true, "alice", true},
		{"LobbycamRTSPAnonymousAllowed", publish("rtsp", "live/lobbycam", "", ""), true, "alice", true},
		{"LobbycamSRTAnonymousAllowed", publish("srt", "live/lobbycam", "", ""), true, "alice", true},
		{"HLSPublishDenied", publish("hls", "live/concert", "alice", f.aliceHash), false, "", true},
		{"HLSPublishToNoAuthDenied", publish("hls", "live/lobbycam", "", ""), false, "", true},
		{"MoQPublishDenied", publish("moq", "live/lobbycam", "", ""), false, "", true},
		{"LookalikeStreamNameDenied", publish("rtmp", "live/_concert", "alice", f.aliceHash), false, "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			runs := pw.BcryptRuns()
			d := decide(t.Context(), tt.req, f.db, pol)
			if d.Allow != tt.allow {
				t.Fatalf("allow = %v (%s), want %v", d.Allow, d.Reason, tt.allow)
			}
			if want := map[bool]int{true: http.StatusNoContent, false: http.StatusUnauthorized}[tt.allow]; authserver.Status(d) != want {
				t.Errorf("status = %d (%s), want %d", authserver.Status(d), d.Reason, want)
			}
			if tt.allow && d.User != tt.user {
				t.Errorf("user = %q, want %q", d.User, tt.user)
			}
			if got := pw.BcryptRuns() - runs; tt.noBcrypt && got != 0 {
				t.Errorf("bcrypt runs = %d, want 0", got)
			}
			for _, secret := range []string{f.aliceHash, f.bobHash, alicePassword, f.aliceKey} {
				if strings.Contains(d.Reason, secret) {
					t.Errorf("reason %q carries a credential", d.Reason)
				}
			}
		})
	}
	if got := pw.BcryptRuns(); got != 2 {
		t.Errorf("total bcrypt runs = %d, want 2 (one plaintext success, one wrong password)", got)
	}
}

func TestDecidePublicPublishBannedUser(t *testing.T) {
	t.Parallel()
	f := newPublishFixture(t)
	if err := f.db.SetActive(t.Context(), "alice", false); err != nil {
		t.Fatal(err)
	}
	pw := policy.NewPasswords()
	pol := policy.Policy{Passwords: pw}
	keyReq := publish("rtmp", "live/alice", "", "")
	keyReq.Query = "key=" + f.aliceKey
	for _, tt := range []struct {
		name string
		req  policy.Attempt
	}{
		{"PlaintextOnConcertDenied", publish("rtmp", "live/concert", "alice", alicePassword)},
		{"HashOnConcertDenied", publish("rtmp", "live/concert", "alice", f.aliceHash)},
		{"NoAuthStreamDenied", publish("rtmp", "live/lobbycam", "", "")},
		{"NoAuthStreamOverRTSPDenied", publish("rtsp", "live/lobbycam", "", "")},
		{"KeyOnOwnChannelDenied", keyReq},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(t.Context(), tt.req, f.db, pol)
			if d.Allow || authserver.Status(d) != http.StatusUnauthorized {
				t.Errorf("Decide = allow %v status %d (%s), want 401", d.Allow, authserver.Status(d), d.Reason)
			}
		})
	}
	if got := pw.BcryptRuns(); got != 0 {
		t.Errorf("bcrypt runs for a banned user = %d, want 0", got)
	}
	// Bob is unaffected.
	if d := decide(t.Context(), publish("rtmp", "live/bobcam", "bob", f.bobHash), f.db, pol); !d.Allow {
		t.Errorf("bob on bobcam while alice is banned: %+v, want allowed", d)
	}
}

func TestDecidePublicPublishWithoutPasswords(t *testing.T) {
	t.Parallel()
	f := newPublishFixture(t)
	keyReq := publish("rtmp", "live/alice", "", "")
	keyReq.Query = "key=" + f.aliceKey
	for _, tt := range []struct {
		name  string
		req   policy.Attempt
		allow bool
	}{
		{"PlaintextDenied", publish("rtmp", "live/concert", "alice", alicePassword), false},
		{"HashDenied", publish("rtmp", "live/concert", "alice", f.aliceHash), false},
		{"NoAuthStreamAllowed", publish("rtmp", "live/lobbycam", "", ""), true},
		{"KeyAllowed", keyReq, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(t.Context(), tt.req, f.db, policy.Policy{})
			want := map[bool]int{true: http.StatusNoContent, false: http.StatusUnauthorized}[tt.allow]
			if d.Allow != tt.allow || authserver.Status(d) != want {
				t.Errorf("Decide = allow %v status %d (%s), want allow %v status %d", d.Allow, authserver.Status(d), d.Reason, tt.allow, want)
			}
		})
	}
}

// TestDecidePublicPublishOverBudget: with the bcrypt budget spent, a plaintext
// password gets a fast 503 (MediaMTX denies on any non-2xx) while the hash, the key
// and no-auth streams, which need no bcrypt, still get in.
func TestDecidePublicPublishOverBudget(t *testing.T) {
	t.Parallel()
	f := newPublishFixture(t)
	pw := policy.NewPasswords()
	frozen := time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)
	pw.Now = func() time.Time { return frozen }
	pw.RatePerSecond = 0 // an empty bucket that never refills
	pol := policy.Policy{Passwords: pw}
	keyReq := publish("rtmp", "live/alice", "", "")
	keyReq.Query = "key=" + f.aliceKey
	for _, tt := range []struct {
		name   string
		req    policy.Attempt
		status int
	}{
		{"PlaintextGets503", publish("rtmp", "live/concert", "alice", alicePassword), http.StatusServiceUnavailable},
		{"WrongPlaintextGets503", publish("rtmp", "live/concert", "alice", "guess"), http.StatusServiceUnavailable},
		{"HashAllowed", publish("rtmp", "live/concert", "alice", f.aliceHash), http.StatusNoContent},
		{"KeyAllowed", keyReq, http.StatusNoContent},
		{"NoAuthStreamAllowed", publish("rtmp", "live/lobbycam", "", ""), http.StatusNoContent},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(t.Context(), tt.req, f.db, pol)
			if authserver.Status(d) != tt.status || d.Allow != (tt.status == http.StatusNoContent) {
				t.Errorf("Decide = allow %v status %d (%s), want status %d", d.Allow, authserver.Status(d), d.Reason, tt.status)
			}
		})
	}
	if got := pw.BcryptRuns(); got != 0 {
		t.Errorf("bcrypt runs over budget = %d, want 0", got)
	}
}
