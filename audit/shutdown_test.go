package audit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/audit"
	"github.com/stagedoor/stagedoor/internal/testutil"
)

// slowStore's first AppendAudit waits, as a write queued behind others for the store's
// write gate does, until released or until its context ends; it is a fault a real
// SQLite file cannot produce on demand.
type slowStore struct {
	mu      sync.Mutex
	calls   int
	entered chan struct{}
	release chan struct{}
	wrote   int
}

func (s *slowStore) AppendAudit(ctx context.Context, es []stagedoor.AuditEntry) error {
	s.mu.Lock()
	s.calls++
	first := s.calls == 1
	s.mu.Unlock()
	if first {
		close(s.entered)
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	s.wrote += len(es)
	s.mu.Unlock()
	return nil
}

func (s *slowStore) PruneAudit(context.Context, time.Time) (int64, error) { return 0, nil }

// TestBatchInFlightAtShutdownIsWritten: a clean shutdown while a batch waits for its
// write turn does not cancel that write; the entries land.
func TestBatchInFlightAtShutdownIsWritten(t *testing.T) {
	st := &slowStore{entered: make(chan struct{}), release: make(chan struct{})}
	r := audit.NewRecorder(st, testutil.Discard(), 100)
	r.FlushEvery = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	for range 10 {
		r.Record(stagedoor.AuditEntry{At: time.Now(), Kind: "publish"})
	}
	<-st.entered
	cancel() // clean shutdown while the flush waits
	select {
	case <-done:
		t.Fatal("Run returned while its last batch was still being written")
	case <-time.After(50 * time.Millisecond):
	}
	close(st.release)
	<-done
	if r.Written() != 10 || r.Dropped() != 0 || st.wrote != 10 {
		t.Errorf("after shutdown: written=%d dropped=%d stored=%d, want 10, 0, 10", r.Written(), r.Dropped(), st.wrote)
	}
}
