package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/store"
)

// BenchmarkUserByKeyDigest is the auth hot path's only database read, on a real SQLite
// file with 10,000 users.
func BenchmarkUserByKeyDigest(b *testing.B) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var key string
	for i := range 10000 {
		nu, err := db.CreateUser(ctx, fmt.Sprintf("user%05d", i))
		if err != nil {
			b.Fatal(err)
		}
		key = nu.StreamKey
	}
	for _, c := range []struct {
		name string
		d    stagedoor.Digest
	}{{"Hit", stagedoor.KeyDigest(key)}, {"Miss", stagedoor.KeyDigest(stagedoor.NewKey())}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = db.UserByKeyDigest(ctx, c.d)
			}
		})
	}
	b.Run("UserByName", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = db.UserByName(ctx, "user05000")
		}
	})
}
