package plugin_test

import (
	"context"
	"slices"
	"testing"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/plugin"
	"github.com/stagedoor/stagedoor/policy"
)

// bcryptHash is bcrypt cost 10 of plainPassword; otherHash is another well-formed cost-10
// hash (the password set later).
const (
	plainPassword = "correct horse battery staple"
	bcryptHash    = "$2a$10$7jiKhObtcPR5dNsER6VO5eedT/DWJc0NhjAwbetwvM9yfoF2iKCTq"
	otherHash     = "$2a$10$7jiKhObtcPR5dNsER6VO5eedT/DWJc0NhjAwbetwvM9yfoF2iKCTr"
)

// admitFixture is the service's wiring in small: one policy (with its Admissions) answers
// the auth calls and stands behind the manager, over a real store with benw (key), carol
// (key) and concert, benw's password stream.
type admitFixture struct {
	*fixture
	pol *policy.Policy
}

func newAdmitFixture(t *testing.T) *admitFixture {
	t.Helper()
	f := newFixture(t)
	ctx := t.Context()
	if _, err := f.db.CreateUser(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if err := f.db.SetPasswordHash(ctx, "benw", bcryptHash); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.CreateStream(ctx, "concert", "benw", true); err != nil {
		t.Fatal(err)
	}
	pol := &policy.Policy{Credentials: f.db, Passwords: policy.NewPasswords(), Admissions: policy.NewAdmissions()}
	f.m = plugin.NewManager(testutil.Discard(), f.db, f.api.Client(), relay, pol)
	return &admitFixture{fixture: f, pol: pol}
}

// publish is MediaMTX admitting a publisher: the auth call, then the path available with
// the session as its source, then (unless noHook) the available hook.
func (f *admitFixture) publish(t *testing.T, a policy.Attempt, sourceType string, noHook bool) {
	t.Helper()
	a.Action, a.IP = policy.ActionPublish, "203.0.113.7"
	if v := f.pol.Decide(t.Context(), a); !v.Allow {
		t.Fatalf("publish refused: %s", v.Reason)
	}
	f.api.SetSource(a.Path, sourceType, a.SessionID)
	if noHook {
		return
	}
	ev := plugin.Event{Kind: plugin.EventAvailable, Path: a.Path, SourceID: a.SessionID, SourceType: sourceType}
	if err := f.m.HandleEvent(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
}

func (f *admitFixture) reconcile(t *testing.T) {
	t.Helper()
	if err := f.m.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func (f *admitFixture) kicked(sourceType, id string) bool {
	return slices.Contains(f.api.Kicks(), sourceType+"/"+id)
}

// keyShapes are the auth bodies MediaMTX v1.21.0 sends for a publish on live/benw with
// benw's key as a credential (docs/mediamtx.md §2), with the session id it sends as "id",
// which is the path's source id.
func keyShapes(key string) []struct {
	name, sourceType string
	a                policy.Attempt
} {
	return []struct {
		name, sourceType string
		a                policy.Attempt
	}{
		// streamid=publish:live/benw:benw:sk_… (token is a copy of the password)
		{"SRTStreamID", "srtConn", policy.Attempt{Protocol: "srt", Path: "live/benw", User: "benw", Password: key, Token: key, SessionID: "srt-1"}},
		// rtsp://benw:sk_…@host/live/benw: Basic on ANNOUNCE, id = the session
		{"RTSPBasic", "rtspSession", policy.Attempt{Protocol: "rtsp", Path: "live/benw", User: "benw", Password: key, Token: key, SessionID: "rtsp-1"}},
		// WHIP with Authorization: Bearer sk_…
		{"WHIPBearer", "webRTCSession", policy.Attempt{Protocol: "webrtc", Path: "live/benw", Token: key, SessionID: "whip-1"}},
		// rtmp://host/live/benw?user=benw&pass=sk_…
		{"RTMPPass", "rtmpConn", policy.Attempt{Protocol: "rtmp", Path: "live/benw", User: "benw", Password: key, Token: key,
			Query: "user=benw&pass=" + key, SessionID: "rtmp-1"}},
		// rtmp://host/live/benw?token=sk_… and ?jwt=sk_…
		{"RTMPToken", "rtmpConn", policy.Attempt{Protocol: "rtmp", Path: "live/benw", Token: key, Query: "token=" + key, SessionID: "rtmp-2"}},
		{"RTMPJWT", "rtmpConn", policy.Attempt{Protocol: "rtmp", Path: "live/benw", Token: key, Query: "jwt=" + key, SessionID: "rtmp-3"}},
	}
}

// TestKeyAsCredentialKicked: whatever field carried the key that admitted a stream on the
// public name, revoking or resetting that key kicks it, and other changes do not. Before,
// only a key in ?key= (which the hook reads from MTX_QUERY) was recorded, so these streams
// outlived every revocation and reset.
func TestKeyAsCredentialKicked(t *testing.T) {
	revocations := []struct {
		name   string
		revoke func(ctx context.Context, f *admitFixture) error
	}{
		{"RevokeKey", func(ctx context.Context, f *admitFixture) error {
			return f.db.RevokeKey(ctx, "benw", stagedoor.Fingerprint(f.key), stagedoor.Revocation{})
		}},
		{"ResetKeys", func(ctx context.Context, f *admitFixture) error {
			_, err := f.db.ResetKeys(ctx, "benw")
			return err
		}},
		{"ResetAllKeys", func(ctx context.Context, f *admitFixture) error {
			_, err := f.db.ResetAllKeys(ctx, stagedoor.Revocation{})
			return err
		}},
	}
	for _, shape := range keyShapes("") {
		for _, rv := range revocations {
			t.Run(shape.name+"/"+rv.name, func(t *testing.T) {
				f := newAdmitFixture(t)
				ctx := t.Context()
				a := keyShapeFor(t, f.key, shape.name)
				f.publish(t, a, shape.sourceType, false)

				// Unrelated changes: another key for benw, carol's reset, benw's password.
				if _, err := f.db.AddKey(ctx, "benw", "spare"); err != nil {
					t.Fatal(err)
				}
				if _, err := f.db.ResetKeys(ctx, "carol"); err != nil {
					t.Fatal(err)
				}
				if err := f.db.SetPasswordHash(ctx, "benw", otherHash); err != nil {
					t.Fatal(err)
				}
				f.reconcile(t)
				if f.kicked(shape.sourceType, a.SessionID) {
					t.Fatal("kicked after changes that leave its key valid")
				}

				if err := rv.revoke(ctx, f); err != nil {
					t.Fatal(err)
				}
				f.reconcile(t)
				if !f.kicked(shape.sourceType, a.SessionID) {
					t.Errorf("stream admitted by the key as %s not kicked after %s", shape.name, rv.name)
				}
			})
		}
	}
}

func keyShapeFor(t *testing.T, key, name string) policy.Attempt {
	t.Helper()
	for _, s := range keyShapes(key) {
		if s.name == name {
			return s.a
		}
	}
	t.Fatalf("no shape %s", name)
	return policy.Attempt{}
}

// TestAdmissionWithoutHook: the reconciler attaches what admitted a stream whose hook
// never arrived, and that record, kept with the live state, still kicks the stream after
// the service restarted (a new policy that remembers nothing).
func TestAdmissionWithoutHook(t *testing.T) {
	t.Run("ReconcileAttachesAndRevocationKicks", func(t *testing.T) {
		f := newAdmitFixture(t)
		a := keyShapeFor(t, f.key, "SRTStreamID")
		f.publish(t, a, "srtConn", true)
		f.reconcile(t)
		if err := f.db.RevokeKey(t.Context(), "benw", stagedoor.Fingerprint(f.key), stagedoor.Revocation{}); err != nil {
			t.Fatal(err)
		}
		f.reconcile(t)
		if !f.kicked("srtConn", a.SessionID) {
			t.Error("stream found by the reconciler not kicked after its key was revoked")
		}
	})
	t.Run("RestartedServiceStillKicks", func(t *testing.T) {
		f := newAdmitFixture(t)
		a := keyShapeFor(t, f.key, "RTSPBasic")
		f.publish(t, a, "rtspSession", false)
		// The service restarts: its policy and manager are new, the database and MediaMTX
		// are the same.
		restarted := &policy.Policy{Credentials: f.db, Admissions: policy.NewAdmissions()}
		f.m = plugin.NewManager(testutil.Discard(), f.db, f.api.Client(), relay, restarted)
		f.reconcile(t)
		if _, err := f.db.ResetKeys(t.Context(), "benw"); err != nil {
			t.Fatal(err)
		}
		f.reconcile(t)
		if !f.kicked("rtspSession", a.SessionID) {
			t.Error("stream admitted before the restart not kicked after its key was reset")
		}
	})
}

// TestPasswordChangeKicks: a new password retires every old URL, running streams
// included, whether the old plaintext or the old hash admitted them; streams a key
// admitted stay.
func TestPasswordChangeKicks(t *testing.T) {
	for _, tt := range []struct{ name, password string }{
		{"OldPlaintext", plainPassword},
		{"OldHash", bcryptHash},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newAdmitFixture(t)
			ctx := t.Context()
			pw := policy.Attempt{Protocol: "rtmp", Path: "live/concert", User: "benw", Password: tt.password, Token: tt.password,
				Query: "user=benw&pass=" + tt.password, SessionID: "pw-1"}
			f.publish(t, pw, "rtmpConn", false)
			keyed := keyShapeFor(t, f.key, "SRTStreamID")
			f.publish(t, keyed, "srtConn", false)

			// Unrelated: a key change and the same hash set again leave both running.
			if _, err := f.db.AddKey(ctx, "benw", "spare"); err != nil {
				t.Fatal(err)
			}
			if err := f.db.SetPasswordHash(ctx, "benw", bcryptHash); err != nil {
				t.Fatal(err)
			}
			f.reconcile(t)
			if f.kicked("rtmpConn", "pw-1") {
				t.Fatal("password stream kicked while its password is unchanged")
			}

			if err := f.db.SetPasswordHash(ctx, "benw", otherHash); err != nil {
				t.Fatal(err)
			}
			f.reconcile(t)
			if !f.kicked("rtmpConn", "pw-1") {
				t.Error("stream admitted by the old password not kicked after the password changed")
			}
			if f.kicked("srtConn", keyed.SessionID) {
				t.Error("stream admitted by a key kicked by a password change")
			}
		})
	}
}
