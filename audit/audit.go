// Package audit records the audit trail without slowing the auth path: entries are
// queued in memory and written in batches, one transaction per batch.
package audit

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/stagedoor/stagedoor"
)

// Store writes and prunes the trail.
type Store interface {
	AppendAudit(ctx context.Context, entries []stagedoor.AuditEntry) error
	PruneAudit(ctx context.Context, before time.Time) (int64, error)
}

// Recorder batches audit entries. Record never blocks: when the queue is full the entry
// is dropped and counted (Dropped), because MediaMTX waits on the auth answer.
type Recorder struct {
	store  Store
	logger *slog.Logger
	ch     chan stagedoor.AuditEntry
	full   chan struct{} // a batch is waiting in ch
	// pending holds a signal while entries may wait in ch: the writer arms its flush
	// timer on it and leaves it unread until that flush, so an idle recorder never wakes
	// and a busy one wakes once per FlushEvery, not per entry.
	pending chan struct{}
	// Retention is how long entries are kept. Default 30 days; zero or less means the
	// default (never "prune everything").
	Retention time.Duration
	// FlushEvery bounds how long an entry waits in memory. Default 250 ms; zero or less
	// means the default.
	FlushEvery time.Duration

	dropped atomic.Int64
	written atomic.Int64
}

// NewRecorder returns a Recorder with a queue of queueSize entries.
func NewRecorder(st Store, logger *slog.Logger, queueSize int) *Recorder {
	return &Recorder{store: st, logger: logger.With("component", "audit"), ch: make(chan stagedoor.AuditEntry, queueSize),
		full: make(chan struct{}, 1), pending: make(chan struct{}, 1),
		Retention: 30 * 24 * time.Hour, FlushEvery: 250 * time.Millisecond}
}

// batchSize entries are written in one transaction.
const batchSize = 512

// Record queues e. It wakes the writer only when a whole batch is waiting: on the auth
// path, one wake-up per decision cost MediaMTX's admission rate more than the entry.
func (r *Recorder) Record(e stagedoor.AuditEntry) {
	select {
	case r.ch <- e:
		select {
		case r.pending <- struct{}{}:
		default:
		}
		if len(r.ch) >= batchSize {
			select {
			case r.full <- struct{}{}:
			default:
			}
		}
	default:
		r.dropped.Add(1)
	}
}

// Dropped is how many entries were lost to a full queue.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Written is how many entries reached the database.
func (r *Recorder) Written() int64 { return r.written.Load() }

// Run writes batches until ctx ends, then flushes what is queued; it prunes old entries
// hourly.
func (r *Recorder) Run(ctx context.Context) {
	if r.FlushEvery <= 0 {
		r.FlushEvery = 250 * time.Millisecond
	}
	if r.Retention <= 0 {
		r.Retention = 30 * 24 * time.Hour
	}
	// The flush timer runs only while entries wait (see pending).
	flush := time.NewTimer(r.FlushEvery)
	flush.Stop()
	defer flush.Stop()
	var flushC <-chan time.Time
	pending := r.pending
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	batch := make([]stagedoor.AuditEntry, 0, batchSize)
	// A batch is written to the end even when ctx ends meanwhile (shutdown): the
	// entries are already taken from the queue, and cancelling would lose them.
	write := func() {
		if len(batch) == 0 {
			return
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := r.store.AppendAudit(wctx, batch); err != nil {
			r.logger.Error("audit batch lost", "entries", len(batch), "err", err)
			r.dropped.Add(int64(len(batch)))
		} else {
			r.written.Add(int64(len(batch)))
		}
		batch = batch[:0]
	}
	// drain takes what is queued, writing each full batch; the rest stays in batch.
	drain := func() {
		for {
			select {
			case e := <-r.ch:
				batch = append(batch, e)
				if len(batch) >= batchSize {
					write()
				}
			default:
				return
			}
		}
	}
	r.pruneOld(ctx)
	for {
		select {
		case <-ctx.Done():
			drain()
			write()
			return
		case <-r.full:
			drain()
		case <-pending:
			flush.Reset(r.FlushEvery)
			flushC, pending = flush.C, nil
		case <-flushC:
			drain()
			write()
			flushC, pending = nil, r.pending
		case <-prune.C:
			r.pruneOld(ctx)
		}
	}
}

func (r *Recorder) pruneOld(ctx context.Context) {
	if n, err := r.store.PruneAudit(ctx, time.Now().Add(-r.Retention)); err != nil {
		r.logger.Warn("audit prune", "err", err)
	} else if n > 0 {
		r.logger.Info("audit pruned", "entries", n)
	}
}
