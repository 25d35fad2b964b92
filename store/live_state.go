package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/stagedoor/stagedoor"
)

// SetLive claims l.Name for node l.NodeID on source l.SourceID (Claim with takeover),
// and returns an error wrapping ErrConflict when another live node holds the name and
// keeps it. It is idempotent: the same node and source keep their live_since.
func (db *DB) SetLive(ctx context.Context, l stagedoor.LiveState) error {
	c, err := db.Claim(ctx, l, true)
	if err != nil {
		return err
	}
	if !c.Won {
		return fmt.Errorf("set %s live: live on node %s: %w", l.Name, c.Holder, stagedoor.ErrConflict)
	}
	return nil
}

// Claim marks l.Name live on l.NodeID's source l.SourceID, with what admitted it
// (l.KeyDigest, l.PasswordDigest), unless another node keeps it (cluster.md §3). The
// claim overwrites a row when the row is the same node's (its MediaMTX is authoritative
// for itself), when both sides are stream-key publishes (LiveKey) and takeover is set
// (newest wins), or when the holder's lease has run out (or it has no node row). The
// claiming node's own lease is renewed (it just wrote to the database). The same node
// and source keep their live_since; every change moves the row's epoch. Going from
// offline to live queues a stream.started event in the same transaction. It returns the
// holder after the claim; an *InvalidError for a missing node id or kind; otherwise only
// the database's errors (a UserID or KeyID that names nobody is one).
func (db *DB) Claim(ctx context.Context, l stagedoor.LiveState, takeover bool) (stagedoor.Claim, error) {
	if err := stagedoor.ValidNodeID(l.NodeID); err != nil {
		return stagedoor.Claim{}, err
	}
	if l.Kind != stagedoor.LiveKey && l.Kind != stagedoor.LiveDirect {
		return stagedoor.Claim{}, &stagedoor.InvalidError{Field: "live kind", Reason: "must be key or direct"}
	}
	var key, digest, password any
	if l.KeyID != 0 {
		key = l.KeyID
	}
	if l.KeyDigest != nil {
		digest = l.KeyDigest[:]
	}
	if l.PasswordDigest != nil {
		password = l.PasswordDigest[:]
	}
	now, nowMs := db.now(), db.Now().UnixMilli()
	var c stagedoor.Claim
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		c = stagedoor.Claim{}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM live_state WHERE name = $1`, l.Name).Scan(&n); err != nil {
			return err
		}
		if err := renewLease(ctx, tx, l.NodeID, nowMs, db.leaseTTL()); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO live_state
				(name, user_id, key_id, key_digest, password_digest, source_id, source_type, live_since, node_id, kind)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (name) DO UPDATE SET
				user_id = excluded.user_id,
				key_id = excluded.key_id,
				key_digest = excluded.key_digest,
				password_digest = excluded.password_digest,
				source_type = excluded.source_type,
				live_since = CASE WHEN live_state.node_id = excluded.node_id AND live_state.source_id = excluded.source_id
					THEN live_state.live_since ELSE excluded.live_since END,
				source_id = excluded.source_id,
				node_id = excluded.node_id,
				kind = excluded.kind,
				epoch = live_state.epoch + 1
			WHERE live_state.node_id = excluded.node_id
				OR (live_state.kind = 'key' AND excluded.kind = 'key' AND $11)
				OR NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = live_state.node_id AND n.lease_until >= $12)
			RETURNING node_id, epoch`,
			l.Name, l.UserID, key, digest, password, l.SourceID, l.SourceType, now, l.NodeID, l.Kind, takeover, nowMs).
			Scan(&c.Holder, &c.Epoch)
		if errors.Is(err, sql.ErrNoRows) {
			// Refused: nothing changed; report who keeps the name.
			return tx.QueryRowContext(ctx, `SELECT node_id, epoch FROM live_state WHERE name = $1`, l.Name).Scan(&c.Holder, &c.Epoch)
		}
		if err != nil {
			return err
		}
		c.Won = true
		if n > 0 {
			return nil
		}
		return addEvent(ctx, tx, stagedoor.EventStreamStarted, l.UserName, l.Name, now)
	})
	if err != nil {
		return stagedoor.Claim{}, fmt.Errorf("set %s live: %w", l.Name, err)
	}
	return c, nil
}

// SetOffline marks name offline if node carries it on sourceID, or on any source when
// sourceID is empty; a name another node holds is never touched. It reports whether a
// row changed, so that an old source's late "unavailable" never takes down a newer
// stream. Going offline queues a stream.stopped event in the same transaction. A name
// that is not live is false, not an error; its only errors are the database's.
func (db *DB) SetOffline(ctx context.Context, name, node, sourceID string) (bool, error) {
	changed := false
	now := db.now()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		changed = false // a retried transaction starts again
		n, err := stopLive(ctx, tx, now, `WHERE name = $1 AND node_id = $2 AND ($3 = '' OR source_id = $3)`,
			name, node, sourceID)
		changed = n > 0
		return err
	})
	if err != nil {
		return false, fmt.Errorf("set %s offline: %w", name, err)
	}
	return changed, nil
}

// LiveByName returns the live state of a public name; ErrNotFound when it is offline.
func (db *DB) LiveByName(ctx context.Context, name string) (stagedoor.LiveState, error) {
	rows, err := db.queryLive(ctx, `WHERE l.name = $1`, name)
	if err != nil {
		return stagedoor.LiveState{}, err
	}
	if len(rows) == 0 {
		return stagedoor.LiveState{}, fmt.Errorf("live state of %s: %w", name, stagedoor.ErrNotFound)
	}
	return rows[0], nil
}

// LiveStates returns every live public name ordered by name. Its only errors are the
// database's.
func (db *DB) LiveStates(ctx context.Context) ([]stagedoor.LiveState, error) {
	return db.queryLive(ctx, ``)
}

func (db *DB) queryLive(ctx context.Context, where string, args ...any) ([]stagedoor.LiveState, error) {
	// where is one of two constant strings above, never input.
	rows, err := db.db.QueryContext(ctx, `SELECT l.name, l.user_id, u.name, l.key_id, l.key_digest, l.password_digest, l.source_id, l.source_type, l.live_since,
			l.node_id, l.kind, l.epoch
		FROM live_state l JOIN users u ON u.id = l.user_id `+where+` ORDER BY l.name`, args...) // #nosec G202
	if err != nil {
		return nil, fmt.Errorf("list live state: %w", err)
	}
	defer rows.Close()
	var out []stagedoor.LiveState
	for rows.Next() {
		var (
			l        stagedoor.LiveState
			keyID    sql.NullInt64
			digest   []byte
			password []byte
			since    int64
		)
		if err := rows.Scan(&l.Name, &l.UserID, &l.UserName, &keyID, &digest, &password, &l.SourceID, &l.SourceType, &since,
			&l.NodeID, &l.Kind, &l.Epoch); err != nil {
			return nil, fmt.Errorf("list live state: %w", err)
		}
		l.KeyID = keyID.Int64
		l.KeyDigest, l.PasswordDigest = digestOf(digest), digestOf(password)
		l.Since = time.Unix(since, 0).UTC()
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list live state: %w", err)
	}
	return out, nil
}

// ClearLive marks every name node carries offline; `stagedoor run` calls it before it
// starts its own MediaMTX, which cannot carry any stream yet. Other nodes' names stay.
// A stream.stopped event is queued for each. Its only errors are the database's.
func (db *DB) ClearLive(ctx context.Context, node string) error {
	now := db.now()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		_, err := stopLive(ctx, tx, now, `WHERE node_id = $1`, node)
		return err
	})
	if err != nil {
		return fmt.Errorf("clear live state: %w", err)
	}
	return nil
}

// stopLive takes the live names matching where offline and queues one stream.stopped
// event for each, in tx; it returns how many. where is one of the constant clauses of
// this file, never input: a WHERE clause on live_state whose placeholders take args.
func stopLive(ctx context.Context, tx *sql.Tx, now int64, where string, args ...any) (int64, error) {
	type stopped struct {
		name   string
		userID int64
	}
	rows, err := tx.QueryContext(ctx, `DELETE FROM live_state `+where+` RETURNING name, user_id`, args...) // #nosec G202
	if err != nil {
		return 0, err
	}
	var gone []stopped
	for rows.Next() {
		var s stopped
		if err := rows.Scan(&s.name, &s.userID); err != nil {
			rows.Close()
			return 0, err
		}
		gone = append(gone, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, s := range gone {
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (at, event, username, channel, next_at)
			SELECT $1, $2, name, $3, $1 FROM users WHERE id = $4`, now, stagedoor.EventStreamStopped, s.name, s.userID); err != nil {
			return 0, err
		}
	}
	return int64(len(gone)), nil
}

// digestOf reads a digest column: nil when NULL (or not a digest).
func digestOf(b []byte) *stagedoor.Digest {
	if len(b) != len(stagedoor.Digest{}) {
		return nil
	}
	var d stagedoor.Digest
	copy(d[:], b)
	return &d
}
