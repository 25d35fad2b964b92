package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// stmtCache keeps the statements of the loops that run while the service is idle (the
// policy-generation poll four times a second, the health probe twice): prepared once per
// connection instead of parsed on every call, which was most of an idle service's CPU
// with SQLite. database/sql prepares a Stmt again on a new connection (a reconnect after
// a PostgreSQL restart) by itself.
type stmtCache struct {
	mu    sync.Mutex
	stmts map[stmtKey]*sql.Stmt
}

type stmtKey struct {
	pool  *sql.DB
	query string
}

// prepared returns query's statement on pool, preparing it on first use.
func (c *stmtCache) prepared(ctx context.Context, pool *sql.DB, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := stmtKey{pool, query}
	if st, ok := c.stmts[k]; ok {
		return st, nil
	}
	st, err := pool.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if c.stmts == nil {
		c.stmts = make(map[stmtKey]*sql.Stmt)
	}
	c.stmts[k] = st
	return st, nil
}

// close closes every statement; call it before the pools.
func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, st := range c.stmts {
		errs = append(errs, st.Close())
	}
	c.stmts = nil
	return errors.Join(errs...)
}
