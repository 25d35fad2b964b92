package store

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgTxAttempts is how many times a PostgreSQL transaction runs before a serialization
// failure or deadlock is returned to the caller.
const pgTxAttempts = 5

// pgSessionDefaults are run-time parameters of every connection, unless the DSN sets
// them. Write transactions queue on one lock (inTx), so a session stuck inside one (a
// frozen process, a cut network) would stall every replica's writes: PostgreSQL ends it
// after idle_in_transaction_session_timeout, and the queue moves on. application_name
// names our sessions in pg_stat_activity.
var pgSessionDefaults = map[string]string{
	"idle_in_transaction_session_timeout": "30s",
	"application_name":                    "stagedoor",
}

// openPostgres opens the PostgreSQL database a postgres:// URL names. The URL's
// parameters are libpq's (sslmode, search_path as a run-time parameter, …); a password
// may also come from PGPASSFILE. Every error is redacted of the URL's password.
func openPostgres(ctx context.Context, dsn string) (*DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", redact(err, dsn))
	}
	for k, v := range pgSessionDefaults {
		if _, set := cfg.RuntimeParams[k]; !set {
			cfg.RuntimeParams[k] = v
		}
	}
	sdb := stdlib.OpenDB(*cfg.Copy())
	sdb.SetMaxOpenConns(pgMaxConns)
	sdb.SetMaxIdleConns(pgMaxConns)
	// A connection is dropped after a while, so that a failover or a restarted server is
	// not remembered through stale connections for long.
	sdb.SetConnMaxLifetime(30 * time.Minute)
	db := &DB{db: sdb, backend: Postgres, Now: time.Now}
	if err := sdb.PingContext(ctx); err != nil {
		_ = sdb.Close()
		return nil, fmt.Errorf("open database: %w", redact(err, dsn))
	}
	if err := db.migrate(ctx); err != nil {
		_ = sdb.Close()
		return nil, redact(err, dsn)
	}
	// The health probe's own connection, so that a full pool never reads as a sick
	// database.
	db.probe = stdlib.OpenDB(*cfg.Copy())
	db.probe.SetMaxOpenConns(1)
	db.probe.SetConnMaxLifetime(30 * time.Minute)
	db.listen = cfg.Copy()
	db.listen.RuntimeParams["application_name"] = listenerName
	return db, nil
}

// inPGTx runs fn in a PostgreSQL transaction with opts, again up to pgTxAttempts times in
// all while it fails with a serialization failure or a deadlock, after a random pause
// that grows with each attempt (so two retrying transactions do not collide again).
func (db *DB) inPGTx(ctx context.Context, opts *sql.TxOptions, fn func(*sql.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := runTx(ctx, db.db, opts, fn)
		if err == nil || attempt == pgTxAttempts || !retryable(err) {
			return err
		}
		pause := time.Duration(rand.Int64N(int64(5*time.Millisecond) << attempt)) //nolint:gosec // jitter, not a secret
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
