package manage_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/manage"
)

var panelActor = manage.Actor{Via: manage.ViaPanel, IP: "192.0.2.9"}

// TestPanelAccountActions: each panel-account action is audited once with its actor,
// signals no policy change (no publishing credential moved), and a weak password
// changes nothing.
func TestPanelAccountActions(t *testing.T) {
	s, db, rec := newService(t)
	ctx := t.Context()

	for _, weak := range []string{"", "short", "opsopsops1"[:9], "aaaaaaaaaaaa", "opsaccount"} {
		if _, err := s.CreateOperator(ctx, api, "opsaccount", weak); !isInvalid(err) {
			t.Errorf("CreateOperator(weak %q) error = %v, want *InvalidError", weak, err)
		}
	}
	if _, _, err := db.PanelAccount(ctx, "opsaccount"); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Fatalf("account after weak passwords: %v, want none", err)
	}
	a, err := s.CreateOperator(ctx, manage.Actor{Via: manage.ViaCLI}, "opsaccount", "correct horse battery")
	if err != nil || a.Role != stagedoor.RoleOperator {
		t.Fatalf("CreateOperator = %+v, %v", a, err)
	}
	if _, err := s.CreateOperator(ctx, api, "opsaccount", "correct horse battery"); !errors.Is(err, stagedoor.ErrConflict) {
		t.Errorf("CreateOperator(taken) error = %v, want ErrConflict", err)
	}

	if _, err := s.CreateUser(ctx, api, "benw"); err != nil {
		t.Fatal(err)
	}
	_, changesBefore := rec.snapshot()
	if _, _, err := s.Invite(ctx, api, "nobody"); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("Invite(unknown) error = %v, want ErrNotFound", err)
	}
	token, expires, err := s.Invite(ctx, api, "benw")
	if err != nil || len(token) < 40 || expires.IsZero() {
		t.Fatalf("Invite = %q, %v, %v", token, expires, err)
	}
	if _, err := s.AcceptInvite(ctx, panelActor, token, "benw", "benw"); !isInvalid(err) {
		t.Errorf("AcceptInvite(password = name) error = %v, want *InvalidError", err)
	}
	streamer, err := s.AcceptInvite(ctx, panelActor, token, "benw", "a long panel password")
	if err != nil || streamer.Channel != "benw" {
		t.Fatalf("AcceptInvite after a weak try = %+v, %v; want the invite still usable", streamer, err)
	}
	if _, err := s.AcceptInvite(ctx, panelActor, token, "benw", "another long password"); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("AcceptInvite(used) error = %v, want ErrNotFound", err)
	}
	if err := s.SetPanelPassword(ctx, panelActor, streamer, "a new long password"); err != nil {
		t.Fatal(err)
	}
	if err := s.SignOutEverywhere(ctx, panelActor, streamer); err != nil {
		t.Fatal(err)
	}

	entries, changes := rec.snapshot()
	if changes != changesBefore {
		t.Errorf("policy-changed signals from panel-account actions: %d, want none", changes-changesBefore)
	}
	want := []struct{ reason, user, via string }{
		{"panel operator created opsaccount", "", manage.ViaCLI},
		{"user created", "benw", manage.ViaAPI},
		{"panel invite created", "benw", manage.ViaAPI},
		{"panel password set by invite", "benw", manage.ViaPanel},
		{"panel password changed benw", "benw", manage.ViaPanel},
		{"panel signed out everywhere benw", "benw", manage.ViaPanel},
	}
	if len(entries) != len(want) {
		t.Fatalf("audit entries = %+v, want %d", entries, len(want))
	}
	for i, w := range want {
		e := entries[i]
		if e.Kind != "admin" || e.Reason != w.reason || e.User != w.user || e.Protocol != w.via {
			t.Errorf("entry %d = %+v, want %+v", i, e, w)
		}
		for _, secret := range []string{token, "a long panel password", "correct horse battery"} {
			if strings.Contains(e.Reason, secret) || strings.Contains(e.User, secret) {
				t.Errorf("entry %d holds a secret", i)
			}
		}
	}
}

func isInvalid(err error) bool {
	_, ok := errors.AsType[*stagedoor.InvalidError](err)
	return ok
}
