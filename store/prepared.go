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

// prepared returns query's statement on pool, preparing it on first use. The preparing
// happens outside the lock, so a caller whose context runs out is not held up by another
// caller's prepare on a database that does not answer.
func (c *stmtCache) prepared(ctx context.Context, pool *sql.DB, query string) (*sql.Stmt, error) {
	k := stmtKey{pool, query}
	c.mu.Lock()
	st, ok := c.stmts[k]
	c.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := pool.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if have, ok := c.stmts[k]; ok {
		_ = st.Close() // another caller prepared it meanwhile
		return have, nil
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
