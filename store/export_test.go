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
