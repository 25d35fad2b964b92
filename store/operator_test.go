package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/store"
)

// outboxRow is one queued webhook event as the table holds it.
type outboxRow struct {
	Event, User, Channel string
}

// outboxRows returns every outbox row, oldest first.
func outboxRows(t *testing.T, db *store.DB) []outboxRow {
	t.Helper()
	rows, err := db.SQLForTest().QueryContext(t.Context(), `SELECT event, username, channel FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		if err := rows.Scan(&r.Event, &r.User, &r.Channel); err != nil {
			t.Fatalf("read outbox: %v", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return out
}

// countRows runs a count(*) query.
func countRows(t *testing.T, db *store.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.SQLForTest().QueryRowContext(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func policyGen(t *testing.T, db *store.DB) int64 {
	t.Helper()
	g, err := db.PolicyGeneration(t.Context())
	if err != nil {
		t.Fatalf("PolicyGeneration: %v", err)
	}
	return g
}

// mustOwner returns the owner of key, failing if the key does not verify.
func mustOwner(t *testing.T, db *store.DB, key string) stagedoor.KeyOwner {
	t.Helper()
	o, err := db.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(key))
	if err != nil {
		t.Fatalf("UserByKeyDigest(key %s): %v, want found", stagedoor.Fingerprint(key), err)
	}
	return o
}

// keyGone fails unless key no longer verifies.
func keyGone(t *testing.T, db *store.DB, key string) {
	t.Helper()
	if _, err := db.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(key)); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("UserByKeyDigest(revoked key %s) error = %v, want ErrNotFound", stagedoor.Fingerprint(key), err)
	}
}

func mustAddKey(t *testing.T, db *store.DB, name, label string) stagedoor.IssuedKey {
	t.Helper()
	k, err := db.AddKey(t.Context(), name, label)
	if err != nil {
		t.Fatalf("AddKey(%q, %q): %v", name, label, err)
	}
	return k
}

func TestAddKey(t *testing.T) {
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
			db := mustOpen(t)
			alice := mustCreate(t, db, "alice")
			k := mustAddKey(t, db, "alice", tt.label)

			if !stagedoor.IsKey(k.StreamKey) || k.StreamKey == alice.StreamKey {
				t.Fatalf("AddKey returned a bad or reused key (fp %s)", stagedoor.Fingerprint(k.StreamKey))
			}
			if got, want := k.Fingerprint, stagedoor.Fingerprint(k.StreamKey); got != want {
				t.Errorf("Fingerprint = %q, want %q", got, want)
			}
			if k.Label != tt.label || k.UserName != "alice" {
				t.Errorf("IssuedKey = {user %q label %q}, want {alice %q}", k.UserName, k.Label, tt.label)
			}
			o := mustOwner(t, db, k.StreamKey)
			if o.UserID != alice.ID || o.UserName != "alice" || o.Fingerprint != k.Fingerprint || !o.Active {
				t.Errorf("owner = %+v, want active alice (id %d) with fp %s", o, alice.ID, k.Fingerprint)
			}
			mustOwner(t, db, alice.StreamKey) // the first key still works

			keys, err := db.Keys(t.Context(), "alice")
			if err != nil {
				t.Fatalf("Keys: %v", err)
			}
			if len(keys) != 2 {
				t.Fatalf("Keys = %d entries, want 2", len(keys))
			}
			if got := keys[1]; got.Fingerprint != k.Fingerprint || got.Label != tt.label || got.ID != o.KeyID {
				t.Errorf("listed key = %+v, want fp %s label %q id %d", got, k.Fingerprint, tt.label, o.KeyID)
			}
		})
	}
}

func TestAddKeyRefusalsChangeNothing(t *testing.T) {
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
		{"UnknownUserNotFound", "nobody", "obs", false, stagedoor.ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := mustOpen(t)
			mustCreate(t, db, "alice")
			gen := policyGen(t, db)

			k, err := db.AddKey(t.Context(), tt.user, tt.label)
			if tt.wantInvalid {
				var ie *stagedoor.InvalidError
				if !errors.As(err, &ie) || ie.Field != "label" {
					t.Errorf("AddKey error = %v, want *InvalidError for label", err)
				}
			} else if !errors.Is(err, tt.wantErr) {
				t.Errorf("AddKey error = %v, want %v", err, tt.wantErr)
			}
			if k != (stagedoor.IssuedKey{}) {
				t.Errorf("AddKey returned %+v on error, want zero", k)
			}
			if got := keyCount(t, db); got != 1 {
				t.Errorf("stream keys = %d, want 1 (nothing added)", got)
			}
			if got := policyGen(t, db); got != gen {
				t.Errorf("policy generation = %d, want %d (unchanged)", got, gen)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	db := mustOpen(t)
	clock := &fakeClock{now: time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)}
	db.Now = clock.Now
	ctx := t.Context()
	alice := mustCreate(t, db, "alice")
	bob := mustCreate(t, db, "bobby")
	created := clock.now

	clock.now = clock.now.Add(time.Hour)
	backup := mustAddKey(t, db, "alice", "backup")
	added := clock.now

	clock.now = clock.now.Add(time.Hour)
	if err := db.TouchKey(ctx, mustOwner(t, db, backup.StreamKey).KeyID); err != nil {
		t.Fatalf("TouchKey: %v", err)
	}
	used := clock.now

	keys, err := db.Keys(ctx, "alice")
	if err != nil {
		t.Fatalf("Keys: %v", err)
	}
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

	if _, err := db.Keys(ctx, "nobody"); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("Keys(unknown) error = %v, want ErrNotFound", err)
	}
	if _, err := db.ResetKeysWith(ctx, "bobby", stagedoor.Revocation{}); err != nil {
		t.Fatalf("ResetKeysWith: %v", err)
	}
	bobKeys, err := db.Keys(ctx, "bobby")
	if err != nil {
		t.Fatalf("Keys(bobby): %v", err)
	}
	if len(bobKeys) != 1 || bobKeys[0].Fingerprint == bob.Fingerprint {
		t.Errorf("Keys(bobby) after reset = %+v, want only the new key", bobKeys)
	}
}

func TestRevokeKey(t *testing.T) {
	for _, tt := range []struct {
		name string
		r    stagedoor.Revocation
	}{
		{"KickRecorded", stagedoor.Revocation{}},
		{"KeepLiveRecorded", stagedoor.Revocation{KeepLive: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := mustOpen(t)
			ctx := t.Context()
			alice := mustCreate(t, db, "alice")
			mustCreate(t, db, "bobby")
			backup := mustAddKey(t, db, "alice", "backup")
			before := len(outboxRows(t, db))

			if _, err := db.RevokedKey(ctx, stagedoor.KeyDigest(backup.StreamKey)); !errors.Is(err, stagedoor.ErrNotFound) {
				t.Errorf("RevokedKey(live key) error = %v, want ErrNotFound", err)
			}
			if err := db.RevokeKey(ctx, "alice", backup.Fingerprint, tt.r); err != nil {
				t.Fatalf("RevokeKey: %v", err)
			}
			keyGone(t, db, backup.StreamKey)
			mustOwner(t, db, alice.StreamKey)

			got, err := db.RevokedKey(ctx, stagedoor.KeyDigest(backup.StreamKey))
			if err != nil {
				t.Fatalf("RevokedKey: %v", err)
			}
			want := stagedoor.RevokedKeyInfo{UserID: alice.ID, UserName: "alice", Active: true,
				Fingerprint: backup.Fingerprint, KeepLive: tt.r.KeepLive}
			if got != want {
				t.Errorf("RevokedKey = %+v, want %+v", got, want)
			}
			if ev := outboxRows(t, db)[before:]; !reflect.DeepEqual(ev, []outboxRow{{stagedoor.EventKeyRotated, "alice", "alice"}}) {
				t.Errorf("events queued = %+v, want one key.rotated for alice", ev)
			}
		})
	}
}

func TestRevokeKeyRefusalsChangeNothing(t *testing.T) {
	db := mustOpen(t)
	ctx := t.Context()
	alice := mustCreate(t, db, "alice")
	bob := mustCreate(t, db, "bobby")
	for _, tt := range []struct {
		name, user, fp string
	}{
		{"WrongFingerprintNotFound", "alice", "deadbeef"},
		{"EmptyFingerprintNotFound", "alice", ""},
		{"OtherUsersKeyNotFound", "alice", bob.Fingerprint},
		{"UnknownUserNotFound", "nobody", alice.Fingerprint},
	} {
		t.Run(tt.name, func(t *testing.T) {
			gen, events := policyGen(t, db), len(outboxRows(t, db))
			err := db.RevokeKey(ctx, tt.user, tt.fp, stagedoor.Revocation{})
			if !errors.Is(err, stagedoor.ErrNotFound) {
				t.Errorf("RevokeKey error = %v, want ErrNotFound", err)
			}
			mustOwner(t, db, alice.StreamKey)
			mustOwner(t, db, bob.StreamKey)
			if got := keyCount(t, db); got != 2 {
				t.Errorf("stream keys = %d, want 2", got)
			}
			if got := countRows(t, db, `SELECT count(*) FROM revoked_keys`); got != 0 {
				t.Errorf("revoked keys = %d, want 0", got)
			}
			if got := len(outboxRows(t, db)); got != events {
				t.Errorf("outbox = %d events, want %d (no event)", got, events)
			}
			if got := policyGen(t, db); got != gen {
				t.Errorf("policy generation = %d, want %d", got, gen)
			}
		})
	}
}

func TestResetKeysWithRecordsKeepLive(t *testing.T) {
	for _, tt := range []struct {
		name string
		keep bool
	}{
		{"KickRecorded", false},
		{"KeepLiveRecorded", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := mustOpen(t)
			ctx := t.Context()
			alice := mustCreate(t, db, "alice")
			backup := mustAddKey(t, db, "alice", "backup")
			bob := mustCreate(t, db, "bobby")

			k, err := db.ResetKeysWith(ctx, "alice", stagedoor.Revocation{KeepLive: tt.keep})
			if err != nil {
				t.Fatalf("ResetKeysWith: %v", err)
			}
			if k.UserName != "alice" || k.Label != "default" || k.Fingerprint != stagedoor.Fingerprint(k.StreamKey) {
				t.Errorf("IssuedKey = {user %q label %q fp %q}, want alice, default, fp of the key", k.UserName, k.Label, k.Fingerprint)
			}
			if o := mustOwner(t, db, k.StreamKey); o.UserID != alice.ID {
				t.Errorf("new key owner = %d, want alice (%d)", o.UserID, alice.ID)
			}
			for _, old := range []string{alice.StreamKey, backup.StreamKey} {
				keyGone(t, db, old)
				r, err := db.RevokedKey(ctx, stagedoor.KeyDigest(old))
				if err != nil {
					t.Fatalf("RevokedKey(%s): %v", stagedoor.Fingerprint(old), err)
				}
				if r.KeepLive != tt.keep || r.UserName != "alice" || r.Fingerprint != stagedoor.Fingerprint(old) {
					t.Errorf("RevokedKey(%s) = %+v, want alice, KeepLive %v", stagedoor.Fingerprint(old), r, tt.keep)
				}
			}
			mustOwner(t, db, bob.StreamKey)
			if _, err := db.RevokedKey(ctx, stagedoor.KeyDigest(bob.StreamKey)); !errors.Is(err, stagedoor.ErrNotFound) {
				t.Errorf("RevokedKey(bob's key) error = %v, want ErrNotFound", err)
			}
			keys, err := db.Keys(ctx, "alice")
			if err != nil {
				t.Fatalf("Keys: %v", err)
			}
			if len(keys) != 1 || keys[0].Fingerprint != k.Fingerprint {
				t.Errorf("Keys after reset = %+v, want only %s", keys, k.Fingerprint)
			}
			var rotated int
			for _, e := range outboxRows(t, db) {
				if e == (outboxRow{stagedoor.EventKeyRotated, "alice", "alice"}) {
					rotated++
				}
			}
			if rotated != 1 {
				t.Errorf("key.rotated events for alice = %d, want 1", rotated)
			}
		})
	}
}

func TestResetKeysWithUnknownUserChangesNothing(t *testing.T) {
	db := mustOpen(t)
	alice := mustCreate(t, db, "alice")
	gen, events := policyGen(t, db), len(outboxRows(t, db))
	k, err := db.ResetKeysWith(t.Context(), "nobody", stagedoor.Revocation{KeepLive: true})
	if !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("ResetKeysWith(unknown) error = %v, want ErrNotFound", err)
	}
	if k.StreamKey != "" {
		t.Error("ResetKeysWith(unknown) returned a key")
	}
	mustOwner(t, db, alice.StreamKey)
	if got := keyCount(t, db); got != 1 {
		t.Errorf("stream keys = %d, want 1", got)
	}
	if got := len(outboxRows(t, db)); got != events {
		t.Errorf("outbox = %d events, want %d", got, events)
	}
	if got := policyGen(t, db); got != gen {
		t.Errorf("policy generation = %d, want %d", got, gen)
	}
}

func TestResetAllKeysKeepLive(t *testing.T) {
	for _, tt := range []struct {
		name string
		keep bool
	}{
		{"KickRecorded", false},
		{"KeepLiveRecorded", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := mustOpen(t)
			ctx := t.Context()
			alice := mustCreate(t, db, "alice")
			backup := mustAddKey(t, db, "alice", "backup")
			bob := mustCreate(t, db, "bobby")
			if err := db.SetActive(ctx, "bobby", false); err != nil {
				t.Fatalf("ban: %v", err)
			}

			keys, err := db.ResetAllKeys(ctx, stagedoor.Revocation{KeepLive: tt.keep})
			if err != nil {
				t.Fatalf("ResetAllKeys: %v", err)
			}
			if len(keys) != 2 || keys[0].UserName != "alice" || keys[1].UserName != "bobby" {
				t.Fatalf("ResetAllKeys = %+v, want one key each for alice, bobby", keys)
			}
			for _, old := range []string{alice.StreamKey, backup.StreamKey, bob.StreamKey} {
				keyGone(t, db, old)
				r, err := db.RevokedKey(ctx, stagedoor.KeyDigest(old))
				if err != nil {
					t.Fatalf("RevokedKey(%s): %v", stagedoor.Fingerprint(old), err)
				}
				if r.KeepLive != tt.keep {
					t.Errorf("RevokedKey(%s).KeepLive = %v, want %v", stagedoor.Fingerprint(old), r.KeepLive, tt.keep)
				}
			}
			if o := mustOwner(t, db, keys[1].StreamKey); o.UserID != bob.ID || o.Active {
				t.Errorf("bobby's new key owner = %+v, want banned bobby (reset does not unban)", o)
			}
			if got := keyCount(t, db); got != 2 {
				t.Errorf("stream keys = %d, want 2", got)
			}
		})
	}
}

func TestResetAllKeysNoUsers(t *testing.T) {
	db := mustOpen(t)
	keys, err := db.ResetAllKeys(t.Context(), stagedoor.Revocation{})
	if err != nil {
		t.Fatalf("ResetAllKeys: %v", err)
	}
	if len(keys) != 0 {
		t.Errorf("ResetAllKeys on an empty database = %d keys, want 0", len(keys))
	}
	if got := len(outboxRows(t, db)); got != 0 {
		t.Errorf("outbox = %d events, want 0", got)
	}
}

func TestResetAllKeys10k(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 users take seconds under -race; run without -short")
	}
	const n = 10000
	db := mustOpen(t)
	ctx := t.Context()
	old := seedUsers(t, db, n)

	keys, err := db.ResetAllKeys(ctx, stagedoor.Revocation{})
	if err != nil {
		t.Fatalf("ResetAllKeys: %v", err)
	}
	if len(keys) != n {
		t.Fatalf("ResetAllKeys returned %d keys, want %d", len(keys), n)
	}
	// Ordered by user, one per user, each new, well-formed and fingerprinted.
	for i, k := range keys {
		if want := fmt.Sprintf("user%05d", i); k.UserName != want {
			t.Fatalf("keys[%d].UserName = %q, want %q", i, k.UserName, want)
		}
		if !stagedoor.IsKey(k.StreamKey) || k.StreamKey == old[i] || k.Fingerprint != stagedoor.Fingerprint(k.StreamKey) {
			t.Fatalf("keys[%d] is malformed, unchanged or mis-fingerprinted", i)
		}
	}

	// Every new key verifies: the stored digests are exactly those of the new keys, each
	// owned by its user.
	owner := make(map[stagedoor.Digest]string, n)
	rows, err := db.SQLForTest().QueryContext(ctx, `SELECT k.digest, u.name FROM stream_keys k JOIN users u ON u.id = k.user_id`)
	if err != nil {
		t.Fatalf("read stream_keys: %v", err)
	}
	for rows.Next() {
		var (
			b    []byte
			name string
			d    stagedoor.Digest
		)
		if err := rows.Scan(&b, &name); err != nil {
			t.Fatalf("read stream_keys: %v", err)
		}
		copy(d[:], b)
		owner[d] = name
	}
	rows.Close()
	if len(owner) != n {
		t.Fatalf("stream keys = %d, want %d", len(owner), n)
	}
	for i, k := range keys {
		if got := owner[stagedoor.KeyDigest(k.StreamKey)]; got != k.UserName {
			t.Fatalf("new key %d is owned by %q, want %q", i, got, k.UserName)
		}
	}

	// Every old key is revoked: none is left among the keys, all are in revoked_keys.
	if got := countRows(t, db, `SELECT count(*) FROM revoked_keys WHERE keep_live = 0`); got != n {
		t.Errorf("revoked keys = %d, want %d", got, n)
	}
	if got := countRows(t, db, `SELECT count(*) FROM stream_keys k JOIN revoked_keys r ON r.digest = k.digest`); got != 0 {
		t.Errorf("keys both live and revoked = %d, want 0", got)
	}
	for _, i := range []int{0, 1, 997, 4999, 5000, 8191, n - 2, n - 1} {
		keyGone(t, db, old[i])
		r, err := db.RevokedKey(ctx, stagedoor.KeyDigest(old[i]))
		if err != nil {
			t.Fatalf("RevokedKey(old key %d): %v", i, err)
		}
		if want := fmt.Sprintf("user%05d", i); r.UserName != want || r.KeepLive {
			t.Errorf("RevokedKey(old key %d) = %+v, want %s without keep-live", i, r, want)
		}
		if o := mustOwner(t, db, keys[i].StreamKey); o.UserName != keys[i].UserName {
			t.Errorf("new key %d owner = %q, want %q", i, o.UserName, keys[i].UserName)
		}
	}

	// One key.rotated event per user.
	if got := countRows(t, db, `SELECT count(*) FROM outbox WHERE event = ?`, stagedoor.EventKeyRotated); got != n {
		t.Errorf("key.rotated events = %d, want %d", got, n)
	}
	if got := countRows(t, db, `SELECT count(DISTINCT username) FROM outbox WHERE event = ? AND channel = username`,
		stagedoor.EventKeyRotated); got != n {
		t.Errorf("users with a key.rotated event = %d, want %d", got, n)
	}
}

func TestSetActiveEventsOnlyOnChange(t *testing.T) {
	db := mustOpen(t)
	ctx := t.Context()
	mustCreate(t, db, "alice")
	for _, active := range []bool{false, false, true, true} {
		if err := db.SetActive(ctx, "alice", active); err != nil {
			t.Fatalf("SetActive(%v): %v", active, err)
		}
	}
	if err := db.SetActive(ctx, "nobody", false); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("SetActive(unknown) error = %v, want ErrNotFound", err)
	}
	want := []outboxRow{{stagedoor.EventUserBanned, "alice", "alice"}, {stagedoor.EventUserUnbanned, "alice", "alice"}}
	if got := outboxRows(t, db); !reflect.DeepEqual(got, want) {
		t.Errorf("events = %+v, want %+v (ban twice, unban twice)", got, want)
	}
}

// policyFixture is a database with alice (default key plus a backup key, a stream) and a
// live channel, on which a step is measured against the policy generation.
type policyFixture struct {
	db     *store.DB
	alice  stagedoor.NewUser
	backup stagedoor.IssuedKey
}

func TestPolicyGeneration(t *testing.T) {
	for _, tt := range []struct {
		name  string
		setup func(ctx context.Context, f policyFixture) error
		step  func(ctx context.Context, f policyFixture) error
		want  bool // the generation changes
	}{
		{"BanChanges", nil, func(ctx context.Context, f policyFixture) error { return f.db.SetActive(ctx, "alice", false) }, true},
		{"UnbanChanges", func(ctx context.Context, f policyFixture) error { return f.db.SetActive(ctx, "alice", false) },
			func(ctx context.Context, f policyFixture) error { return f.db.SetActive(ctx, "alice", true) }, true},
		{"BanOfBannedUserUnchanged", func(ctx context.Context, f policyFixture) error { return f.db.SetActive(ctx, "alice", false) },
			func(ctx context.Context, f policyFixture) error { return f.db.SetActive(ctx, "alice", false) }, false},
		{"PasswordChanges", nil, func(ctx context.Context, f policyFixture) error { return f.db.SetPasswordHash(ctx, "alice", testHash) }, true},
		{"KeyAddChanges", nil, func(ctx context.Context, f policyFixture) error {
			_, err := f.db.AddKey(ctx, "alice", "more")
			return err
		}, true},
		{"KeyRevokeChanges", nil, func(ctx context.Context, f policyFixture) error {
			return f.db.RevokeKey(ctx, "alice", f.backup.Fingerprint, stagedoor.Revocation{})
		}, true},
		{"KeyResetChanges", nil, func(ctx context.Context, f policyFixture) error {
			_, err := f.db.ResetKeysWith(ctx, "alice", stagedoor.Revocation{KeepLive: true})
			return err
		}, true},
		{"ResetAllChanges", nil, func(ctx context.Context, f policyFixture) error {
			_, err := f.db.ResetAllKeys(ctx, stagedoor.Revocation{})
			return err
		}, true},
		{"StreamDeleteChanges", nil, func(ctx context.Context, f policyFixture) error { return f.db.DeleteStream(ctx, "alices_show") }, true},
		{"SetLiveUnchanged", nil, func(ctx context.Context, f policyFixture) error {
			return f.db.SetLive(ctx, stagedoor.LiveState{Name: "alices_show", UserID: f.alice.ID, UserName: "alice",
				SourceID: "src-b", SourceType: "rtmpConn"})
		}, false},
		{"SetOfflineUnchanged", nil, func(ctx context.Context, f policyFixture) error {
			_, err := f.db.SetOffline(ctx, "alice", "src-a")
			return err
		}, false},
		{"ClearLiveUnchanged", nil, func(ctx context.Context, f policyFixture) error { return f.db.ClearLive(ctx) }, false},
		{"AppendAuditUnchanged", nil, func(ctx context.Context, f policyFixture) error {
			return f.db.AppendAudit(ctx, []stagedoor.AuditEntry{{At: time.Now(), Kind: "publish", User: "alice", Decision: "deny"}})
		}, false},
		{"TouchKeyUnchanged", nil, func(ctx context.Context, f policyFixture) error {
			o, err := f.db.UserByKeyDigest(ctx, stagedoor.KeyDigest(f.alice.StreamKey))
			if err != nil {
				return err
			}
			return f.db.TouchKey(ctx, o.KeyID)
		}, false},
		{"AddEventUnchanged", nil, func(ctx context.Context, f policyFixture) error {
			return f.db.AddEvent(ctx, stagedoor.EventStreamStarted, "alice", "alice")
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := mustOpen(t)
			f := policyFixture{db: db, alice: mustCreate(t, db, "alice")}
			f.backup = mustAddKey(t, db, "alice", "backup")
			mustStream(t, db, "alices_show", "alice", true)
			if err := db.SetLive(t.Context(), stagedoor.LiveState{Name: "alice", UserID: f.alice.ID, UserName: "alice",
				SourceID: "src-a", SourceType: "rtmpConn"}); err != nil {
				t.Fatalf("SetLive: %v", err)
			}
			if tt.setup != nil {
				if err := tt.setup(t.Context(), f); err != nil {
					t.Fatalf("setup: %v", err)
				}
			}
			before := policyGen(t, db)
			if err := tt.step(t.Context(), f); err != nil {
				t.Fatalf("step: %v", err)
			}
			if got := policyGen(t, db) != before; got != tt.want {
				t.Errorf("generation changed = %v, want %v (was %d, now %d)", got, tt.want, before, policyGen(t, db))
			}
		})
	}
}

func TestLiveEvents(t *testing.T) {
	db := mustOpen(t)
	ctx := t.Context()
	alice := mustCreate(t, db, "alice")
	mustStream(t, db, "alices_show", "alice", true)
	live := func(name, source string) {
		t.Helper()
		if err := db.SetLive(ctx, stagedoor.LiveState{Name: name, UserID: alice.ID, UserName: "alice",
			SourceID: source, SourceType: "rtmpConn"}); err != nil {
			t.Fatalf("SetLive(%s, %s): %v", name, source, err)
		}
	}
	offline := func(name, source string, want bool) {
		t.Helper()
		changed, err := db.SetOffline(ctx, name, source)
		if err != nil {
			t.Fatalf("SetOffline(%s, %q): %v", name, source, err)
		}
		if changed != want {
			t.Errorf("SetOffline(%s, %q) = %v, want %v", name, source, changed, want)
		}
	}
	started := outboxRow{stagedoor.EventStreamStarted, "alice", "alice"}
	stopped := outboxRow{stagedoor.EventStreamStopped, "alice", "alice"}

	for _, step := range []struct {
		name string
		do   func()
		want []outboxRow // the whole outbox after the step
	}{
		{"GoingLiveQueuesStarted", func() { live("alice", "src-a") }, []outboxRow{started}},
		{"SameSourceAgainQueuesNothing", func() { live("alice", "src-a") }, []outboxRow{started}},
		{"ReconnectQueuesNothing", func() { live("alice", "src-b") }, []outboxRow{started}},
		{"StaleSourceOfflineQueuesNothing", func() { offline("alice", "src-a", false) }, []outboxRow{started}},
		{"OfflineQueuesStopped", func() { offline("alice", "src-b", true) }, []outboxRow{started, stopped}},
		{"OfflineAgainQueuesNothing", func() { offline("alice", "", false) }, []outboxRow{started, stopped}},
		{"LiveAgainQueuesStarted", func() { live("alice", "src-c") }, []outboxRow{started, stopped, started}},
	} {
		step.do()
		if got := outboxRows(t, db); !reflect.DeepEqual(got, step.want) {
			t.Errorf("%s: outbox = %+v, want %+v", step.name, got, step.want)
		}
	}
}

func TestClearLiveQueuesStoppedPerName(t *testing.T) {
	db := mustOpen(t)
	ctx := t.Context()
	alice := mustCreate(t, db, "alice")
	bob := mustCreate(t, db, "bobby")
	mustStream(t, db, "alices_show", "alice", true)
	for _, l := range []stagedoor.LiveState{
		{Name: "alice", UserID: alice.ID, UserName: "alice", SourceID: "s1", SourceType: "rtmpConn"},
		{Name: "alices_show", UserID: alice.ID, UserName: "alice", SourceID: "s2", SourceType: "rtmpConn"},
		{Name: "bobby", UserID: bob.ID, UserName: "bobby", SourceID: "s3", SourceType: "webRTCSession"},
	} {
		if err := db.SetLive(ctx, l); err != nil {
			t.Fatalf("SetLive(%s): %v", l.Name, err)
		}
	}
	if _, err := db.SQLForTest().ExecContext(ctx, `DELETE FROM outbox`); err != nil {
		t.Fatalf("empty outbox: %v", err)
	}

	if err := db.ClearLive(ctx); err != nil {
		t.Fatalf("ClearLive: %v", err)
	}
	ls, err := db.LiveStates(ctx)
	if err != nil {
		t.Fatalf("LiveStates: %v", err)
	}
	if len(ls) != 0 {
		t.Errorf("LiveStates after ClearLive = %d, want 0", len(ls))
	}
	got := map[outboxRow]int{}
	for _, e := range outboxRows(t, db) {
		got[e]++
	}
	want := map[outboxRow]int{
		{stagedoor.EventStreamStopped, "alice", "alice"}:       1,
		{stagedoor.EventStreamStopped, "alice", "alices_show"}: 1,
		{stagedoor.EventStreamStopped, "bobby", "bobby"}:       1,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events after ClearLive = %v, want %v", got, want)
	}

	if err := db.ClearLive(ctx); err != nil {
		t.Fatalf("ClearLive again: %v", err)
	}
	if got := len(outboxRows(t, db)); got != 3 {
		t.Errorf("outbox after a second ClearLive = %d events, want 3 (nothing was live)", got)
	}
}

func TestLiveStateKeyDigest(t *testing.T) {
	db := mustOpen(t)
	ctx := t.Context()
	alice := mustCreate(t, db, "alice")
	mustStream(t, db, "alices_show", "alice", true)
	o := mustOwner(t, db, alice.StreamKey)
	d := stagedoor.KeyDigest(alice.StreamKey)
	for _, l := range []stagedoor.LiveState{
		{Name: "alice", UserID: alice.ID, UserName: "alice", KeyID: o.KeyID, KeyDigest: &d, SourceID: "s1", SourceType: "rtmpConn"},
		{Name: "alices_show", UserID: alice.ID, UserName: "alice", SourceID: "s2", SourceType: "rtmpConn"},
	} {
		if err := db.SetLive(ctx, l); err != nil {
			t.Fatalf("SetLive(%s): %v", l.Name, err)
		}
	}
	check := func(when string, wantKeyID int64) {
		t.Helper()
		ls, err := db.LiveStates(ctx)
		if err != nil {
			t.Fatalf("LiveStates: %v", err)
		}
		if len(ls) != 2 {
			t.Fatalf("%s: LiveStates = %d, want 2", when, len(ls))
		}
		if ls[0].Name != "alice" || ls[0].KeyDigest == nil || *ls[0].KeyDigest != d || ls[0].KeyID != wantKeyID {
			t.Errorf("%s: alice = %+v, want key id %d and the key's digest", when, ls[0], wantKeyID)
		}
		if ls[1].Name != "alices_show" || ls[1].KeyDigest != nil || ls[1].KeyID != 0 {
			t.Errorf("%s: alices_show = %+v, want no key", when, ls[1])
		}
		l, err := db.LiveByName(ctx, "alice")
		if err != nil {
			t.Fatalf("LiveByName: %v", err)
		}
		if l.KeyDigest == nil || *l.KeyDigest != d {
			t.Errorf("%s: LiveByName(alice).KeyDigest = %v, want the key's digest", when, l.KeyDigest)
		}
	}
	check("live", o.KeyID)
	if err := db.RevokeKey(ctx, "alice", alice.Fingerprint, stagedoor.Revocation{}); err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	// The key row is gone (key_id is set null) but the digest still names the stream.
	check("after revocation", 0)
}

func TestAudit(t *testing.T) {
	db := mustOpen(t)
	ctx := t.Context()
	base := time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)
	entries := []stagedoor.AuditEntry{
		{At: base, Kind: "publish", User: "alice", KeyFP: "aaaa0001", IP: "10.0.0.1", Protocol: "rtmp", Decision: "allow", Reason: "a0"},
		{At: base.Add(time.Minute), Kind: "publish", User: "bobby", Decision: "deny", Reason: "b1"},
		{At: base.Add(2 * time.Minute), Kind: "kick", User: "alice", Decision: "ok", Reason: "a2"},
		{At: base.Add(2 * time.Minute), Kind: "admin", User: "alice", Decision: "ok", Reason: "a2bis"},
		{At: base.Add(3 * time.Minute), Kind: "webhook", User: "bobby", Decision: "retry", Reason: "b3"},
	}
	if err := db.AppendAudit(ctx, entries); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if err := db.AppendAudit(ctx, nil); err != nil {
		t.Errorf("AppendAudit(nil) = %v, want nil", err)
	}

	for _, tt := range []struct {
		name string
		f    stagedoor.AuditFilter
		want []string // reasons, newest first
	}{
		{"AllNewestFirst", stagedoor.AuditFilter{}, []string{"b3", "a2bis", "a2", "b1", "a0"}},
		{"ByUser", stagedoor.AuditFilter{User: "alice"}, []string{"a2bis", "a2", "a0"}},
		{"UnknownUserEmpty", stagedoor.AuditFilter{User: "nobody"}, []string{}},
		{"SinceInclusive", stagedoor.AuditFilter{Since: base.Add(2 * time.Minute)}, []string{"b3", "a2bis", "a2"}},
		{"SinceFutureEmpty", stagedoor.AuditFilter{Since: base.Add(time.Hour)}, []string{}},
		{"Limit", stagedoor.AuditFilter{Limit: 2}, []string{"b3", "a2bis"}},
		{"UserSinceLimit", stagedoor.AuditFilter{User: "alice", Since: base.Add(time.Second), Limit: 1}, []string{"a2bis"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			es, err := db.Audit(ctx, tt.f)
			if err != nil {
				t.Fatalf("Audit: %v", err)
			}
			got := []string{}
			for _, e := range es {
				got = append(got, e.Reason)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Audit(%+v) = %v, want %v", tt.f, got, tt.want)
			}
		})
	}

	es, err := db.Audit(ctx, stagedoor.AuditFilter{User: "alice", Limit: 100})
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	if got, want := es[len(es)-1], entries[0]; got != want {
		t.Errorf("oldest entry = %+v, want %+v (every field round-trips)", got, want)
	}
}

func TestPruneAudit(t *testing.T) {
	db := mustOpen(t)
	ctx := t.Context()
	cut := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var entries []stagedoor.AuditEntry
	for i, at := range []time.Time{cut.Add(-48 * time.Hour), cut.Add(-time.Second), cut, cut.Add(time.Hour)} {
		entries = append(entries, stagedoor.AuditEntry{At: at, Kind: "publish", Reason: fmt.Sprint(i)})
	}
	if err := db.AppendAudit(ctx, entries); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	n, err := db.PruneAudit(ctx, cut)
	if err != nil {
		t.Fatalf("PruneAudit: %v", err)
	}
	if n != 2 {
		t.Errorf("PruneAudit = %d, want 2", n)
	}
	es, err := db.Audit(ctx, stagedoor.AuditFilter{})
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Reason)
	}
	if want := []string{"3", "2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("entries left = %v, want %v (at or after the cut)", got, want)
	}
	if n, err := db.PruneAudit(ctx, cut); err != nil || n != 0 {
		t.Errorf("PruneAudit again = %d, %v, want 0, nil", n, err)
	}
}

func dueIDs(t *testing.T, db *store.DB, limit int) []int64 {
	t.Helper()
	evs, err := db.DueEvents(t.Context(), limit)
	if err != nil {
		t.Fatalf("DueEvents: %v", err)
	}
	ids := []int64{}
	for _, e := range evs {
		ids = append(ids, e.ID)
	}
	return ids
}

func TestOutbox(t *testing.T) {
	db := mustOpen(t)
	ctx := t.Context()
	clock := &fakeClock{now: time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)}
	db.Now = clock.Now
	start := clock.now
	for _, e := range [][2]string{{"alice", "alice"}, {"alice", "alices_show"}, {"bobby", "bobby"}} {
		if err := db.AddEvent(ctx, stagedoor.EventStreamStarted, e[0], e[1]); err != nil {
			t.Fatalf("AddEvent: %v", err)
		}
	}
	evs, err := db.DueEvents(ctx, 10)
	if err != nil {
		t.Fatalf("DueEvents: %v", err)
	}
	if len(evs) != 3 {
		t.Fatalf("DueEvents = %d, want 3", len(evs))
	}
	want := stagedoor.OutboxEvent{ID: evs[1].ID, At: start, Event: stagedoor.EventStreamStarted, User: "alice", Channel: "alices_show"}
	if evs[1] != want {
		t.Errorf("DueEvents[1] = %+v, want %+v", evs[1], want)
	}
	a, b, c := evs[0].ID, evs[1].ID, evs[2].ID
	if !(a < b && b < c) {
		t.Errorf("DueEvents ids = %d, %d, %d, want oldest first", a, b, c)
	}
	if got := dueIDs(t, db, 2); !reflect.DeepEqual(got, []int64{a, b}) {
		t.Errorf("DueEvents(limit 2) = %v, want %v", got, []int64{a, b})
	}

	if err := db.FinishEvent(ctx, a); err != nil {
		t.Fatalf("FinishEvent: %v", err)
	}
	if err := db.RetryEvent(ctx, b, 30*time.Second); err != nil {
		t.Fatalf("RetryEvent: %v", err)
	}
	for _, step := range []struct {
		name    string
		advance time.Duration
		want    []int64
	}{
		{"RetriedNotDueAtOnce", 0, []int64{c}},
		{"RetriedNotDueBeforeDelay", 29 * time.Second, []int64{c}},
		{"RetriedDueAfterDelay", time.Second, []int64{b, c}},
		{"FinishedNeverDue", 24 * time.Hour, []int64{b, c}},
	} {
		clock.now = clock.now.Add(step.advance)
		if got := dueIDs(t, db, 10); !reflect.DeepEqual(got, step.want) {
			t.Errorf("%s: due = %v, want %v", step.name, got, step.want)
		}
	}
	evs, err = db.DueEvents(ctx, 10)
	if err != nil {
		t.Fatalf("DueEvents: %v", err)
	}
	if evs[0].ID != b || evs[0].Attempts != 1 || evs[1].Attempts != 0 {
		t.Errorf("attempts = %d (retried), %d (fresh), want 1, 0", evs[0].Attempts, evs[1].Attempts)
	}
	if got := countRows(t, db, `SELECT attempts FROM outbox WHERE id = ?`, a); got != 1 {
		t.Errorf("finished event attempts = %d, want 1", got)
	}

	// PruneEvents deletes finished events older than the cut only; pending ones stay.
	if err := db.FinishEvent(ctx, c); err != nil {
		t.Fatalf("FinishEvent: %v", err)
	}
	if err := db.AddEvent(ctx, stagedoor.EventUserBanned, "bobby", "bobby"); err != nil { // at start+24h30s
		t.Fatalf("AddEvent: %v", err)
	}
	d := dueIDs(t, db, 10)[1]
	if err := db.FinishEvent(ctx, d); err != nil {
		t.Fatalf("FinishEvent: %v", err)
	}
	if err := db.PruneEvents(ctx, start.Add(time.Hour)); err != nil {
		t.Fatalf("PruneEvents: %v", err)
	}
	var left []int64
	rows, err := db.SQLForTest().QueryContext(ctx, `SELECT id FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatalf("read outbox: %v", err)
		}
		left = append(left, id)
	}
	rows.Close()
	if want := []int64{b, d}; !reflect.DeepEqual(left, want) {
		t.Errorf("outbox after PruneEvents = %v, want %v (old pending and new finished kept)", left, want)
	}
}
