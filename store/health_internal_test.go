package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
)

// TestProbeWriteQueueVersusStuck: a probe kept waiting by a short in-process write is
// inconclusive (a busy queue is no fault); one kept waiting by a write that has held
// the turn past stuckWrite reports the database faulty; a free database takes the
// node lease.
func TestProbeWriteQueueVersusStuck(t *testing.T) {
	db, err := Open(t.Context(), filepath.Join(t.TempDir(), "stagedoor.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	if err := db.ProbeWrite(t.Context(), "host-a"); err != nil {
		t.Fatalf("ProbeWrite on a free database: %v", err)
	}
	var n int
	if err := db.db.QueryRowContext(t.Context(), `SELECT count(*) FROM nodes WHERE id = 'host-a'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("node rows for host-a = %d, %v; want 1", n, err)
	}

	unlock, err := db.lockWrite(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.ProbeWrite(t.Context(), "host-a"); !errors.Is(err, stagedoor.ErrProbeInconclusive) {
		t.Errorf("ProbeWrite behind a fresh write = %v, want ErrProbeInconclusive", err)
	}
	time.Sleep(time.Until(time.Unix(0, db.gateSince.Load()).Add(stuckWrite + 100*time.Millisecond)))
	err = db.ProbeWrite(t.Context(), "host-a")
	if err == nil || errors.Is(err, stagedoor.ErrProbeInconclusive) {
		t.Errorf("ProbeWrite behind a write stuck for %v = %v, want a fault", stuckWrite, err)
	}
	unlock()
	if err := db.ProbeWrite(t.Context(), "host-a"); err != nil {
		t.Errorf("ProbeWrite after the stuck write ended: %v", err)
	}
}
