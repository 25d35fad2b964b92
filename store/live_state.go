package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/stagedoor/stagedoor"
)

// SetLive marks l.Name live on l.SourceID, with what admitted it (l.KeyDigest,
// l.PasswordDigest). It is idempotent: the same source keeps its live_since and takes the
// digests given; a different source replaces the old one (an encoder that reconnected).
// Going from offline to live queues a stream.started event in the same transaction.
// Its only errors are the database's; a UserID or KeyID that names nobody is one.
func (db *DB) SetLive(ctx context.Context, l stagedoor.LiveState) error {
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
	now := db.now()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM live_state WHERE name = $1`, l.Name).Scan(&n); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO live_state (name, user_id, key_id, key_digest, password_digest, source_id, source_type, live_since)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (name) DO UPDATE SET
				user_id = excluded.user_id,
				key_id = excluded.key_id,
				key_digest = excluded.key_digest,
				password_digest = excluded.password_digest,
				source_type = excluded.source_type,
				live_since = CASE WHEN live_state.source_id = excluded.source_id THEN live_state.live_since ELSE excluded.live_since END,
				source_id = excluded.source_id`,
			l.Name, l.UserID, key, digest, password, l.SourceID, l.SourceType, now); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		return addEvent(ctx, tx, stagedoor.EventStreamStarted, l.UserName, l.Name, now)
	})
	if err != nil {
		return fmt.Errorf("set %s live: %w", l.Name, err)
	}
	return nil
}

// SetOffline marks name offline if sourceID is the source it is live on, or
// unconditionally when sourceID is empty. It reports whether a row changed, so that an
// old source's late "unavailable" never takes down a newer stream. Going offline queues
// a stream.stopped event in the same transaction. A name that is not live is false, not
// an error; its only errors are the database's.
func (db *DB) SetOffline(ctx context.Context, name, sourceID string) (bool, error) {
	changed := false
	now := db.now()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		changed = false // a retried transaction starts again
		var user string
		err := tx.QueryRowContext(ctx, `SELECT u.name FROM live_state l JOIN users u ON u.id = l.user_id
			WHERE l.name = $1 AND ($2 = '' OR l.source_id = $2)`, name, sourceID).Scan(&user)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM live_state WHERE name = $1`, name); err != nil {
			return err
		}
		changed = true
		return addEvent(ctx, tx, stagedoor.EventStreamStopped, user, name, now)
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
	rows, err := db.db.QueryContext(ctx, `SELECT l.name, l.user_id, u.name, l.key_id, l.key_digest, l.password_digest, l.source_id, l.source_type, l.live_since
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
		if err := rows.Scan(&l.Name, &l.UserID, &l.UserName, &keyID, &digest, &password, &l.SourceID, &l.SourceType, &since); err != nil {
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

// ClearLive marks every name offline; `stagedoor run` calls it before it starts its own
// MediaMTX, which cannot carry any stream yet.
// A stream.stopped event is queued for each. Its only errors are the database's.
func (db *DB) ClearLive(ctx context.Context) error {
	now := db.now()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (at, event, username, channel, next_at)
			SELECT $1, $2, u.name, l.name, $1 FROM live_state l JOIN users u ON u.id = l.user_id`,
			now, stagedoor.EventStreamStopped); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM live_state`)
		return err
	})
	if err != nil {
		return fmt.Errorf("clear live state: %w", err)
	}
	return nil
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
