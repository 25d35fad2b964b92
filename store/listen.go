package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// listenerName is the application_name of Listen's session in pg_stat_activity.
const listenerName = "stagedoor-listen"

// Listen calls changed with the payload of each notification PostgreSQL sends on this
// schema's channel, stagedoor_<schema>: "policy" after a transaction that changed what
// admits a publisher (a ban, a key revoked or reset, a password, a stream's
// authentication), "live" after live state changed, "nodes" after a node came or went.
// It also calls changed("") each time its session (re)connects, since notifications sent
// while it was away are lost: the caller then resynchronises everything. It holds one
// session of its own (not from the pool), reconnects after a failure with a backoff from
// 0.1 s doubling to 5 s, and returns nil when ctx ends. On SQLite it returns nil at once:
// there a process learns of another's changes from the policy generation it polls.
// changed runs on Listen's goroutine and should not block for long.
func (db *DB) Listen(ctx context.Context, changed func(payload string)) error {
	if db.backend != Postgres {
		return nil
	}
	backoff := 100 * time.Millisecond
	for {
		if db.listenOnce(ctx, changed) {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// listenOnce holds one session until it fails or ctx ends, and reports whether it got as
// far as listening.
func (db *DB) listenOnce(ctx context.Context, changed func(string)) bool {
	conn, err := pgx.ConnectConfig(ctx, db.listen.Copy())
	if err != nil {
		return false
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	// LISTEN takes no parameter: the channel name is built by the server, from its own
	// current_schema(), quoted by format's %I.
	if _, err := conn.Exec(ctx, `DO $$ BEGIN EXECUTE format('LISTEN %I', 'stagedoor_' || current_schema()); END $$`); err != nil {
		return false
	}
	changed("")
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true
		}
		changed(n.Payload)
	}
}
