package store_test

import (
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/store"
	"github.com/stagedoor/stagedoor/store/storetest"
)

// *DB is a backend: it has every method of the contract.
var _ storetest.Store = (*store.DB)(nil)

// TestConformance runs the backend conformance suite on real SQLite files, one per case.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) storetest.Store {
		db := testutil.MustOpenDB(t)
		db.Now = now
		return db
	})
}
