// Package store is Stagedoor's database: users, stream-key digests, streams, live
// state, the webhook outbox and the audit trail, on one of two backends: a SQLite file
// (modernc.org/sqlite, WAL mode, mode 0600), the embedded default, or a PostgreSQL
// database (github.com/jackc/pgx/v5 through database/sql) that several replicas share.
//
// It is the only package that sees SQL, and it exports none: neither the pool nor the
// pragmas. Both backends run the same query texts ($n placeholders, RETURNING, upserts);
// only the DDL (migrations/ and migrations/postgres/), error classification and a few
// fragments differ (dialect.go). Its methods are the storage contract, checked through
// the methods alone by the conformance suite in package storetest on both backends;
// callers depend on consumer-side interfaces. What only SQLite has stays here and is
// tested here: the file, the pragmas of every pooled connection, the in-process write
// gate and the file-loss checks of the health probe (ErrProbeInconclusive).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// maxConns is the size of the SQLite connection pool.
const maxConns = 16

// pgMaxConns is the size of the PostgreSQL connection pool. Each replica holds at most
// this many, plus one for the health probe (and, later, one for LISTEN), so PostgreSQL's
// default max_connections of 100 serves about nine replicas and the CLI.
const pgMaxConns = 8

// BusyTimeout is how long a connection waits for SQLite's write lock.
const BusyTimeout = 5 * time.Second

// DB is a Stagedoor database: one SQLite file or one PostgreSQL database (schema).
type DB struct {
	db      *sql.DB
	probe   *sql.DB // health probes; see ProbeWrite
	backend Backend
	path    string // SQLite only
	// listen is the connection configuration of Listen's own session (PostgreSQL only).
	listen *pgx.ConnConfig
	// sidecars watches the -wal and -shm files for deletion (SQLite); see ProbeWrite.
	sidecars sidecars
	// stmts holds the idle loops' prepared statements.
	stmts stmtCache

	// writeGate (SQLite only) admits one writer of this process at a time. SQLite allows one writer
	// anyway; queueing here, in order and bounded by the caller's context, keeps many
	// goroutines from spinning in SQLite's busy handler until one of them gives up with
	// SQLITE_BUSY. busy_timeout then only arbitrates between processes (CLI and service).
	writeGate chan struct{}
	gateSince atomic.Int64 // unix nanos when the current write turn began; 0 when free

	// Now returns the current time; tests replace it. Defaults to time.Now.
	Now func() time.Time
	// LeaseTTL is how long a node's lease lasts after each renewal (ProbeWrite,
	// RegisterNode, a claim). Zero means DefaultLeaseTTL (10 s).
	LeaseTTL time.Duration
}

// dsn puts every pragma in the connection string so that each pooled connection gets it;
// _txlock=immediate makes read-then-write transactions take the write lock up front
// instead of failing with SQLITE_BUSY when they try to upgrade.
func dsn(path string) string { return dsnWithBusy(path, BusyTimeout.Milliseconds()) }

func dsnWithBusy(path string, busyMillis int64) string {
	q := url.Values{}
	for _, p := range []string{
		fmt.Sprintf("busy_timeout(%d)", busyMillis),
		"journal_mode(wal)",
		"synchronous(normal)",
		"foreign_keys(1)",
	} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

// Open opens the database dsn names (see ParseDSN) and applies the migrations not yet
// applied. A SQLite file is created if needed, with mode 0600, and its pragmas are
// verified. A DSN that names neither backend is an *InvalidError and creates nothing.
// No error quotes a password of the DSN.
func Open(ctx context.Context, dsn string) (*DB, error) {
	b, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if b == Postgres {
		return openPostgres(ctx, dsn)
	}
	return openSQLite(ctx, dsn)
}

// openSQLite opens (creating if needed) the SQLite file at path.
func openSQLite(ctx context.Context, path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	// Create the file ourselves so it is never world-readable: it holds key digests.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	_ = f.Close()

	sdb, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	// Keep connections instead of opening and closing one per burst (the default keeps
	// 2 idle): each new one reruns the pragmas and reads the schema. The cap bounds
	// memory under a raid; no method holds two connections at once.
	sdb.SetMaxOpenConns(maxConns)
	sdb.SetMaxIdleConns(maxConns)
	db := &DB{db: sdb, backend: SQLite, path: path, Now: time.Now, writeGate: make(chan struct{}, 1)}
	if err = db.checkPragmas(ctx); err != nil {
		_ = sdb.Close()
		return nil, err
	}
	if err = db.migrate(ctx); err != nil {
		_ = sdb.Close()
		return nil, err
	}
	if db.probe, err = openProbe(path); err != nil {
		_ = sdb.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	// The WAL exists while a connection is open; the migration's connection stays in the
	// pool (idle connections are kept), so SQLite never removes it while we run.
	db.sidecars = watchSidecars(path)
	return db, nil
}

// Close closes the database.
func (db *DB) Close() error {
	return errors.Join(db.stmts.close(), db.sidecars.close(), db.probe.Close(), db.db.Close())
}

// Ping checks that the database answers a read within ctx; it returns the database's
// error, or ctx's.
func (db *DB) Ping(ctx context.Context) error {
	var n int
	if err := db.db.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// pragmas reports the settings of one pooled connection.
type pragmas struct {
	JournalMode string
	BusyTimeout int
	ForeignKeys int
}

// connPragmas reads the pragmas of conn: Open checks one connection with it, store's
// tests every pooled one.
func connPragmas(ctx context.Context, conn *sql.Conn) (pragmas, error) {
	var p pragmas
	if err := conn.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&p.JournalMode); err != nil {
		return p, err
	}
	if err := conn.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&p.BusyTimeout); err != nil {
		return p, err
	}
	if err := conn.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&p.ForeignKeys); err != nil {
		return p, err
	}
	return p, nil
}

func (db *DB) checkPragmas(ctx context.Context) error {
	conn, err := db.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer conn.Close()
	p, err := connPragmas(ctx, conn)
	if err != nil {
		return fmt.Errorf("open database: read pragmas: %w", err)
	}
	switch {
	case p.JournalMode != "wal":
		return fmt.Errorf("open database: journal_mode is %q, want wal", p.JournalMode)
	case p.BusyTimeout != int(BusyTimeout.Milliseconds()):
		return fmt.Errorf("open database: busy_timeout is %d, want %d", p.BusyTimeout, BusyTimeout.Milliseconds())
	case p.ForeignKeys != 1:
		return errors.New("open database: foreign_keys is off")
	}
	return nil
}

func (db *DB) now() int64 { return db.Now().UTC().Unix() }

// lockWrite waits for this process's write turn; the returned func gives it back.
func (db *DB) lockWrite(ctx context.Context) (func(), error) {
	select {
	case db.writeGate <- struct{}{}:
		db.gateSince.Store(time.Now().UnixNano())
		return func() {
			db.gateSince.Store(0)
			<-db.writeGate
		}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// writeHeld is how long the current write turn has lasted; 0 when nobody writes.
func (db *DB) writeHeld() time.Duration {
	since := db.gateSince.Load()
	if since == 0 {
		return 0
	}
	return time.Since(time.Unix(0, since))
}

// exec runs one writing statement in its write turn (see inTx).
func (db *DB) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if db.backend == Postgres {
		var res sql.Result
		err := db.inTx(ctx, func(tx *sql.Tx) error {
			var err error
			res, err = tx.ExecContext(ctx, query, args...)
			return err
		})
		return res, err
	}
	unlock, err := db.lockWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return db.db.ExecContext(ctx, query, args...)
}

// inTx runs fn in one transaction and commits it if fn returns nil. On SQLite the
// transaction is immediate and runs in this process's write turn. On PostgreSQL it is
// SERIALIZABLE, so that read-then-write code (SetLive's "was it live?", SetActive,
// nameFree) keeps SQLite's single-writer meaning, and a serialization failure or deadlock
// runs fn again (inPGTx); fn may run more than once, so it must set every result it
// returns afresh.
//
// On PostgreSQL the write turn is cluster-wide: the transaction first locks the
// policy_generation table (EXCLUSIVE: writers queue, readers pass), before its snapshot
// is taken. Without that queue, every credential change updates the one
// policy_generation row (its trigger), and under SERIALIZABLE all but one of N concurrent
// writers of a row fail: 40 key rotators (storetest's MixedLoadNoErrors) exhausted five
// retries within seconds. With it, retries are left for writes that bypass it (none in
// this package).
func (db *DB) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	if db.backend == Postgres {
		return db.inPGTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable}, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `LOCK TABLE policy_generation IN EXCLUSIVE MODE`); err != nil {
				return err
			}
			return fn(tx)
		})
	}
	unlock, err := db.lockWrite(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return runTx(ctx, db.db, nil, fn)
}

// runTx runs fn in one transaction of pool.
func runTx(ctx context.Context, pool *sql.DB, opts *sql.TxOptions, fn func(*sql.Tx) error) error {
	tx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
