package store_test

import (
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testdb"

	"github.com/stagedoor/stagedoor/store"
	"github.com/stagedoor/stagedoor/store/storetest"
)

// *DB is a backend: it has every method of the contract.
var _ storetest.Store = (*store.DB)(nil)

// TestConformance runs the backend conformance suite on both backends, a fresh database
// per case: real SQLite files (TestConformance/sqlite) and schemas of a real PostgreSQL
// (TestConformance/postgres). On SQLite, after each case, and so after the concurrent
// soak too, every connection the case left in the pool still has the pragmas Open set
// (TestOpenPragmasOnEveryConnection fills the whole pool of a fresh database; doing that
// after every case would double the run).
func TestConformance(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T, now func() time.Time) storetest.Store {
			db := testdb.MustOpen(t)
			db.Now = now
			// Registered after MustOpen's Close, so it runs before it.
			t.Cleanup(func() { checkPoolPragmas(t, db, max(db.SQLForTest().Stats().OpenConnections, 1)) })
			return db
		})
	})
	t.Run("postgres", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T, now func() time.Time) storetest.Store {
			db := testdb.MustOpenPostgres(t)
			db.Now = now
			return db
		})
	})
}
