package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// LiveState says which MediaMTX source carries a live channel.
type LiveState struct {
	UserID   int64
	UserName string
	KeyID    int64
	// SourceID is MediaMTX's conn or session id (MTX_SOURCE_ID), also the kick id.
	SourceID   string
	SourceType string
	Since      time.Time
}

// SetLive marks the user live on sourceID. It is idempotent: the same source keeps its
// live_since; a different source replaces the old one (an encoder that reconnected).
func (db *DB) SetLive(ctx context.Context, userID, keyID int64, sourceID, sourceType string) error {
	var key any
	if keyID != 0 {
		key = keyID
	}
	_, err := db.db.ExecContext(ctx, `INSERT INTO live_state (user_id, key_id, source_id, source_type, live_since)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET
			key_id = excluded.key_id,
			source_type = excluded.source_type,
			live_since = CASE WHEN live_state.source_id = excluded.source_id THEN live_state.live_since ELSE excluded.live_since END,
			source_id = excluded.source_id`,
		userID, key, sourceID, sourceType, db.now())
	if err != nil {
		return fmt.Errorf("set live: %w", err)
	}
	return nil
}

// SetOffline marks the user offline if sourceID is the source they are live on, or
// unconditionally when sourceID is empty. It reports whether a row changed, so that an
// old source's late "unavailable" never takes down a newer stream.
func (db *DB) SetOffline(ctx context.Context, userID int64, sourceID string) (bool, error) {
	var (
		res sql.Result
		err error
	)
	if sourceID == "" {
		res, err = db.db.ExecContext(ctx, `DELETE FROM live_state WHERE user_id = ?`, userID)
	} else {
		res, err = db.db.ExecContext(ctx, `DELETE FROM live_state WHERE user_id = ? AND source_id = ?`, userID, sourceID)
	}
	if err != nil {
		return false, fmt.Errorf("set offline: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// LiveUsers returns every live channel ordered by name.
func (db *DB) LiveUsers(ctx context.Context) ([]LiveState, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT l.user_id, u.name, l.key_id, l.source_id, l.source_type, l.live_since
		FROM live_state l JOIN users u ON u.id = l.user_id ORDER BY u.name`)
	if err != nil {
		return nil, fmt.Errorf("list live users: %w", err)
	}
	defer rows.Close()
	var out []LiveState
	for rows.Next() {
		var (
			l     LiveState
			keyID sql.NullInt64
			since int64
		)
		if err := rows.Scan(&l.UserID, &l.UserName, &keyID, &l.SourceID, &l.SourceType, &since); err != nil {
			return nil, fmt.Errorf("list live users: %w", err)
		}
		l.KeyID = keyID.Int64
		l.Since = time.Unix(since, 0).UTC()
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list live users: %w", err)
	}
	return out, nil
}

// ClearLive marks every user offline; `stagedoor run` calls it before it starts its own
// MediaMTX, which cannot carry any stream yet.
func (db *DB) ClearLive(ctx context.Context) error {
	if _, err := db.db.ExecContext(ctx, `DELETE FROM live_state`); err != nil {
		return fmt.Errorf("clear live state: %w", err)
	}
	return nil
}
