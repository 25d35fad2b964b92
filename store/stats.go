package store

import "database/sql"

// Stats reports the connection pool: how many connections are open, in use and were
// opened or closed over time. Load tests read it; it carries no SQL.
func (db *DB) Stats() sql.DBStats { return db.db.Stats() }
