package store_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/store"
)

// seedUsers inserts n active users named user00000, user00001, … each with one key
// labelled "default", in one transaction: CreateUser takes a transaction per user, which
// is too slow for 10,000 users under -race. Keys go in with multi-row inserts for the same
// reason. It returns the keys in user-name order.
func seedUsers(tb testing.TB, db *store.DB, n int) []string {
	tb.Helper()
	ctx := tb.Context()
	tx, err := db.SQLForTest().BeginTx(ctx, nil)
	if err != nil {
		tb.Fatalf("begin: %v", err)
	}
	defer func() { _ = tx.Rollback() }()
	now := db.Now().Unix()
	if _, err := tx.ExecContext(ctx, `WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < ?)
		INSERT INTO users (name, active, created_at) SELECT printf('user%05d', i), 1, ? FROM seq`, n, now); err != nil {
		tb.Fatalf("insert users: %v", err)
	}
	ids := make(map[string]int64, n)
	rows, err := tx.QueryContext(ctx, `SELECT id, name FROM users`)
	if err != nil {
		tb.Fatalf("read users: %v", err)
	}
	for rows.Next() {
		var (
			id   int64
			name string
		)
		if err := rows.Scan(&id, &name); err != nil {
			tb.Fatalf("read users: %v", err)
		}
		ids[name] = id
	}
	rows.Close()
	if len(ids) != n {
		tb.Fatalf("seeded %d users, want %d", len(ids), n)
	}

	const batch = 500
	keys := make([]string, n)
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		q := strings.Builder{}
		q.WriteString(`INSERT INTO stream_keys (user_id, digest, fingerprint, label, created_at) VALUES `)
		args := make([]any, 0, 4*(hi-lo))
		for i := lo; i < hi; i++ {
			if i > lo {
				q.WriteString(", ")
			}
			q.WriteString(`(?, ?, ?, 'default', ?)`)
			keys[i] = stagedoor.NewKey()
			d := stagedoor.KeyDigest(keys[i])
			args = append(args, ids[fmt.Sprintf("user%05d", i)], d[:], d.Fingerprint(), now)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			tb.Fatalf("insert keys %d to %d: %v", lo, hi, err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatalf("commit: %v", err)
	}
	return keys
}

// BenchmarkResetAllKeys10k is the breach response on 10,000 users: one transaction that
// revokes every key, issues one new key per user and queues one key.rotated event each.
// Between iterations (timer stopped) the revoked keys and events of the previous one are
// removed, so every iteration starts from the same table sizes.
func BenchmarkResetAllKeys10k(b *testing.B) {
	ctx := b.Context()
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "stagedoor.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const users = 10000
	seedUsers(b, db, users)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		if _, err := db.SQLForTest().ExecContext(ctx, `DELETE FROM revoked_keys`); err != nil {
			b.Fatal(err)
		}
		if _, err := db.SQLForTest().ExecContext(ctx, `DELETE FROM outbox`); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		keys, err := db.ResetAllKeys(ctx, stagedoor.Revocation{})
		if err != nil {
			b.Fatal(err)
		}
		if len(keys) != users {
			b.Fatalf("ResetAllKeys returned %d keys, want %d", len(keys), users)
		}
	}
}
