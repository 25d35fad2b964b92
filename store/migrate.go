package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
)

// The SQLite migrations are migrations/*.sql; the PostgreSQL DDL of each is
// migrations/postgres/ under the same file name. Both are recorded in schema_migrations
// under the SQLite name (migrations/NNNN_x.sql), which must never change: a database
// records what it applied by that name. The glob of one directory does not descend.
//
//go:embed migrations/*.sql migrations/postgres/*.sql
var migrations embed.FS

// migrationFiles returns the embedded migration files of backend b in order, each with
// the name it is recorded under.
func migrationFiles(b Backend) (files, names []string, err error) {
	pattern := "migrations/*.sql"
	if b == Postgres {
		pattern = "migrations/postgres/*.sql"
	}
	files, err = fs.Glob(migrations, pattern)
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(files)
	for _, f := range files {
		names = append(names, "migrations/"+path.Base(f))
	}
	return files, names, nil
}

// migrate applies every embedded migration not yet recorded, each in its own transaction
// that checks and records its name, so that `serve` and a hook process (or two replicas)
// starting at the same moment never apply one twice. On SQLite that transaction is
// immediate, in the write turn; on PostgreSQL (where DDL is transactional) it first takes
// an advisory lock of this schema, and runs at READ COMMITTED, so that the check after the
// lock sees what the holder before it committed.
func (db *DB) migrate(ctx context.Context) error {
	files, names, err := migrationFiles(db.backend)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	create := `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`
	if db.backend == Postgres {
		create = `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)`
	}
	if err := db.migrationTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, create)
		return err
	}); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for i, file := range files {
		name := names[i]
		body, err := migrations.ReadFile(file)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		err = db.migrationTx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE name = $1`, name).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES ($1, $2)`, name, db.now())
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", name, err)
		}
	}
	return nil
}

// migrationTx runs fn in a transaction that no other migrator of this database (schema)
// runs beside.
func (db *DB) migrationTx(ctx context.Context, fn func(*sql.Tx) error) error {
	if db.backend == SQLite {
		return db.inTx(ctx, fn)
	}
	return db.inPGTx(ctx, nil, func(tx *sql.Tx) error {
		// Advisory locks are database-wide: the key names the schema, so that schemas
		// (parallel tests, several installations in one database) migrate side by side.
		if _, err := tx.ExecContext(ctx,
			`SELECT pg_advisory_xact_lock(hashtext('stagedoor migrate ' || current_schema()))`); err != nil {
			return err
		}
		return fn(tx)
	})
}
