package manage_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/stagedoor/stagedoor/internal/testdb"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/manage"
	"github.com/stagedoor/stagedoor/store"
)

// recorder collects what a Service audits and signals.
type recorder struct {
	mu      sync.Mutex
	entries []stagedoor.AuditEntry
	changes int
}

func (r *recorder) snapshot() ([]stagedoor.AuditEntry, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]stagedoor.AuditEntry(nil), r.entries...), r.changes
}

func newService(t *testing.T) (*manage.Service, *store.DB, *recorder) {
	t.Helper()
	db := testdb.MustOpen(t)
	rec := &recorder{}
	s := &manage.Service{
		Store: db,
		Record: func(_ context.Context, e stagedoor.AuditEntry) error {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.entries = append(rec.entries, e)
			return nil
		},
		Changed: func(context.Context) {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.changes++
		},
	}
	return s, db, rec
}

var api = manage.Actor{Via: manage.ViaAPI, IP: "192.0.2.7"}

// TestEveryChangeIsAuditedAndSignalled: each action changes the store, writes exactly one
// admin audit entry naming the channel and the actor, and signals the change once.
func TestEveryChangeIsAuditedAndSignalled(t *testing.T) {
	s, db, rec := newService(t)
	ctx := t.Context()
	nu, err := s.CreateUser(ctx, api, "alice")
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	var secrets []string
	secrets = append(secrets, nu.StreamKey)
	steps := []struct {
		name, wantReason, wantUser string
		do                         func() error
	}{
		{"Ban", "user banned", "alice", func() error { return s.SetActive(ctx, api, "alice", false) }},
		{"Unban", "user unbanned", "alice", func() error { return s.SetActive(ctx, api, "alice", true) }},
		{"Password", "password set", "alice", func() error {
			h, err := s.SetPassword(ctx, api, "alice", "correct horse", 0)
			secrets = append(secrets, h)
			return err
		}},
		{"AddKey", "key added ", "alice", func() error {
			k, err := s.AddKey(ctx, api, "alice", "obs")
			secrets = append(secrets, k.StreamKey)
			return err
		}},
		{"RevokeKey", "key revoked " + stagedoor.Fingerprint(nu.StreamKey), "alice", func() error {
			return s.RevokeKey(ctx, api, "alice", stagedoor.Fingerprint(nu.StreamKey), stagedoor.Revocation{})
		}},
		{"ResetKeys", "keys reset, keep-live", "alice", func() error {
			k, err := s.ResetKeys(ctx, api, "alice", stagedoor.Revocation{KeepLive: true})
			secrets = append(secrets, k.StreamKey)
			return err
		}},
		{"ResetAll", "all keys reset (1 users)", "", func() error {
			ks, err := s.ResetAllKeys(ctx, api, stagedoor.Revocation{})
			for _, k := range ks {
				secrets = append(secrets, k.StreamKey)
			}
			return err
		}},
		{"CreateStream", "stream created show", "alice", func() error {
			_, err := s.CreateStream(ctx, api, "show", "alice", true)
			return err
		}},
		{"StreamAuthOff", "stream auth disabled show", "alice", func() error { return s.SetStreamAuth(ctx, api, "show", false) }},
		{"StreamAuthOn", "stream auth enabled show", "alice", func() error { return s.SetStreamAuth(ctx, api, "show", true) }},
		{"DeleteStream", "stream removed show", "", func() error { return s.DeleteStream(ctx, api, "show") }},
	}
	for i, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		es, changes := rec.snapshot()
		if len(es) != i+2 || changes != i+2 {
			t.Fatalf("%s: %d audit entries and %d signals, want %d each", st.name, len(es), changes, i+2)
		}
		e := es[i+1]
		if e.Kind != "admin" || e.Decision != "ok" || e.User != st.wantUser || !strings.HasPrefix(e.Reason, st.wantReason) ||
			e.Protocol != manage.ViaAPI || e.IP != api.IP || e.At.IsZero() {
			t.Errorf("%s: audit entry = %+v, want admin/ok %q for %q via api from %s", st.name, e, st.wantReason, st.wantUser, api.IP)
		}
	}
	es, _ := rec.snapshot()
	for _, e := range es {
		for _, sec := range secrets {
			if sec != "" && strings.Contains(e.Reason+e.User+e.KeyFP, sec) {
				t.Errorf("audit entry %+v carries a secret", e)
			}
		}
	}
	if u, err := db.UserByName(ctx, "alice"); err != nil || !u.Active || !u.HasPassword {
		t.Errorf("alice = %+v, %v; want active with a password", u, err)
	}
}

// TestRefusalsChangeNothing: bad input returns its error, and nothing is changed,
// audited or signalled.
func TestRefusalsChangeNothing(t *testing.T) {
	s, db, rec := newService(t)
	ctx := t.Context()
	if _, err := s.CreateUser(ctx, api, "alice"); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	_, before := rec.snapshot()
	genBefore, err := db.PolicyGeneration(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		do      func() error
		invalid bool
		want    error
	}{
		{"BadNameInvalid", func() error { _, err := s.CreateUser(ctx, api, "Bad Name"); return err }, true, nil},
		{"TakenNameConflict", func() error { _, err := s.CreateUser(ctx, api, "alice"); return err }, false, stagedoor.ErrConflict},
		{"BanUnknownNotFound", func() error { return s.SetActive(ctx, api, "nobody", false) }, false, stagedoor.ErrNotFound},
		{"PasswordUnknownUserNotFound", func() error { _, err := s.SetPassword(ctx, api, "nobody", "correct horse", 0); return err }, false, stagedoor.ErrNotFound},
		{"EmptyPasswordInvalid", func() error { _, err := s.SetPassword(ctx, api, "alice", "", 0); return err }, true, nil},
		{"CostOutOfRangeInvalid", func() error { _, err := s.SetPassword(ctx, api, "alice", "correct horse", 4); return err }, true, nil},
		{"KeyUnknownUserNotFound", func() error { _, err := s.AddKey(ctx, api, "nobody", ""); return err }, false, stagedoor.ErrNotFound},
		{"RevokeUnknownFingerprintNotFound", func() error {
			return s.RevokeKey(ctx, api, "alice", "00000000", stagedoor.Revocation{})
		}, false, stagedoor.ErrNotFound},
		{"StreamUnknownOwnerNotFound", func() error { _, err := s.CreateStream(ctx, api, "show", "nobody", true); return err }, false, stagedoor.ErrNotFound},
		{"StreamAuthUnknownNotFound", func() error { return s.SetStreamAuth(ctx, api, "nothere", false) }, false, stagedoor.ErrNotFound},
		{"DeleteUnknownStreamNotFound", func() error { return s.DeleteStream(ctx, api, "nothere") }, false, stagedoor.ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if _, ok := errors.AsType[*stagedoor.InvalidError](err); tt.invalid && !ok {
				t.Errorf("err = %v, want an *InvalidError", err)
			}
			if !tt.invalid && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if es, changes := rec.snapshot(); len(es) != before || changes != before {
				t.Errorf("%d audit entries and %d signals after a refusal, want %d", len(es), changes, before)
			}
		})
	}
	if g, err := db.PolicyGeneration(ctx); err != nil || g != genBefore {
		t.Errorf("policy generation %d → %d (%v): a refusal changed a credential", genBefore, g, err)
	}
	if u, err := db.UserByName(ctx, "alice"); err != nil || !u.Active || u.HasPassword {
		t.Errorf("alice = %+v, %v; want unchanged (active, no password)", u, err)
	}
}

// TestKick: a kick goes to the service's kicker by public name (a channel or a stream
// name), is audited against the owner only when a publisher was live, signals no policy
// change, and needs a running service.
func TestKick(t *testing.T) {
	s, _, rec := newService(t)
	ctx := t.Context()
	if _, err := s.Kick(ctx, api, "alice"); !errors.Is(err, manage.ErrNoService) {
		t.Fatalf("Kick without a kicker = %v, want ErrNoService", err)
	}
	if _, err := s.CreateUser(ctx, api, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateStream(ctx, api, "alices_show", "alice", false); err != nil {
		t.Fatal(err)
	}
	var asked []string
	s.Kicker = func(_ context.Context, name string) (bool, error) {
		asked = append(asked, name)
		return name == "alices_show", nil
	}
	entriesBefore, before := rec.snapshot()
	if was, err := s.Kick(ctx, api, "alices_show"); err != nil || !was {
		t.Errorf("Kick(alices_show) = %v, %v; want true", was, err)
	}
	if was, err := s.Kick(ctx, api, "alice"); err != nil || was {
		t.Errorf("Kick(alice, not live) = %v, %v; want false", was, err)
	}
	if _, err := s.Kick(ctx, api, "nobody"); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("Kick(nobody) = %v, want ErrNotFound", err)
	}
	entries, changes := rec.snapshot()
	entries = entries[len(entriesBefore):]
	if len(entries) != 1 || entries[0].User != "alice" || entries[0].Reason != "kicked alices_show" || entries[0].IP != api.IP {
		t.Errorf("audit = %+v, want one entry for alice's stream", entries)
	}
	if changes != before {
		t.Errorf("a kick signalled %d policy changes, want none (no credential changed)", changes-before)
	}
	if strings.Join(asked, ",") != "alices_show,alice" {
		t.Errorf("kicker asked for %v", asked)
	}
}
