package store

import (
	"context"
	"database/sql"
)

// This file is compiled only with store's own tests: it lends them what the package no
// longer exports, to check the SQLite file itself (pragmas, migrations, rows that no
// method returns). No other package can reach these.

// SQLForTest returns the connection pool.
func (db *DB) SQLForTest() *sql.DB { return db.db }

// PragmasForTest is what ConnPragmasForTest reads of one connection.
type PragmasForTest = pragmas

// ConnPragmasForTest reads the pragmas of one pooled connection.
func ConnPragmasForTest(ctx context.Context, conn *sql.Conn) (PragmasForTest, error) {
	return connPragmas(ctx, conn)
}

// MaxConnsForTest is the size of the connection pool.
const MaxConnsForTest = maxConns

// TerminateListenersForTest ends every Listen session on this database (PostgreSQL): the
// fault a failover or a restarted server makes. It returns how many it ended.
func (db *DB) TerminateListenersForTest(ctx context.Context) (int, error) {
	var n int
	err := db.db.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, listenerName).Scan(&n)
	return n, err
}
