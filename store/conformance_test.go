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

// TestConformance runs the backend conformance suite on real SQLite files, one per case.
// After each case, and so after the concurrent soak too, every connection the case left
// in the pool still has the pragmas Open set (TestOpenPragmasOnEveryConnection fills the
// whole pool of a fresh database; doing that after every case would double the run).
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) storetest.Store {
		db := testdb.MustOpen(t)
		db.Now = now
		// Registered after MustOpenDB's Close, so it runs before it.
		t.Cleanup(func() { checkPoolPragmas(t, db, max(db.SQLForTest().Stats().OpenConnections, 1)) })
		return db
	})
}
