package policy_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/policy"
)

// TestDecideIngestRenames: the front's decision allows what Decide allows for the same
// RTMP publish and names the public name and the credential that admitted it.
func TestDecideIngestRenames(t *testing.T) {
	f := newFixture(t)
	pol := &policy.Policy{Credentials: f.DB, Passwords: policy.NewPasswords()}
	ctx := context.Background()
	for _, tt := range []struct {
		name     string
		a        policy.Attempt
		wantName string // "" for a refusal
		wantKey  bool
	}{
		{"KeyPath", req("publish", "rtmp", "live/"+f.ActiveKey), "benw", true},
		{"KeyInQuery", with(req("publish", "rtmp", "live/benw"), func(a *policy.Attempt) { a.Query = "key=" + f.ActiveKey }), "benw", true},
		{"KeyAsPass", with(req("publish", "rtmp", "live/benw"), func(a *policy.Attempt) { a.User, a.Password = "benw", f.ActiveKey }), "benw", true},
		{"UnknownKey", req("publish", "rtmp", "live/"+stagedoor.NewKey()), "", false},
		{"BannedKey", req("publish", "rtmp", "live/"+f.BannedKey), "", false},
		{"OtherUsersName", with(req("publish", "rtmp", "live/mallory"), func(a *policy.Attempt) { a.Query = "key=" + f.ActiveKey }), "", false},
		{"NoCredentials", req("publish", "rtmp", "live/benw"), "", false},
		{"Read", req("read", "rtmp", "live/benw"), "", false},
		{"SRT", req("publish", "srt", "live/"+f.ActiveKey), "", false},
		{"GrantFromAClient", with(req("publish", "rtmp", "live/benw"), func(a *policy.Attempt) { a.Query = policy.FrontParam + "=AAAAAAAAAAAAAAAA" }), "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v, name, adm := pol.DecideIngest(ctx, tt.a)
			if v.Allow != (tt.wantName != "") || name != tt.wantName {
				t.Fatalf("DecideIngest = %+v, name %q; want name %q", v, name, tt.wantName)
			}
			if v.Allow && (adm.KeyDigest != nil) != tt.wantKey {
				t.Errorf("admission %+v, want a key digest: %v", adm, tt.wantKey)
			}
			if v.Allow && tt.wantKey && *adm.KeyDigest != stagedoor.KeyDigest(f.ActiveKey) {
				t.Errorf("admission names another key")
			}
			// The front decides RTMP publishes only; for those it agrees with Decide.
			rtmpPublish := tt.a.Action == "publish" && tt.a.Protocol == "rtmp"
			if d := pol.Decide(ctx, tt.a); rtmpPublish && d.Allow != v.Allow {
				t.Errorf("Decide allows %v, DecideIngest %v", d.Allow, v.Allow)
			}
		})
	}
}

// TestFrontGrant: a grant admits exactly one publish of its name from its address while
// it is fresh, with the front's verdict and admission; anything else is refused.
func TestFrontGrant(t *testing.T) {
	f := newFixture(t)
	clock := testutil.NewClock(time.Unix(1_800_000_000, 0))
	grants := policy.NewFrontGrants()
	grants.Now = clock.Now
	pol := &policy.Policy{Credentials: f.DB, Front: grants, Admissions: policy.NewAdmissions()}
	ctx := context.Background()
	ingest := req("publish", "rtmp", "live/"+f.ActiveKey)
	ingest.IP = "203.0.113.7"
	v, name, adm := pol.DecideIngest(ctx, ingest)
	if !v.Allow {
		t.Fatalf("DecideIngest refused: %+v", v)
	}
	mint := func() string {
		tok := grants.Mint(name, "203.0.113.7", 20, v, adm)
		if len(tok) != 20 {
			t.Fatalf("grant %q, want 20 characters", tok)
		}
		return tok
	}
	auth := func(tok, path, ip, session string) policy.Verdict {
		a := req("publish", "rtmp", path)
		a.IP, a.Query, a.SessionID = ip, url.Values{policy.FrontParam: {tok}}.Encode(), session
		return pol.Decide(ctx, a)
	}

	tok := mint()
	got := auth(tok, "live/benw", "203.0.113.7", "s1")
	if !got.Allow || got.User != "benw" || got.KeyFP != stagedoor.Fingerprint(f.ActiveKey) {
		t.Fatalf("grant refused or lost the front's verdict: %+v", got)
	}
	if a, ok := pol.Admitted("s1"); !ok || a.KeyDigest == nil || *a.KeyDigest != stagedoor.KeyDigest(f.ActiveKey) {
		t.Errorf("the session was not admitted with the key: %+v %v", a, ok)
	}
	if auth(tok, "live/benw", "203.0.113.7", "s2").Allow {
		t.Error("a grant was used twice")
	}
	if auth(mint(), "live/mallory", "203.0.113.7", "s3").Allow {
		t.Error("a grant opened another name")
	}
	if auth(mint(), "live/benw", "198.51.100.1", "s4").Allow {
		t.Error("a grant was used from another address")
	}
	tok = mint()
	clock.Add(grants.TTL + time.Millisecond)
	if auth(tok, "live/benw", "203.0.113.7", "s5").Allow {
		t.Error("an expired grant was accepted")
	}
	srt := req("publish", "srt", "live/benw")
	srt.IP, srt.Query = "203.0.113.7", url.Values{policy.FrontParam: {mint()}}.Encode()
	if pol.Decide(ctx, srt).Allow {
		t.Error("a grant was accepted over SRT: only the RTMP front's publish may carry one")
	}
	if auth("not-a-grant-at-all", "live/benw", "203.0.113.7", "s6").Allow {
		t.Error("a made-up grant was accepted")
	}
	tok = mint()
	a := req("publish", "rtmp", "live/benw")
	a.IP, a.Query = "203.0.113.7", policy.FrontParam+"="+tok+"&key="+f.ActiveKey
	if pol.Decide(ctx, a).Allow {
		t.Error("a grant with other credentials was accepted")
	}
	if (&policy.Policy{Credentials: f.DB}).Decide(ctx, with(req("publish", "rtmp", "live/benw"), func(a *policy.Attempt) {
		a.Query = policy.FrontParam + "=" + mint()
	})).Allow {
		t.Error("a policy without grants accepted one")
	}
}
