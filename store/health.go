package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
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

// ProbeWrite proves the database takes a write now: in this process's write turn it
// commits one heartbeat row for owner through a connection that waits at most
// ProbeBusyTimeout for the lock. It fails when the file or its directory turned
// read-only, the disk is full, another process holds the write lock, or the WAL or
// shared-memory file was deleted under us (then only a restart repairs it: new
// connections would see a database without the writes still in the deleted WAL).
func (db *DB) ProbeWrite(ctx context.Context, owner string) error {
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(db.path + suffix); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("database %s file is gone: restart Stagedoor", suffix[1:])
		}
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
	if _, err := db.probe.ExecContext(ctx, `INSERT INTO heartbeat (owner, at) VALUES (?, ?)
		ON CONFLICT (owner) DO UPDATE SET at = excluded.at`, owner, db.now()); err != nil {
		return fmt.Errorf("probe database: %w", err)
	}
	return nil
}
