package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
)

func testAddKey(t *testing.T, s suite) {
	for _, tt := range []struct {
		name  string
		label string
	}{
		{"LabelStored", "obs studio"},
		{"EmptyLabelStored", ""},
		{"MaxLengthLabelStored", strings.Repeat("a", 64)},
		{"UnicodeLabelStored", "café ☕ backup"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := s.store(t)
			alice := mustCreate(t, st, "alice")
			k := mustAddKey(t, st, "alice", tt.label)

			if !stagedoor.IsKey(k.StreamKey) || k.StreamKey == alice.StreamKey {
				t.Fatalf("AddKey returned a bad or reused key (fp %s)", stagedoor.Fingerprint(k.StreamKey))
			}
			if got, want := k.Fingerprint, stagedoor.Fingerprint(k.StreamKey); got != want {
				t.Errorf("Fingerprint = %q, want %q", got, want)
			}
			if k.Label != tt.label || k.UserName != "alice" {
				t.Errorf("IssuedKey = {user %q label %q}, want {alice %q}", k.UserName, k.Label, tt.label)
			}
			o := mustOwner(t, st, k.StreamKey)
			if o.UserID != alice.ID || o.UserName != "alice" || o.Fingerprint != k.Fingerprint || !o.Active {
				t.Errorf("owner = %+v, want active alice (id %d) with fp %s", o, alice.ID, k.Fingerprint)
			}
			mustOwner(t, st, alice.StreamKey) // the first key still works

			keys := mustKeys(t, st, "alice")
			if len(keys) != 2 {
				t.Fatalf("Keys = %d entries, want 2", len(keys))
			}
			if got := keys[1]; got.Fingerprint != k.Fingerprint || got.Label != tt.label || got.ID != o.KeyID {
				t.Errorf("listed key = %+v, want fp %s label %q id %d", got, k.Fingerprint, tt.label, o.KeyID)
			}
		})
	}

	for _, tt := range []struct {
		name        string
		user, label string
		wantInvalid bool
		wantErr     error
	}{
		{"LabelTooLongInvalid", "alice", strings.Repeat("a", 65), true, nil},
		{"MultibyteLabelTooLongInvalid", "alice", strings.Repeat("é", 33), true, nil},
		{"NewlineInvalid", "alice", "obs\nstudio", true, nil},
		{"EscapeInvalid", "alice", "\x1b[31mred", true, nil},
		{"NULInvalid", "alice", "a\x00b", true, nil},
		{"DELInvalid", "alice", "a\x7fb", true, nil},
		{"UnknownUserErrNotFound", "nobody", "obs", false, stagedoor.ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := s.store(t)
			alice := mustCreate(t, st, "alice")
			before := stateOf(t, st, alice.StreamKey)

			k, err := st.AddKey(t.Context(), tt.user, tt.label)
			if tt.wantInvalid {
				if ie, ok := errors.AsType[*stagedoor.InvalidError](err); !ok || ie.Field != "label" {
					t.Errorf("AddKey error = %v, want *InvalidError for label", err)
				}
			} else if !errors.Is(err, tt.wantErr) {
				t.Errorf("AddKey error = %v, want %v", err, tt.wantErr)
			}
			if k != (stagedoor.IssuedKey{}) {
				t.Errorf("AddKey returned %+v on error, want zero", k)
			}
			// Still one key, and the policy generation has not moved.
			unchanged(t, st, before, alice.StreamKey)
		})
	}
}

func testKeys(t *testing.T, s suite) {
	t.Run("OldestFirstWithLastUse", func(t *testing.T) {
		st, clock := s.store(t)
		ctx := t.Context()
		alice := mustCreate(t, st, "alice")
		bob := mustCreate(t, st, "bobby")
		created := clock.Now()

		clock.Add(time.Hour)
		backup := mustAddKey(t, st, "alice", "backup")
		added := clock.Now()

		clock.Add(time.Hour)
		if err := st.TouchKey(ctx, mustOwner(t, st, backup.StreamKey).KeyID); err != nil {
			t.Fatalf("TouchKey: %v", err)
		}
		used := clock.Now()

		keys := mustKeys(t, st, "alice")
		type row struct {
			Fingerprint, Label string
			CreatedAt          time.Time
			LastUsedAt         *time.Time
		}
		var got []row
		for _, k := range keys {
			got = append(got, row{k.Fingerprint, k.Label, k.CreatedAt, k.LastUsedAt})
		}
		want := []row{
			{alice.Fingerprint, "default", created, nil},
			{backup.Fingerprint, "backup", added, &used},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Keys = %+v, want %+v (oldest first)", got, want)
		}
		for _, secret := range []string{alice.StreamKey, backup.StreamKey, bob.StreamKey} {
			if s := fmt.Sprintf("%+v", keys); strings.Contains(s, secret) {
				t.Errorf("Keys output carries a stream key: %s", s)
			}
		}
	})

	// A hook may touch a key revoked since the stream went live; that must not fail the
	// hook.
	t.Run("TouchKeyOfRevokedKeyOK", func(t *testing.T) {
		st, _ := s.store(t)
		mustCreate(t, st, "alice")
		k := mustAddKey(t, st, "alice", "backup")
		id := mustOwner(t, st, k.StreamKey).KeyID
		if err := st.RevokeKey(t.Context(), "alice", k.Fingerprint, stagedoor.Revocation{}); err != nil {
			t.Fatalf("RevokeKey: %v", err)
		}
		before := stateOf(t, st, k.StreamKey)
		if err := st.TouchKey(t.Context(), id); err != nil {
			t.Errorf("TouchKey(revoked key) = %v, want nil", err)
		}
		unchanged(t, st, before, k.StreamKey)
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		st, _ := s.store(t)
		if _, err := st.Keys(t.Context(), "nobody"); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("Keys(unknown) error = %v, want ErrNotFound", err)
		}
	})

	t.Run("OnlyNewKeyAfterReset", func(t *testing.T) {
		st, _ := s.store(t)
		bob := mustCreate(t, st, "bobby")
		if _, err := st.ResetKeysWith(t.Context(), "bobby", stagedoor.Revocation{}); err != nil {
			t.Fatalf("ResetKeysWith: %v", err)
		}
		if keys := mustKeys(t, st, "bobby"); len(keys) != 1 || keys[0].Fingerprint == bob.Fingerprint {
			t.Errorf("Keys(bobby) after reset = %+v, want only the new key", keys)
		}
	})
}

func testRevokeKey(t *testing.T, s suite) {
	for _, tt := range []struct {
		name string
		r    stagedoor.Revocation
	}{
		{"KickRecorded", stagedoor.Revocation{}},
		{"KeepLiveRecorded", stagedoor.Revocation{KeepLive: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := s.store(t)
			ctx := t.Context()
			alice := mustCreate(t, st, "alice")
			mustCreate(t, st, "bobby")
			backup := mustAddKey(t, st, "alice", "backup")
			before := len(events(t, st))

			notRevoked(t, st, backup.StreamKey)
			if err := st.RevokeKey(ctx, "alice", backup.Fingerprint, tt.r); err != nil {
				t.Fatalf("RevokeKey: %v", err)
			}
			keyGone(t, st, backup.StreamKey)
			mustOwner(t, st, alice.StreamKey)

			got, err := st.RevokedKey(ctx, stagedoor.KeyDigest(backup.StreamKey))
			if err != nil {
				t.Fatalf("RevokedKey: %v", err)
			}
			want := stagedoor.RevokedKeyInfo{UserID: alice.ID, UserName: "alice", Active: true,
				Fingerprint: backup.Fingerprint, KeepLive: tt.r.KeepLive}
			if got != want {
				t.Errorf("RevokedKey = %+v, want %+v", got, want)
			}
			if ev := events(t, st)[before:]; !reflect.DeepEqual(ev, []event{{stagedoor.EventKeyRotated, "alice", "alice"}}) {
				t.Errorf("events queued = %+v, want one key.rotated for alice", ev)
			}
			if keys := mustKeys(t, st, "alice"); len(keys) != 1 || keys[0].Fingerprint != alice.Fingerprint {
				t.Errorf("Keys after revocation = %+v, want only the default key", keys)
			}
		})
	}

	st, _ := s.store(t)
	alice := mustCreate(t, st, "alice")
	bob := mustCreate(t, st, "bobby")
	for _, tt := range []struct {
		name, user, fp string
	}{
		{"WrongFingerprintErrNotFound", "alice", "deadbeef"},
		{"EmptyFingerprintErrNotFound", "alice", ""},
		{"OtherUsersKeyErrNotFound", "alice", bob.Fingerprint},
		{"UnknownUserErrNotFound", "nobody", alice.Fingerprint},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := stateOf(t, st, alice.StreamKey, bob.StreamKey)
			err := st.RevokeKey(t.Context(), tt.user, tt.fp, stagedoor.Revocation{})
			if !errors.Is(err, stagedoor.ErrNotFound) {
				t.Errorf("RevokeKey error = %v, want ErrNotFound", err)
			}
			// Both keys still verify, neither is revoked, no event, same generation.
			unchanged(t, st, before, alice.StreamKey, bob.StreamKey)
			mustOwner(t, st, alice.StreamKey)
			mustOwner(t, st, bob.StreamKey)
			notRevoked(t, st, alice.StreamKey)
			notRevoked(t, st, bob.StreamKey)
		})
	}
}

func testResetKeys(t *testing.T, s suite) {
	t.Run("OK", func(t *testing.T) {
		st, _ := s.store(t)
		ctx := t.Context()
		benw := mustCreate(t, st, "benw")
		alice := mustCreate(t, st, "alice")

		newKey, err := st.ResetKeys(ctx, "benw")
		if err != nil {
			t.Fatalf("ResetKeys: %v", err)
		}
		if !stagedoor.IsKey(newKey) || newKey == benw.StreamKey {
			t.Fatalf("ResetKeys returned a bad or unchanged key (fp %s)", stagedoor.Fingerprint(newKey))
		}
		keyGone(t, st, benw.StreamKey)
		o := mustOwner(t, st, newKey)
		if o.UserID != benw.ID || o.Fingerprint != stagedoor.Fingerprint(newKey) {
			t.Errorf("new key owner = %+v, want benw with fp %s", o, stagedoor.Fingerprint(newKey))
		}
		mustOwner(t, st, alice.StreamKey) // the other user's key still works
		if got := keyCount(t, st); got != 2 {
			t.Errorf("stream keys = %d, want 2", got)
		}
		// ResetKeys kicks: the old key is recorded without keep-live.
		if r, err := st.RevokedKey(ctx, stagedoor.KeyDigest(benw.StreamKey)); err != nil || r.KeepLive {
			t.Errorf("RevokedKey(old key) = %+v, %v; want revoked without keep-live", r, err)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		st, _ := s.store(t)
		benw := mustCreate(t, st, "benw")
		before := stateOf(t, st, benw.StreamKey)
		key, err := st.ResetKeys(t.Context(), "nobody")
		if !errors.Is(err, stagedoor.ErrNotFound) {
			t.Fatalf("ResetKeys(unknown) error = %v, want ErrNotFound", err)
		}
		if key != "" {
			t.Error("ResetKeys(unknown) returned a key")
		}
		unchanged(t, st, before, benw.StreamKey)
	})

	t.Run("WhileLiveStaysLiveWithoutKeyID", func(t *testing.T) {
		st, _ := s.store(t)
		nu := mustCreate(t, st, "benw")
		o := mustOwner(t, st, nu.StreamKey)
		mustSetLive(t, st, stagedoor.LiveState{Name: "benw", UserID: nu.ID, KeyID: o.KeyID, SourceID: "src-a", SourceType: "rtmpConn"})
		if _, err := st.ResetKeys(t.Context(), "benw"); err != nil {
			t.Fatalf("ResetKeys: %v", err)
		}
		l, err := st.LiveByName(t.Context(), "benw")
		if err != nil {
			t.Fatalf("LiveByName after ResetKeys: %v, want still live (kicking is the caller's job)", err)
		}
		// The key is gone, so nothing may point at it any more.
		if l.KeyID != 0 {
			t.Errorf("KeyID = %d after the key was deleted, want 0", l.KeyID)
		}
	})
}

func testResetKeysWith(t *testing.T, s suite) {
	for _, tt := range []struct {
		name string
		keep bool
	}{
		{"KickRecorded", false},
		{"KeepLiveRecorded", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := s.store(t)
			ctx := t.Context()
			alice := mustCreate(t, st, "alice")
			backup := mustAddKey(t, st, "alice", "backup")
			bob := mustCreate(t, st, "bobby")

			k, err := st.ResetKeysWith(ctx, "alice", stagedoor.Revocation{KeepLive: tt.keep})
			if err != nil {
				t.Fatalf("ResetKeysWith: %v", err)
			}
			if k.UserName != "alice" || k.Label != "default" || k.Fingerprint != stagedoor.Fingerprint(k.StreamKey) {
				t.Errorf("IssuedKey = {user %q label %q fp %q}, want alice, default, fp of the key", k.UserName, k.Label, k.Fingerprint)
			}
			if o := mustOwner(t, st, k.StreamKey); o.UserID != alice.ID {
				t.Errorf("new key owner = %d, want alice (%d)", o.UserID, alice.ID)
			}
			for _, old := range []string{alice.StreamKey, backup.StreamKey} {
				keyGone(t, st, old)
				r, err := st.RevokedKey(ctx, stagedoor.KeyDigest(old))
				if err != nil {
					t.Fatalf("RevokedKey(%s): %v", stagedoor.Fingerprint(old), err)
				}
				if r.KeepLive != tt.keep || r.UserName != "alice" || r.Fingerprint != stagedoor.Fingerprint(old) {
					t.Errorf("RevokedKey(%s) = %+v, want alice, KeepLive %v", stagedoor.Fingerprint(old), r, tt.keep)
				}
			}
			mustOwner(t, st, bob.StreamKey)
			notRevoked(t, st, bob.StreamKey)
			notRevoked(t, st, k.StreamKey)
			if keys := mustKeys(t, st, "alice"); len(keys) != 1 || keys[0].Fingerprint != k.Fingerprint {
				t.Errorf("Keys after reset = %+v, want only %s", keys, k.Fingerprint)
			}
			var rotated int
			for _, e := range events(t, st) {
				if e == (event{stagedoor.EventKeyRotated, "alice", "alice"}) {
					rotated++
				}
			}
			if rotated != 1 {
				t.Errorf("key.rotated events for alice = %d, want 1", rotated)
			}
		})
	}

	t.Run("ErrNotFound", func(t *testing.T) {
		st, _ := s.store(t)
		alice := mustCreate(t, st, "alice")
		before := stateOf(t, st, alice.StreamKey)
		k, err := st.ResetKeysWith(t.Context(), "nobody", stagedoor.Revocation{KeepLive: true})
		if !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("ResetKeysWith(unknown) error = %v, want ErrNotFound", err)
		}
		if k.StreamKey != "" {
			t.Error("ResetKeysWith(unknown) returned a key")
		}
		// alice's key still verifies, no event, same generation.
		unchanged(t, st, before, alice.StreamKey)
	})
}

func testResetAllKeys(t *testing.T, s suite) {
	for _, tt := range []struct {
		name string
		keep bool
	}{
		{"KickRecorded", false},
		{"KeepLiveRecorded", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := s.store(t)
			ctx := t.Context()
			alice := mustCreate(t, st, "alice")
			backup := mustAddKey(t, st, "alice", "backup")
			bob := mustCreate(t, st, "bobby")
			if err := st.SetActive(ctx, "bobby", false); err != nil {
				t.Fatalf("ban: %v", err)
			}
			before := len(events(t, st))

			keys, err := st.ResetAllKeys(ctx, stagedoor.Revocation{KeepLive: tt.keep})
			if err != nil {
				t.Fatalf("ResetAllKeys: %v", err)
			}
			if len(keys) != 2 || keys[0].UserName != "alice" || keys[1].UserName != "bobby" {
				t.Fatalf("ResetAllKeys = %+v, want one key each for alice, bobby", keys)
			}
			for _, k := range keys {
				if !stagedoor.IsKey(k.StreamKey) || k.Fingerprint != stagedoor.Fingerprint(k.StreamKey) || k.Label != "default" {
					t.Errorf("issued key for %s: fp %q label %q, want a well-formed key, its fp, default", k.UserName, k.Fingerprint, k.Label)
				}
				notRevoked(t, st, k.StreamKey)
			}
			for _, old := range []string{alice.StreamKey, backup.StreamKey, bob.StreamKey} {
				keyGone(t, st, old)
				r, err := st.RevokedKey(ctx, stagedoor.KeyDigest(old))
				if err != nil {
					t.Fatalf("RevokedKey(%s): %v", stagedoor.Fingerprint(old), err)
				}
				if r.KeepLive != tt.keep {
					t.Errorf("RevokedKey(%s).KeepLive = %v, want %v", stagedoor.Fingerprint(old), r.KeepLive, tt.keep)
				}
			}
			if o := mustOwner(t, st, keys[0].StreamKey); o.UserID != alice.ID || !o.Active {
				t.Errorf("alice's new key owner = %+v, want active alice", o)
			}
			if o := mustOwner(t, st, keys[1].StreamKey); o.UserID != bob.ID || o.Active {
				t.Errorf("bobby's new key owner = %+v, want banned bobby (reset does not unban)", o)
			}
			if got := keyCount(t, st); got != 2 {
				t.Errorf("stream keys = %d, want 2", got)
			}
			// One key.rotated per user, in whatever order the one step wrote them.
			got := map[event]int{}
			for _, e := range events(t, st)[before:] {
				got[e]++
			}
			want := map[event]int{{stagedoor.EventKeyRotated, "alice", "alice"}: 1, {stagedoor.EventKeyRotated, "bobby", "bobby"}: 1}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("events queued = %v, want %v", got, want)
			}
		})
	}

	t.Run("NoUsersNoKeys", func(t *testing.T) {
		st, _ := s.store(t)
		before := stateOf(t, st)
		keys, err := st.ResetAllKeys(t.Context(), stagedoor.Revocation{})
		if err != nil {
			t.Fatalf("ResetAllKeys: %v", err)
		}
		if len(keys) != 0 {
			t.Errorf("ResetAllKeys on an empty store = %d keys, want 0", len(keys))
		}
		unchanged(t, st, before) // no event either
	})
}

// testResetEndsKeepLive: a reset without keep-live is the operator asking for every old
// stream to end, so it also ends the keep-live grace of keys revoked earlier (of that
// user, or of everyone for ResetAllKeys), which the reset itself no longer finds among
// the keys. A reset with keep-live leaves those graces alone, and the grace of another
// user survives a one-user reset.
func testResetEndsKeepLive(t *testing.T, s suite) {
	for _, tt := range []struct {
		name      string
		reset     func(st Store) error
		wantAlice bool // alice's earlier keep-live revocation still lets her stream finish
		wantBob   bool
	}{
		{"ResetKeysEndsTheUsersGrace", func(st Store) error {
			_, err := st.ResetKeysWith(t.Context(), "alice", stagedoor.Revocation{})
			return err
		}, false, true},
		{"ResetKeysKeepLiveKeepsIt", func(st Store) error {
			_, err := st.ResetKeysWith(t.Context(), "alice", stagedoor.Revocation{KeepLive: true})
			return err
		}, true, true},
		{"ResetAllKeysEndsEveryGrace", func(st Store) error {
			_, err := st.ResetAllKeys(t.Context(), stagedoor.Revocation{})
			return err
		}, false, false},
		{"ResetAllKeysKeepLiveKeepsThem", func(st Store) error {
			_, err := st.ResetAllKeys(t.Context(), stagedoor.Revocation{KeepLive: true})
			return err
		}, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := s.store(t)
			ctx := t.Context()
			mustCreate(t, st, "alice")
			mustCreate(t, st, "bobby")
			aliceOld := mustAddKey(t, st, "alice", "old")
			bobOld := mustAddKey(t, st, "bobby", "old")
			for _, k := range []stagedoor.IssuedKey{aliceOld, bobOld} {
				if err := st.RevokeKey(ctx, k.UserName, k.Fingerprint, stagedoor.Revocation{KeepLive: true}); err != nil {
					t.Fatalf("RevokeKey(%s, keep-live): %v", k.UserName, err)
				}
			}
			gen := policyGen(t, st)

			if err := tt.reset(st); err != nil {
				t.Fatalf("reset: %v", err)
			}
			for _, c := range []struct {
				key  stagedoor.IssuedKey
				want bool
			}{{aliceOld, tt.wantAlice}, {bobOld, tt.wantBob}} {
				r, err := st.RevokedKey(ctx, stagedoor.KeyDigest(c.key.StreamKey))
				if err != nil {
					t.Fatalf("RevokedKey(%s's old key): %v", c.key.UserName, err)
				}
				if r.KeepLive != c.want {
					t.Errorf("RevokedKey(%s's old key).KeepLive = %v after the reset, want %v", c.key.UserName, r.KeepLive, c.want)
				}
			}
			if got := policyGen(t, st); got == gen {
				t.Errorf("policy generation = %d after the reset, unchanged", got)
			}
		})
	}
}
