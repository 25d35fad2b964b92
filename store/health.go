package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stagedoor/stagedoor"
)

const (
	// probeGateWait is how long a probe waits for this process's write turn.
	probeGateWait = time.Second
	// stuckWrite is how long one write may hold the turn before the database counts as
	// faulty (a lock held by another process keeps our writer in SQLite's busy wait).
	stuckWrite = 2 * time.Second
)

// ProbeBusyTimeout bounds how long a health probe waits for the write lock, so that a
// database locked by another process reads as unhealthy in about a second instead of
// after BusyTimeout.
const ProbeBusyTimeout = 1000

// openProbe opens the one-connection pool that health probes write through.
func openProbe(path string) (*sql.DB, error) {
	p, err := sql.Open("sqlite", dsnWithBusy(path, ProbeBusyTimeout))
	if err != nil {
		return nil, err
	}
	p.SetMaxOpenConns(1)
	return p, nil
}

// ProbeWrite proves the database takes a write now: it renews the lease of node owner
// (creating its row if needed) through a connection of its own. On PostgreSQL that is all, bounded by ctx. On
// SQLite it writes in this process's write turn, through a connection that waits at
// most ProbeBusyTimeout for the lock, and it fails when the file or its directory turned
// read-only, the disk is full, another process holds the write lock, or the WAL or
// shared-memory file was deleted under us (then only a restart repairs it: new
// connections would see a database without the writes still in the deleted WAL).
func (db *DB) ProbeWrite(ctx context.Context, owner string) error {
	if db.backend == Postgres {
		return db.heartbeat(ctx, owner)
	}
	if err := db.sidecars.check(); err != nil {
		return err
	}
	gctx, cancel := context.WithTimeout(ctx, probeGateWait)
	unlock, err := db.lockWrite(gctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if held := db.writeHeld(); held > stuckWrite {
			return fmt.Errorf("probe database: a write has waited %v for the database", held.Round(time.Millisecond))
		}
		return stagedoor.ErrProbeInconclusive
	}
	defer unlock()
	return db.heartbeat(ctx, owner)
}

// heartbeat renews owner's node lease through the probe's connection: the probe's write
// is the node's proof of life (cluster.md §0.4).
func (db *DB) heartbeat(ctx context.Context, owner string) error {
	st, err := db.stmts.prepared(ctx, db.probe, renewLeaseSQL)
	if err != nil {
		return fmt.Errorf("probe database: %w", err)
	}
	now := db.Now().UnixMilli()
	if _, err := st.ExecContext(ctx, owner, now, now+db.leaseTTL().Milliseconds()); err != nil {
		return fmt.Errorf("probe database: %w", err)
	}
	return nil
}

// sidecars holds the WAL and shared-memory files open from Open on. Checking the path
// alone misses a deletion whenever a new pooled connection recreates the file before
// the next probe (a busy machine opens connections often); the open handle does not: its
// link count drops to 0, or the path then names another file. Once seen, the loss is
// remembered until a restart, since the writes in the deleted WAL are gone for good.
type sidecars struct {
	files []*os.File
	gone  *atomic.Pointer[error]
}

// watchSidecars opens path-wal and path-shm read-only; a file that cannot be opened is
// checked by its path only.
func watchSidecars(path string) sidecars {
	s := sidecars{gone: new(atomic.Pointer[error])}
	for _, suffix := range []string{"-wal", "-shm"} {
		if f, err := os.Open(path + suffix); err == nil { //nolint:gosec // our own database's files
			s.files = append(s.files, f)
		}
	}
	return s
}

// check returns an error once a sidecar file was deleted or replaced under us.
func (s sidecars) check() error {
	if s.gone == nil {
		return nil
	}
	if err := s.gone.Load(); err != nil {
		return *err
	}
	for _, f := range s.files {
		if err := replaced(f); err != nil {
			s.gone.Store(&err)
			return err
		}
	}
	return nil
}

// replaced reports the deletion of f's path, or its replacement by another file.
func replaced(f *os.File) error {
	name := filepath.Base(f.Name())
	gone := fmt.Errorf("database file %s was deleted: restart Stagedoor", name)
	held, err := f.Stat()
	if err != nil {
		return fmt.Errorf("database file %s: %w", name, err)
	}
	if st, ok := held.Sys().(*syscall.Stat_t); ok && st.Nlink == 0 {
		return gone
	}
	now, err := os.Stat(f.Name())
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !os.SameFile(held, now)) {
		return gone
	}
	return nil
}

func (s sidecars) close() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
