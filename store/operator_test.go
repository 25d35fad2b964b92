package store_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testdb"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/store"
)

// countRows runs a count(*) query.
func countRows(t *testing.T, db *store.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.SQLForTest().QueryRowContext(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestResetAllKeys10k is the breach response at scale: 10,000 users seeded through SQL
// (seedUsers; CreateUser one by one is too slow under -race), so it is SQLite's own. The
// conformance suite checks the same behaviour on a few users.
func TestResetAllKeys10k(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 users take seconds under -race; run without -short")
	}
	const n = 10000
	db := testdb.MustOpen(t)
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
		if _, err := db.UserByKeyDigest(ctx, stagedoor.KeyDigest(old[i])); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("UserByKeyDigest(old key %d) error = %v, want ErrNotFound", i, err)
		}
		r, err := db.RevokedKey(ctx, stagedoor.KeyDigest(old[i]))
		if err != nil {
			t.Fatalf("RevokedKey(old key %d): %v", i, err)
		}
		if want := fmt.Sprintf("user%05d", i); r.UserName != want || r.KeepLive {
			t.Errorf("RevokedKey(old key %d) = %+v, want %s without keep-live", i, r, want)
		}
		o, err := db.UserByKeyDigest(ctx, stagedoor.KeyDigest(keys[i].StreamKey))
		if err != nil || o.UserName != keys[i].UserName {
			t.Errorf("new key %d owner = %+v, %v; want %q", i, o, err, keys[i].UserName)
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

// TestOutboxRowsAfterFinishAndPrune checks what no method returns: a finished event
// counts its attempt, and PruneEvents deletes exactly the finished events older than the
// cut, keeping pending ones however old and finished ones newer than the cut. (The suite
// checks what shows through DueEvents.) On both backends.
func TestOutboxRowsAfterFinishAndPrune(t *testing.T) {
	testdb.Each(t, func(t *testing.T, b testdb.Backend) { outboxRowsAfterFinishAndPrune(t, b.Open(t)) })
}

func outboxRowsAfterFinishAndPrune(t *testing.T, db *store.DB) {
	ctx := t.Context()
	clock := testutil.NewClock(time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC))
	db.Now = clock.Now
	start := clock.Now()
	for range 3 {
		if err := db.AddEvent(ctx, stagedoor.EventStreamStarted, "alice", "alice"); err != nil {
			t.Fatalf("AddEvent: %v", err)
		}
	}
	evs, err := db.DueEvents(ctx, 10)
	if err != nil || len(evs) != 3 {
		t.Fatalf("DueEvents = %d, %v; want 3", len(evs), err)
	}
	a, b, c := evs[0].ID, evs[1].ID, evs[2].ID
	if err := db.FinishEvent(ctx, a); err != nil {
		t.Fatalf("FinishEvent: %v", err)
	}
	if err := db.RetryEvent(ctx, b, 30*time.Second); err != nil {
		t.Fatalf("RetryEvent: %v", err)
	}
	if got := countRows(t, db, `SELECT attempts FROM outbox WHERE id = $1`, a); got != 1 {
		t.Errorf("finished event attempts = %d, want 1", got)
	}

	if err := db.FinishEvent(ctx, c); err != nil {
		t.Fatalf("FinishEvent: %v", err)
	}
	clock.Add(24 * time.Hour)
	if err := db.AddEvent(ctx, stagedoor.EventUserBanned, "bobby", "bobby"); err != nil {
		t.Fatalf("AddEvent: %v", err)
	}
	due, err := db.DueEvents(ctx, 10)
	if err != nil || len(due) != 2 || due[0].ID != b {
		t.Fatalf("DueEvents = %+v, %v; want b and the new event", due, err)
	}
	d := due[1].ID
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
