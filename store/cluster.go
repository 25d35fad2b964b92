package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"time"

	"github.com/stagedoor/stagedoor"
)

// DefaultLeaseTTL is how long a node's lease lasts after each renewal.
const DefaultLeaseTTL = 10 * time.Second

// nodeForget is how long a dead node's row is kept (its id may come back).
const nodeForget = 24 * time.Hour

func (db *DB) leaseTTL() time.Duration {
	if db.LeaseTTL > 0 {
		return db.LeaseTTL
	}
	return DefaultLeaseTTL
}

// execer is a transaction or a pool.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// renewLease extends node's lease to nowMs + ttl (never shortening it), creating the
// node's row if there is none.
func renewLease(ctx context.Context, e execer, node string, nowMs int64, ttl time.Duration) error {
	_, err := e.ExecContext(ctx, renewLeaseSQL, node, nowMs, nowMs+ttl.Milliseconds())
	return err
}

const renewLeaseSQL = `INSERT INTO nodes (id, rtsp_addr, started_at, lease_until) VALUES ($1, '', $2, $3)
		ON CONFLICT (id) DO UPDATE SET lease_until = CASE WHEN nodes.lease_until > excluded.lease_until
			THEN nodes.lease_until ELSE excluded.lease_until END`

// SetLeaseTTL sets LeaseTTL; call it before the first renewal.
func (db *DB) SetLeaseTTL(d time.Duration) { db.LeaseTTL = d }

// RegisterNode records node id as started now, reachable by peers at rtspAddr ("" for a
// replica without MediaMTX), with a fresh lease. A node that registers again (a restart)
// keeps its id and live names. *InvalidError for a bad id; otherwise only the
// database's errors.
func (db *DB) RegisterNode(ctx context.Context, id, rtspAddr string) error {
	if err := stagedoor.ValidNodeID(id); err != nil {
		return err
	}
	now := db.Now().UnixMilli()
	if _, err := db.exec(ctx, `INSERT INTO nodes (id, rtsp_addr, started_at, lease_until) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET rtsp_addr = excluded.rtsp_addr, started_at = excluded.started_at,
			lease_until = excluded.lease_until`, id, rtspAddr, now, now+db.leaseTTL().Milliseconds()); err != nil {
		return fmt.Errorf("register node %s: %w", id, err)
	}
	return nil
}

// Nodes returns every known node ordered by id, dead ones too. Its only errors are the
// database's.
func (db *DB) Nodes(ctx context.Context) ([]stagedoor.Node, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT id, rtsp_addr, started_at, lease_until FROM nodes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []stagedoor.Node
	for rows.Next() {
		var (
			n              stagedoor.Node
			started, lease int64
		)
		if err := rows.Scan(&n.ID, &n.RTSPAddr, &started, &lease); err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		n.StartedAt, n.LeaseUntil = time.UnixMilli(started).UTC(), time.UnixMilli(lease).UTC()
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return out, nil
}

// SweepExpired frees the live names of dead nodes (lease run out, or no node row),
// queueing exactly one stream.stopped event per name in the same transaction, and
// forgets nodes dead for a day that hold nothing. Any replica may run it, at any time:
// a second sweep finds nothing left. It returns how many names it freed; its only
// errors are the database's.
func (db *DB) SweepExpired(ctx context.Context) (int64, error) {
	now, nowMs := db.now(), db.Now().UnixMilli()
	var n int64
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = stopLive(ctx, tx, now,
			`WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = live_state.node_id AND n.lease_until >= $1)`, nowMs)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM nodes WHERE lease_until < $1
			AND NOT EXISTS (SELECT 1 FROM live_state l WHERE l.node_id = nodes.id)`, nowMs-nodeForget.Milliseconds())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sweep expired nodes: %w", err)
	}
	return n, nil
}

// ClaimEvents claims up to limit undelivered, due events for owner (a replica's
// dispatcher) for hold, oldest first, and returns them: no other claimer gets them until
// the hold runs out (a claimer that died), FinishEvent or RetryEvent. Two replicas
// claiming at once split the due events and never share one; on PostgreSQL the rows are
// taken FOR UPDATE SKIP LOCKED. Its only errors are the database's.
func (db *DB) ClaimEvents(ctx context.Context, owner string, limit int, hold time.Duration) ([]stagedoor.OutboxEvent, error) {
	now, nowMs := db.now(), db.Now().UnixMilli()
	skipLocked := ""
	if db.backend == Postgres {
		skipLocked = " FOR UPDATE SKIP LOCKED"
	}
	var out []stagedoor.OutboxEvent
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, `UPDATE outbox SET claimed_by = $1, claimed_until = $2
			WHERE id IN (SELECT id FROM outbox WHERE done = 0 AND next_at <= $3 AND (claimed_until IS NULL OR claimed_until < $4)
				ORDER BY id LIMIT $5`+skipLocked+`)
			RETURNING id, at, event, username, channel, attempts`, // #nosec G202 -- a constant fragment
			owner, nowMs+hold.Milliseconds(), now, nowMs, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				e  stagedoor.OutboxEvent
				at int64
			)
			if err := rows.Scan(&e.ID, &at, &e.Event, &e.User, &e.Channel, &e.Attempts); err != nil {
				return err
			}
			e.At = time.Unix(at, 0).UTC()
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("claim events: %w", err)
	}
	// RETURNING comes in no promised order.
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// kickRequestTTL bounds a kick request's wait: one its node has not taken by then (the
// node died, or the stream moved and ended) is dropped unread.
const kickRequestTTL = time.Minute

// RequestKick asks node r.Node to kick the publisher of r.Name on source r.SourceID.
// Its only errors are the database's.
func (db *DB) RequestKick(ctx context.Context, r stagedoor.KickRequest) error {
	if _, err := db.exec(ctx, `INSERT INTO kick_requests (name, node_id, source_id, requested_by, requested_at)
		VALUES ($1, $2, $3, $4, $5)`, r.Name, r.Node, r.SourceID, r.By, db.Now().UnixMilli()); err != nil {
		return fmt.Errorf("request kick of %s: %w", r.Name, err)
	}
	return nil
}

// TakeKickRequests removes and returns the kick requests naming node that are less than
// kickRequestTTL old, oldest first, and drops every older request. It reads before it
// writes, so a node with none (nearly always) takes no write turn. Its only errors are
// the database's.
func (db *DB) TakeKickRequests(ctx context.Context, node string) ([]stagedoor.KickRequest, error) {
	var n int
	if err := db.db.QueryRowContext(ctx, `SELECT count(*) FROM kick_requests`).Scan(&n); err != nil {
		return nil, fmt.Errorf("kick requests: %w", err)
	}
	if n == 0 {
		return nil, nil
	}
	oldest := db.Now().Add(-kickRequestTTL).UnixMilli()
	var out []stagedoor.KickRequest
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		if _, err := tx.ExecContext(ctx, `DELETE FROM kick_requests WHERE requested_at < $1`, oldest); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `DELETE FROM kick_requests WHERE node_id = $1
			RETURNING id, name, node_id, source_id, requested_by, requested_at`, node)
		if err != nil {
			return err
		}
		defer rows.Close()
		type row struct {
			id int64
			r  stagedoor.KickRequest
		}
		var got []row
		for rows.Next() {
			var (
				x  row
				at int64
			)
			if err := rows.Scan(&x.id, &x.r.Name, &x.r.Node, &x.r.SourceID, &x.r.By, &at); err != nil {
				return err
			}
			x.r.At = time.UnixMilli(at)
			got = append(got, x)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		sort.Slice(got, func(i, j int) bool { return got[i].id < got[j].id })
		for _, x := range got {
			out = append(out, x.r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("take kick requests of %s: %w", node, err)
	}
	return out, nil
}
