package audit_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testdb"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/audit"
	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/store"
)

// start runs r until the returned stop is called (or the test ends); stop waits for Run
// to return.
func start(t *testing.T, r *audit.Recorder) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds, failing after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within 5 s", what)
		}
		<-tick.C
	}
}

// auditCount is how many entries the trail holds.
func auditCount(t *testing.T, db *store.DB) int {
	t.Helper()
	es, err := db.Audit(t.Context(), stagedoor.AuditFilter{Limit: 1 << 20})
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	return len(es)
}

func entry(i int) stagedoor.AuditEntry {
	return stagedoor.AuditEntry{At: time.Now(), Kind: "publish", User: "alice", KeyFP: "0123abcd", IP: "10.0.0.1",
		Protocol: "rtmp", Decision: "deny", Reason: fmt.Sprint("entry ", i)}
}

func TestRecordWritesEntries(t *testing.T) {
	db := testdb.MustOpen(t)
	r := audit.NewRecorder(db, testutil.Discard(), 100)
	r.FlushEvery = 10 * time.Millisecond
	start(t, r)
	for i := range 3 {
		r.Record(entry(i))
	}
	waitFor(t, "entries written", func() bool { return r.Written() == 3 })

	es, err := db.Audit(t.Context(), stagedoor.AuditFilter{User: "alice"})
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Reason)
	}
	if want := []string{"entry 2", "entry 1", "entry 0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("audit = %v, want %v", got, want)
	}
	if e, want := es[2], entry(0); e.Kind != want.Kind || e.KeyFP != want.KeyFP || e.IP != want.IP ||
		e.Protocol != want.Protocol || e.Decision != want.Decision {
		t.Errorf("stored entry = %+v, want the fields of %+v", e, want)
	}
	if n := r.Dropped(); n != 0 {
		t.Errorf("Dropped = %d, want 0", n)
	}
}

func TestFullBatchWrittenRestFlushedOnCancel(t *testing.T) {
	db := testdb.MustOpen(t)
	r := audit.NewRecorder(db, testutil.Discard(), 1000)
	r.FlushEvery = time.Hour // only a full batch or the end of Run writes
	stop := start(t, r)
	const n = 600
	for i := range n {
		r.Record(entry(i))
	}
	waitFor(t, "first full batch written", func() bool { return r.Written() > 0 })

	if got := r.Written(); got != 512 {
		t.Errorf("Written after the first batch = %d, want 512 (one full batch)", got)
	}
	if got := auditCount(t, db); got != 512 {
		t.Errorf("audit rows after the first batch = %d, want 512", got)
	}

	stop()
	if got := r.Written(); got != n {
		t.Errorf("Written after cancel = %d, want %d (queued entries flushed)", got, n)
	}
	if got := auditCount(t, db); got != n {
		t.Errorf("audit rows after cancel = %d, want %d", got, n)
	}
	if got := r.Dropped(); got != 0 {
		t.Errorf("Dropped = %d, want 0", got)
	}
}

func TestRecordNeverBlocksAndCountsOverflow(t *testing.T) {
	for _, tt := range []struct {
		name        string
		queue       int
		records     int
		wantDropped int64
	}{
		{"QueueOfOneDropsRest", 1, 5, 4},
		{"QueueExactlyFullDropsNothing", 3, 3, 0},
		{"QueueOfZeroDropsAll", 0, 2, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := testdb.MustOpen(t)
			r := audit.NewRecorder(db, testutil.Discard(), tt.queue)
			for i := range tt.records {
				r.Record(entry(i)) // Run is not started: a blocking Record would hang here
			}
			if got := r.Dropped(); got != tt.wantDropped {
				t.Errorf("Dropped = %d, want %d", got, tt.wantDropped)
			}
			stop := start(t, r)
			stop()
			kept := int64(tt.records) - tt.wantDropped
			if got := r.Written(); got != kept {
				t.Errorf("Written = %d, want %d (the queued entries)", got, kept)
			}
			if got := auditCount(t, db); int64(got) != kept {
				t.Errorf("audit rows = %d, want %d", got, kept)
			}
		})
	}
}

// faultStore is an audit.Store whose methods the test supplies.
type faultStore struct {
	appendAudit func(ctx context.Context, entries []stagedoor.AuditEntry) error
	pruneAudit  func(ctx context.Context, before time.Time) (int64, error)
}

func (f faultStore) AppendAudit(ctx context.Context, entries []stagedoor.AuditEntry) error {
	return f.appendAudit(ctx, entries)
}

func (f faultStore) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	return f.pruneAudit(ctx, before)
}

func TestStoreFaults(t *testing.T) {
	errDisk := errors.New("disk I/O error")
	for _, tt := range []struct {
		name                     string
		appendFails, pruneFails  bool
		wantWritten, wantDropped int64
	}{
		{"AppendFailureCountsDropped", true, false, 0, 3},
		{"PruneFailureStillWrites", false, true, 3, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := testdb.MustOpen(t)
			st := faultStore{
				appendAudit: db.AppendAudit,
				pruneAudit:  db.PruneAudit,
			}
			if tt.appendFails {
				st.appendAudit = func(context.Context, []stagedoor.AuditEntry) error { return errDisk }
			}
			if tt.pruneFails {
				st.pruneAudit = func(context.Context, time.Time) (int64, error) { return 0, errDisk }
			}
			r := audit.NewRecorder(st, testutil.Discard(), 10)
			r.FlushEvery = 10 * time.Millisecond
			start(t, r)
			for i := range 3 {
				r.Record(entry(i))
			}
			waitFor(t, "batch handled", func() bool { return r.Written()+r.Dropped() == 3 })
			if got := r.Written(); got != tt.wantWritten {
				t.Errorf("Written = %d, want %d", got, tt.wantWritten)
			}
			if got := r.Dropped(); got != tt.wantDropped {
				t.Errorf("Dropped = %d, want %d", got, tt.wantDropped)
			}
			if got := auditCount(t, db); int64(got) != tt.wantWritten {
				t.Errorf("audit rows = %d, want %d", got, tt.wantWritten)
			}
		})
	}
}

func TestPruneAtStart(t *testing.T) {
	day := 24 * time.Hour
	for _, tt := range []struct {
		name      string
		retention time.Duration // 0: NewRecorder's default
		ages      []time.Duration
		wantKept  []string
	}{
		{"DefaultKeeps30Days", 0, []time.Duration{31 * day, 29 * day, time.Hour}, []string{"age 2", "age 1"}},
		{"CustomRetention", 2 * day, []time.Duration{31 * day, 3 * day, day, time.Minute}, []string{"age 3", "age 2"}},
		{"NothingOld", 7 * day, []time.Duration{day, time.Minute}, []string{"age 1", "age 0"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := testdb.MustOpen(t)
			now := time.Now()
			var seed []stagedoor.AuditEntry
			for i, age := range tt.ages {
				seed = append(seed, stagedoor.AuditEntry{At: now.Add(-age), Kind: "publish", Reason: fmt.Sprint("age ", i)})
			}
			if err := db.AppendAudit(t.Context(), seed); err != nil {
				t.Fatalf("AppendAudit: %v", err)
			}
			r := audit.NewRecorder(db, testutil.Discard(), 10)
			if tt.retention != 0 {
				r.Retention = tt.retention
			}
			// Prune runs first in Run; a recorded entry written after it marks that it ran.
			r.FlushEvery = 10 * time.Millisecond
			r.Record(stagedoor.AuditEntry{At: now, Kind: "admin", Reason: "marker"})
			start(t, r)
			waitFor(t, "marker written", func() bool { return r.Written() == 1 })

			es, err := db.Audit(t.Context(), stagedoor.AuditFilter{})
			if err != nil {
				t.Fatalf("Audit: %v", err)
			}
			var got []string
			for _, e := range es {
				if e.Reason != "marker" {
					got = append(got, e.Reason)
				}
			}
			if !reflect.DeepEqual(got, tt.wantKept) {
				t.Errorf("entries left = %v, want %v", got, tt.wantKept)
			}
		})
	}
}
