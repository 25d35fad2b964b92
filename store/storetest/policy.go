package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
)

// policyFixture is a store with alice (default key plus a backup key, a stream) whose
// own channel is live, on which one step is measured against the policy generation.
type policyFixture struct {
	st     Store
	alice  stagedoor.NewUser
	backup stagedoor.IssuedKey
}

// policyStep is one call on a policyFixture.
type policyStep func(ctx context.Context, f policyFixture) error

// credentialChanges are the calls that add, change or revoke a credential, so that the
// auth path must drop what it cached (including "no such key" and "no such stream"
// answers): each must move the policy generation.
var credentialChanges = []struct {
	name  string
	setup policyStep // nil: none
	step  policyStep
}{
	{"UserCreate", nil, func(ctx context.Context, f policyFixture) error {
		_, err := f.st.CreateUser(ctx, "bobby")
		return err
	}},
	{"Ban", nil, func(ctx context.Context, f policyFixture) error { return f.st.SetActive(ctx, "alice", false) }},
	{"Unban", func(ctx context.Context, f policyFixture) error { return f.st.SetActive(ctx, "alice", false) },
		func(ctx context.Context, f policyFixture) error { return f.st.SetActive(ctx, "alice", true) }},
	{"PasswordSet", nil, func(ctx context.Context, f policyFixture) error { return f.st.SetPasswordHash(ctx, "alice", testHash) }},
	{"KeyAdd", nil, func(ctx context.Context, f policyFixture) error {
		_, err := f.st.AddKey(ctx, "alice", "more")
		return err
	}},
	{"KeyRevoke", nil, func(ctx context.Context, f policyFixture) error {
		return f.st.RevokeKey(ctx, "alice", f.backup.Fingerprint, stagedoor.Revocation{})
	}},
	{"KeyRevokeKeepLive", nil, func(ctx context.Context, f policyFixture) error {
		return f.st.RevokeKey(ctx, "alice", f.alice.Fingerprint, stagedoor.Revocation{KeepLive: true})
	}},
	{"KeyReset", nil, func(ctx context.Context, f policyFixture) error {
		_, err := f.st.ResetKeys(ctx, "alice")
		return err
	}},
	{"KeyResetKeepLive", nil, func(ctx context.Context, f policyFixture) error {
		_, err := f.st.ResetKeysWith(ctx, "alice", stagedoor.Revocation{KeepLive: true})
		return err
	}},
	{"ResetAll", nil, func(ctx context.Context, f policyFixture) error {
		_, err := f.st.ResetAllKeys(ctx, stagedoor.Revocation{})
		return err
	}},
	{"ResetAllKeepLive", nil, func(ctx context.Context, f policyFixture) error {
		_, err := f.st.ResetAllKeys(ctx, stagedoor.Revocation{KeepLive: true})
		return err
	}},
	{"StreamCreate", nil, func(ctx context.Context, f policyFixture) error {
		_, err := f.st.CreateStream(ctx, "gig", "alice", true)
		return err
	}},
	{"StreamCreateWithoutAuth", nil, func(ctx context.Context, f policyFixture) error {
		_, err := f.st.CreateStream(ctx, "lobbycam", "alice", false)
		return err
	}},
	{"StreamAuthOff", nil, func(ctx context.Context, f policyFixture) error { return f.st.SetStreamAuth(ctx, "alices_show", false) }},
	{"StreamAuthOn", func(ctx context.Context, f policyFixture) error { return f.st.SetStreamAuth(ctx, "alices_show", false) },
		func(ctx context.Context, f policyFixture) error { return f.st.SetStreamAuth(ctx, "alices_show", true) }},
	{"StreamDelete", nil, func(ctx context.Context, f policyFixture) error { return f.st.DeleteStream(ctx, "alices_show") }},
}

// ignore drops a call's result and keeps its error.
func ignore[T any](_ T, err error) error { return err }

// otherCalls change no credential, or nothing at all: the generation must stay, so that
// live-state churn and reads never flush the auth path's cache.
var otherCalls = []struct {
	name  string
	setup policyStep
	step  policyStep
}{
	{"BanOfBannedUser", func(ctx context.Context, f policyFixture) error { return f.st.SetActive(ctx, "alice", false) },
		func(ctx context.Context, f policyFixture) error { return f.st.SetActive(ctx, "alice", false) }},
	{"StreamAuthUnchanged", nil, func(ctx context.Context, f policyFixture) error { return f.st.SetStreamAuth(ctx, "alices_show", true) }},
	{"UnbanOfActiveUser", nil, func(ctx context.Context, f policyFixture) error { return f.st.SetActive(ctx, "alice", true) }},
	{"SetLive", nil, func(ctx context.Context, f policyFixture) error {
		return f.st.SetLive(ctx, local(stagedoor.LiveState{Name: "alices_show", UserID: f.alice.ID, UserName: "alice",
			SourceID: "src-b", SourceType: "rtmpConn"}))
	}},
	{"SetOffline", nil, func(ctx context.Context, f policyFixture) error {
		_, err := f.st.SetOffline(ctx, "alice", node, "src-a")
		return err
	}},
	{"ClearLive", nil, func(ctx context.Context, f policyFixture) error { return f.st.ClearLive(ctx, node) }},
	{"AppendAudit", nil, func(ctx context.Context, f policyFixture) error {
		return f.st.AppendAudit(ctx, []stagedoor.AuditEntry{{At: base, Kind: "publish", User: "alice", Decision: "deny"}})
	}},
	{"PruneAudit", nil, func(ctx context.Context, f policyFixture) error {
		return ignore(f.st.PruneAudit(ctx, base.Add(time.Hour)))
	}},
	{"TouchKey", nil, func(ctx context.Context, f policyFixture) error {
		o, err := f.st.UserByKeyDigest(ctx, stagedoor.KeyDigest(f.alice.StreamKey))
		if err != nil {
			return err
		}
		return f.st.TouchKey(ctx, o.KeyID)
	}},
	{"AddEvent", nil, func(ctx context.Context, f policyFixture) error {
		return f.st.AddEvent(ctx, stagedoor.EventStreamStarted, "alice", "alice")
	}},
	{"FinishRetryPruneEvents", func(ctx context.Context, f policyFixture) error {
		return f.st.AddEvent(ctx, stagedoor.EventStreamStarted, "alice", "alices_show")
	}, func(ctx context.Context, f policyFixture) error {
		evs, err := f.st.DueEvents(ctx, 2)
		if err != nil {
			return err
		}
		if len(evs) != 2 {
			return fmt.Errorf("DueEvents = %d events, want 2", len(evs))
		}
		if err := f.st.FinishEvent(ctx, evs[0].ID); err != nil {
			return err
		}
		if err := f.st.RetryEvent(ctx, evs[1].ID, time.Minute); err != nil {
			return err
		}
		return f.st.PruneEvents(ctx, base.Add(time.Hour))
	}},
	{"ProbeWrite", nil, func(ctx context.Context, f policyFixture) error { return f.st.ProbeWrite(ctx, "host-a") }},
	{"Ping", nil, func(ctx context.Context, f policyFixture) error { return f.st.Ping(ctx) }},
	{"Reads", nil, func(ctx context.Context, f policyFixture) error {
		d := stagedoor.KeyDigest(f.alice.StreamKey)
		for _, err := range []error{
			ignore(f.st.UserByName(ctx, "alice")),
			ignore(f.st.Users(ctx)),
			ignore(f.st.UserByKeyDigest(ctx, d)),
			ignore(f.st.Keys(ctx, "alice")),
			ignore(f.st.StreamByName(ctx, "alices_show")),
			ignore(f.st.Streams(ctx, "")),
			ignore(f.st.ChannelByName(ctx, "alices_show")),
			ignore(f.st.LiveByName(ctx, "alice")),
			ignore(f.st.LiveStates(ctx)),
			ignore(f.st.DueEvents(ctx, 10)),
			ignore(f.st.Audit(ctx, stagedoor.AuditFilter{})),
			ignore(f.st.PolicyGeneration(ctx)),
		} {
			if err != nil {
				return err
			}
		}
		// Lookups that find nothing are reads too.
		for _, err := range []error{ignore(f.st.RevokedKey(ctx, d)), ignore(f.st.UserByName(ctx, "nobody"))} {
			if !errors.Is(err, stagedoor.ErrNotFound) {
				return fmt.Errorf("lookup of nothing = %w, want ErrNotFound", err)
			}
		}
		return nil
	}},
}

// newPolicyFixture sets up alice, her backup key, her stream and her live channel.
func (s suite) newPolicyFixture(t *testing.T) policyFixture {
	t.Helper()
	st, _ := s.store(t)
	f := policyFixture{st: st, alice: mustCreate(t, st, "alice")}
	f.backup = mustAddKey(t, st, "alice", "backup")
	mustStream(t, st, "alices_show", "alice", true)
	mustSetLive(t, st, stagedoor.LiveState{Name: "alice", UserID: f.alice.ID, UserName: "alice", SourceID: "src-a", SourceType: "rtmpConn"})
	return f
}

func testPolicyGeneration(t *testing.T, s suite) {
	// Every credential change moves the generation, each on its own.
	for _, tt := range credentialChanges {
		t.Run(tt.name+"Changes", func(t *testing.T) {
			f := s.newPolicyFixture(t)
			if tt.setup != nil {
				if err := tt.setup(t.Context(), f); err != nil {
					t.Fatalf("setup: %v", err)
				}
			}
			before := policyGen(t, f.st)
			if err := tt.step(t.Context(), f); err != nil {
				t.Fatalf("step: %v", err)
			}
			if after := policyGen(t, f.st); after == before {
				t.Errorf("generation = %d after %s, want it changed", after, tt.name)
			}
		})
	}

	for _, tt := range otherCalls {
		t.Run(tt.name+"Unchanged", func(t *testing.T) {
			f := s.newPolicyFixture(t)
			if tt.setup != nil {
				if err := tt.setup(t.Context(), f); err != nil {
					t.Fatalf("setup: %v", err)
				}
			}
			before := policyGen(t, f.st)
			if err := tt.step(t.Context(), f); err != nil {
				t.Fatalf("step: %v", err)
			}
			if after := policyGen(t, f.st); after != before {
				t.Errorf("generation = %d after %s, want %d (unchanged)", after, tt.name, before)
			}
		})
	}

	// The service compares the generation with the last one it saw: a value that came
	// back would hide the changes in between.
	t.Run("NeverRepeats", func(t *testing.T) {
		f := s.newPolicyFixture(t)
		seen := map[int64]string{policyGen(t, f.st): "start"}
		for _, tt := range credentialChanges {
			// The sequence bans before it unbans: the setups change nothing here.
			if tt.setup != nil {
				if err := tt.setup(t.Context(), f); err != nil {
					t.Fatalf("%s setup: %v", tt.name, err)
				}
			}
			if err := tt.step(t.Context(), f); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			g := policyGen(t, f.st)
			if prev, ok := seen[g]; ok {
				t.Errorf("generation %d after %s, the value it had after %s", g, tt.name, prev)
			}
			seen[g] = tt.name
		}
	})
}
