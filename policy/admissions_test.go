package policy_test

import (
	"testing"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/policy"
)

// TestDecideRemembersAdmission: an allowed publish on a public name leaves, under the
// session id MediaMTX sent, what admitted it, whichever field carried the key; a refused
// or id-less attempt leaves nothing.
func TestDecideRemembersAdmission(t *testing.T) {
	f := newFixture(t)
	key := f.ActiveKey
	dg := stagedoor.KeyDigest(key)
	for _, tt := range []struct {
		name    string
		a       policy.Attempt
		wantKey bool // remembered with benw's key digest
	}{
		{"QueryKey", policy.Attempt{Protocol: "rtmp", Query: "key=" + key, SessionID: "s"}, true},
		{"KeyAsPasswordSRT", policy.Attempt{Protocol: "srt", User: "benw", Password: key, Token: key, SessionID: "s"}, true},
		{"KeyAsPasswordRTSP", policy.Attempt{Protocol: "rtsp", User: "benw", Password: key, Token: key, SessionID: "s"}, true},
		{"KeyAsBearerWHIP", policy.Attempt{Protocol: "webrtc", Token: key, SessionID: "s"}, true},
		{"KeyAsRTMPToken", policy.Attempt{Protocol: "rtmp", Token: key, Query: "token=" + key, SessionID: "s"}, true},
		{"RefusedNotRemembered", policy.Attempt{Protocol: "srt", User: "benw", Password: f.BannedKey, SessionID: "s"}, false},
		{"NoSessionIDNotRemembered", policy.Attempt{Protocol: "srt", User: "benw", Password: key}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pol := &policy.Policy{Credentials: f.DB, Admissions: policy.NewAdmissions()}
			tt.a.Action, tt.a.Path, tt.a.IP = policy.ActionPublish, "live/benw", "203.0.113.7"
			pol.Decide(t.Context(), tt.a)
			adm, ok := pol.Admitted("s")
			if ok != tt.wantKey {
				t.Fatalf("Admitted(s) found = %v, want %v", ok, tt.wantKey)
			}
			if ok && (adm.KeyDigest == nil || *adm.KeyDigest != dg || adm.PasswordDigest != nil) {
				t.Errorf("Admitted(s) = %+v, want benw's key digest only", adm)
			}
		})
	}
}

// TestStillAllowedPasswordChanged: a publish a password admitted continues while the
// stored hash is the one that admitted it, and not after it changed.
func TestStillAllowedPasswordChanged(t *testing.T) {
	f := newPublishFixture(t)
	pol := &policy.Policy{Credentials: f.db}
	old := stagedoor.HashDigest(f.aliceHash)
	r := policy.Running{Path: "live/concert", PasswordDigest: &old}
	if v, err := pol.StillAllowed(t.Context(), r); err != nil || !v.Allow {
		t.Fatalf("StillAllowed with the current hash = %+v, %v; want allowed", v, err)
	}
	if err := f.db.SetPasswordHash(t.Context(), "alice", f.bobHash); err != nil {
		t.Fatal(err)
	}
	v, err := pol.StillAllowed(t.Context(), r)
	if err != nil || v.Allow || v.Reason != policy.ReasonPasswordChanged || v.User != "alice" {
		t.Errorf("StillAllowed after a password change = %+v, %v; want refused, %q, alice", v, err, policy.ReasonPasswordChanged)
	}
}
