package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
)

// otherHash is a second bcrypt-shaped hash (testHash with another salt character).
var otherHash = testHash[:29] + "a" + testHash[30:]

func mustOperator(t *testing.T, st Store, name string) stagedoor.PanelAccount {
	t.Helper()
	a, err := st.CreateOperator(t.Context(), name, testHash)
	if err != nil {
		t.Fatalf("CreateOperator(%q): %v", name, err)
	}
	return a
}

func mustSession(t *testing.T, st Store, name string) stagedoor.Digest {
	t.Helper()
	d := stagedoor.TokenDigest(stagedoor.NewPanelToken())
	if err := st.CreatePanelSession(t.Context(), name, d); err != nil {
		t.Fatalf("CreatePanelSession(%q): %v", name, err)
	}
	return d
}

func sessionGone(t *testing.T, st Store, d stagedoor.Digest, why string) {
	t.Helper()
	if _, err := st.PanelSession(t.Context(), d); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("PanelSession after %s: error = %v, want ErrNotFound", why, err)
	}
}

func sessionAlive(t *testing.T, st Store, d stagedoor.Digest, why string) stagedoor.PanelSession {
	t.Helper()
	s, err := st.PanelSession(t.Context(), d)
	if err != nil {
		t.Errorf("PanelSession after %s: %v, want alive", why, err)
	}
	return s
}

// mustInvite creates an invite for channel, expiring after stagedoor.InviteTTL.
func mustInvite(t *testing.T, st Store, now time.Time, channel string) stagedoor.Digest {
	t.Helper()
	d := stagedoor.TokenDigest(stagedoor.NewPanelToken())
	if err := st.CreatePanelInvite(t.Context(), channel, d, now.Add(stagedoor.InviteTTL)); err != nil {
		t.Fatalf("CreatePanelInvite(%q): %v", channel, err)
	}
	return d
}

func testPanelAccounts(t *testing.T, s suite) {
	t.Run("OK", func(t *testing.T) {
		st, clock := s.store(t)
		a := mustOperator(t, st, "ops")
		if a.ID == 0 || a.Name != "ops" || a.Role != stagedoor.RoleOperator || a.Channel != "" || !a.Active ||
			!a.CreatedAt.Equal(clock.Now()) {
			t.Errorf("CreateOperator = %+v", a)
		}
		got, hash, err := st.PanelAccount(t.Context(), "ops")
		if err != nil || got != a || hash != testHash {
			t.Errorf("PanelAccount = %+v, %q, %v; want %+v and the hash", got, hash, err, a)
		}
		list, err := st.PanelAccounts(t.Context())
		if err != nil || len(list) != 1 || list[0] != a {
			t.Errorf("PanelAccounts = %+v, %v", list, err)
		}
	})
	t.Run("Refusals", func(t *testing.T) {
		st, _ := s.store(t)
		mustOperator(t, st, "ops")
		if _, err := st.CreateOperator(t.Context(), "ops", otherHash); !errors.Is(err, stagedoor.ErrConflict) {
			t.Errorf("CreateOperator(taken) error = %v, want ErrConflict", err)
		}
		if _, err := st.CreateOperator(t.Context(), "Bad Name", testHash); !isInvalid(err) {
			t.Errorf("CreateOperator(bad name) error = %v, want *InvalidError", err)
		}
		if _, err := st.CreateOperator(t.Context(), "ops2", "plaintext"); !isInvalid(err) {
			t.Errorf("CreateOperator(plaintext as hash) error = %v, want *InvalidError", err)
		}
		if err := st.SetPanelPassword(t.Context(), "nobody", otherHash); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("SetPanelPassword(unknown) error = %v, want ErrNotFound", err)
		}
		if _, _, err := st.PanelAccount(t.Context(), "nobody"); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("PanelAccount(unknown) error = %v, want ErrNotFound", err)
		}
		if _, hash, _ := st.PanelAccount(t.Context(), "ops"); hash != testHash {
			t.Errorf("hash changed by refused calls: %q", hash)
		}
	})
	t.Run("NotAPublishCredential", func(t *testing.T) {
		st, _ := s.store(t)
		mustCreate(t, st, "benw")
		inv := mustInvite(t, st, base, "benw")
		if _, err := st.UsePanelInvite(t.Context(), inv, testHash); err != nil {
			t.Fatal(err)
		}
		// The streamer's panel password is not the channel's publishing password.
		if h, err := st.PasswordHash(t.Context(), "benw"); err != nil || h != "" {
			t.Errorf("publishing hash after panel password = %q, %v; want none", h, err)
		}
		if u, _ := st.UserByName(t.Context(), "benw"); u.HasPassword {
			t.Error("user HasPassword after a panel password was set")
		}
	})
}

func testPanelSessions(t *testing.T, s suite) {
	t.Run("CreateTouchEnd", func(t *testing.T) {
		st, clock := s.store(t)
		a := mustOperator(t, st, "ops")
		d := mustSession(t, st, "ops")
		got := sessionAlive(t, st, d, "create")
		if got.Account != a || !got.CreatedAt.Equal(clock.Now()) || !got.SeenAt.Equal(clock.Now()) {
			t.Errorf("PanelSession = %+v, want account %+v created and seen now", got, a)
		}
		clock.Add(5 * time.Minute)
		if err := st.TouchPanelSession(t.Context(), d); err != nil {
			t.Fatal(err)
		}
		got = sessionAlive(t, st, d, "touch")
		if !got.SeenAt.Equal(clock.Now()) || !got.CreatedAt.Equal(base) {
			t.Errorf("after touch: created %v seen %v, want %v and %v", got.CreatedAt, got.SeenAt, base, clock.Now())
		}
		if err := st.EndPanelSession(t.Context(), d); err != nil {
			t.Fatal(err)
		}
		sessionGone(t, st, d, "EndPanelSession")
		if err := st.EndPanelSession(t.Context(), d); err != nil {
			t.Errorf("second EndPanelSession: %v, want nil", err)
		}
		if err := st.TouchPanelSession(t.Context(), d); err != nil {
			t.Errorf("TouchPanelSession(ended): %v, want nil", err)
		}
		sessionGone(t, st, d, "touching an ended session")
		if err := st.CreatePanelSession(t.Context(), "nobody", d); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("CreatePanelSession(unknown) error = %v, want ErrNotFound", err)
		}
	})
	t.Run("EndedByPasswordChangeAndSignOutEverywhere", func(t *testing.T) {
		st, _ := s.store(t)
		mustOperator(t, st, "ops")
		mustOperator(t, st, "other")
		d1, d2, keep := mustSession(t, st, "ops"), mustSession(t, st, "ops"), mustSession(t, st, "other")
		if err := st.SetPanelPassword(t.Context(), "ops", otherHash); err != nil {
			t.Fatal(err)
		}
		sessionGone(t, st, d1, "password change")
		sessionGone(t, st, d2, "password change")
		sessionAlive(t, st, keep, "another account's password change")
		if _, h, _ := st.PanelAccount(t.Context(), "ops"); h != otherHash {
			t.Errorf("hash = %q, want the new one", h)
		}

		d3, d4 := mustSession(t, st, "ops"), mustSession(t, st, "ops")
		n, err := st.EndPanelSessions(t.Context(), "ops")
		if err != nil || n != 2 {
			t.Errorf("EndPanelSessions = %d, %v; want 2", n, err)
		}
		sessionGone(t, st, d3, "sign out everywhere")
		sessionGone(t, st, d4, "sign out everywhere")
		sessionAlive(t, st, keep, "another account signing out everywhere")
		if _, err := st.EndPanelSessions(t.Context(), "nobody"); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("EndPanelSessions(unknown) error = %v, want ErrNotFound", err)
		}
	})
	t.Run("EndedByBan", func(t *testing.T) {
		st, _ := s.store(t)
		mustCreate(t, st, "benw")
		mustCreate(t, st, "alice")
		for _, ch := range []string{"benw", "alice"} {
			if _, err := st.UsePanelInvite(t.Context(), mustInvite(t, st, base, ch), testHash); err != nil {
				t.Fatal(err)
			}
		}
		benw, alice := mustSession(t, st, "benw"), mustSession(t, st, "alice")
		if err := st.SetActive(t.Context(), "benw", false); err != nil {
			t.Fatal(err)
		}
		sessionGone(t, st, benw, "ban")
		sessionAlive(t, st, alice, "another channel's ban")
		if err := st.CreatePanelSession(t.Context(), "benw", stagedoor.TokenDigest("x")); !errors.Is(err, stagedoor.ErrInactive) {
			t.Errorf("CreatePanelSession(banned) error = %v, want ErrInactive", err)
		}
		a, _, _ := st.PanelAccount(t.Context(), "benw")
		if a.Active {
			t.Errorf("banned streamer's account = %+v, want inactive", a)
		}
		if err := st.SetActive(t.Context(), "benw", true); err != nil {
			t.Fatal(err)
		}
		sessionGone(t, st, benw, "unban (a ban's sign-out stays)")
		mustSession(t, st, "benw")
	})
	t.Run("Prune", func(t *testing.T) {
		st, clock := s.store(t)
		mustOperator(t, st, "ops")
		old := mustSession(t, st, "ops")
		clock.Add(time.Hour)
		idle := mustSession(t, st, "ops")
		clock.Add(time.Hour)
		fresh := mustSession(t, st, "ops")
		if err := st.TouchPanelSession(t.Context(), old); err != nil {
			t.Fatal(err)
		}
		// Created before base+30m: old goes though just seen; seen before base+90m: idle goes.
		n, err := st.PrunePanelSessions(t.Context(), base.Add(30*time.Minute), base.Add(90*time.Minute))
		if err != nil || n != 2 {
			t.Errorf("PrunePanelSessions = %d, %v; want 2", n, err)
		}
		sessionGone(t, st, old, "prune by age")
		sessionGone(t, st, idle, "prune by idleness")
		sessionAlive(t, st, fresh, "prune")
	})
}

func testPanelInvites(t *testing.T, s suite) {
	t.Run("SingleUse", func(t *testing.T) {
		st, clock := s.store(t)
		mustCreate(t, st, "benw")
		d := mustInvite(t, st, clock.Now(), "benw")
		inv, err := st.PanelInvite(t.Context(), d)
		if err != nil || inv.Channel != "benw" || !inv.ExpiresAt.Equal(base.Add(stagedoor.InviteTTL)) {
			t.Errorf("PanelInvite = %+v, %v", inv, err)
		}
		a, err := st.UsePanelInvite(t.Context(), d, testHash)
		if err != nil || a.Name != "benw" || a.Channel != "benw" || a.Role != stagedoor.RoleStreamer || !a.Active || a.ID == 0 {
			t.Fatalf("UsePanelInvite = %+v, %v; want streamer benw bound to benw", a, err)
		}
		if _, err := st.UsePanelInvite(t.Context(), d, otherHash); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("second UsePanelInvite error = %v, want ErrNotFound", err)
		}
		if _, err := st.PanelInvite(t.Context(), d); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("PanelInvite(used) error = %v, want ErrNotFound", err)
		}
		if _, h, _ := st.PanelAccount(t.Context(), "benw"); h != testHash {
			t.Errorf("hash after a refused second use = %q, want the first", h)
		}
	})
	t.Run("Expiry", func(t *testing.T) {
		st, clock := s.store(t)
		mustCreate(t, st, "benw")
		d := mustInvite(t, st, clock.Now(), "benw")
		clock.Add(stagedoor.InviteTTL - time.Second)
		if _, err := st.PanelInvite(t.Context(), d); err != nil {
			t.Errorf("PanelInvite a second before expiry: %v", err)
		}
		clock.Add(time.Second)
		if _, err := st.PanelInvite(t.Context(), d); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("PanelInvite at expiry error = %v, want ErrNotFound", err)
		}
		if _, err := st.UsePanelInvite(t.Context(), d, testHash); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("UsePanelInvite at expiry error = %v, want ErrNotFound", err)
		}
		if _, _, err := st.PanelAccount(t.Context(), "benw"); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("account after an expired invite: %v, want none", err)
		}
	})
	t.Run("ResetsPasswordAndSessions", func(t *testing.T) {
		st, clock := s.store(t)
		mustCreate(t, st, "benw")
		if _, err := st.UsePanelInvite(t.Context(), mustInvite(t, st, clock.Now(), "benw"), testHash); err != nil {
			t.Fatal(err)
		}
		old := mustSession(t, st, "benw")
		a, err := st.UsePanelInvite(t.Context(), mustInvite(t, st, clock.Now(), "benw"), otherHash)
		if err != nil || a.Name != "benw" {
			t.Fatalf("second invite: %+v, %v", a, err)
		}
		sessionGone(t, st, old, "a new invite's password")
		if _, h, _ := st.PanelAccount(t.Context(), "benw"); h != otherHash {
			t.Errorf("hash = %q, want the second invite's", h)
		}
	})
	t.Run("Refusals", func(t *testing.T) {
		st, clock := s.store(t)
		if err := st.CreatePanelInvite(t.Context(), "nobody", stagedoor.TokenDigest("x"), clock.Now().Add(time.Hour)); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("CreatePanelInvite(unknown channel) error = %v, want ErrNotFound", err)
		}
		mustCreate(t, st, "benw")
		mustOperator(t, st, "benw") // an operator already holds the channel's name
		d := mustInvite(t, st, clock.Now(), "benw")
		if _, err := st.UsePanelInvite(t.Context(), d, otherHash); !errors.Is(err, stagedoor.ErrConflict) {
			t.Errorf("UsePanelInvite(operator's name) error = %v, want ErrConflict", err)
		}
		if _, err := st.UsePanelInvite(t.Context(), d, "plain"); !isInvalid(err) {
			t.Errorf("UsePanelInvite(bad hash) error = %v, want *InvalidError", err)
		}
		if _, err := st.PanelInvite(t.Context(), d); err != nil {
			t.Errorf("invite after refused uses: %v, want still usable", err)
		}
		if a, h, _ := st.PanelAccount(t.Context(), "benw"); a.Role != stagedoor.RoleOperator || h != testHash {
			t.Errorf("operator benw changed: %+v %q", a, h)
		}
	})
}

func isInvalid(err error) bool {
	_, ok := errors.AsType[*stagedoor.InvalidError](err)
	return ok
}
