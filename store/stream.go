package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/stagedoor/stagedoor"
)

// CreateStream creates stream name for user owner. It returns an *InvalidError for a bad
// name, ErrNotFound for an unknown owner and ErrConflict when the name is taken by
// another user or stream.
func (db *DB) CreateStream(ctx context.Context, name, owner string, authRequired bool) (stagedoor.Stream, error) {
	if err := stagedoor.ValidUsername(name); err != nil {
		reason := err.Error()
		if ie, ok := errors.AsType[*stagedoor.InvalidError](err); ok {
			reason = ie.Reason
		}
		return stagedoor.Stream{}, &stagedoor.InvalidError{Field: "stream name", Reason: reason}
	}
	auth := 0
	if authRequired {
		auth = 1
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var uid int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM users WHERE name = $1`, owner).Scan(&uid)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("user %s: %w", owner, stagedoor.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := nameFree(ctx, tx, name, uid); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO streams (name, user_id, auth_required, created_at) VALUES ($1, $2, $3, $4)`,
			name, uid, auth, db.now())
		return err
	})
	if err != nil {
		if isUniqueViolation(err) {
			err = stagedoor.ErrConflict
		}
		return stagedoor.Stream{}, fmt.Errorf("create stream %s: %w", name, err)
	}
	return db.StreamByName(ctx, name)
}

const streamColumns = `s.id, s.name, s.user_id, u.name, u.active, s.auth_required, coalesce(u.password_hash, ''),
	s.created_at, l.source_id, l.source_type, l.live_since`

func scanStream(r rowScanner) (stagedoor.Stream, error) {
	var (
		s          stagedoor.Stream
		active     int
		auth       int
		created    int64
		sourceID   sql.NullString
		sourceType sql.NullString
		since      sql.NullInt64
	)
	if err := r.Scan(&s.ID, &s.Name, &s.UserID, &s.UserName, &active, &auth, &s.PasswordHash, &created,
		&sourceID, &sourceType, &since); err != nil {
		return stagedoor.Stream{}, err
	}
	s.Active, s.AuthRequired = active == 1, auth == 1
	s.CreatedAt = time.Unix(created, 0).UTC()
	if sourceID.Valid {
		s.Live = &stagedoor.LiveState{Name: s.Name, UserID: s.UserID, UserName: s.UserName,
			SourceID: sourceID.String, SourceType: sourceType.String, Since: time.Unix(since.Int64, 0).UTC()}
	}
	return s, nil
}

// StreamByName returns the stream with its owner's state and password hash; ErrNotFound
// if none. One indexed read: it is on MediaMTX's serial auth path.
func (db *DB) StreamByName(ctx context.Context, name string) (stagedoor.Stream, error) {
	s, err := scanStream(db.db.QueryRowContext(ctx, `SELECT `+streamColumns+`
		FROM streams s JOIN users u ON u.id = s.user_id LEFT JOIN live_state l ON l.name = s.name
		WHERE s.name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return stagedoor.Stream{}, fmt.Errorf("stream %s: %w", name, stagedoor.ErrNotFound)
	}
	if err != nil {
		return stagedoor.Stream{}, fmt.Errorf("stream %s: %w", name, err)
	}
	return s, nil
}

// Streams returns the streams of owner (all streams when owner is ""), ordered by name.
// It returns ErrNotFound for an unknown owner.
func (db *DB) Streams(ctx context.Context, owner string) ([]stagedoor.Stream, error) {
	if owner != "" {
		if _, err := db.UserByName(ctx, owner); err != nil {
			return nil, err
		}
	}
	rows, err := db.db.QueryContext(ctx, `SELECT `+streamColumns+`
		FROM streams s JOIN users u ON u.id = s.user_id LEFT JOIN live_state l ON l.name = s.name
		WHERE $1 = '' OR u.name = $1 ORDER BY s.name`, owner)
	if err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	defer rows.Close()
	var out []stagedoor.Stream
	for rows.Next() {
		s, err := scanStream(rows)
		if err != nil {
			return nil, fmt.Errorf("list streams: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	return out, nil
}

// DeleteStream removes a stream; ErrNotFound if none. A live publisher on it is not
// kicked here (the caller decides).
func (db *DB) DeleteStream(ctx context.Context, name string) error {
	res, err := db.exec(ctx, `DELETE FROM streams WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("delete stream %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("stream %s: %w", name, stagedoor.ErrNotFound)
	}
	return nil
}

// SetStreamAuth turns a stream's authentication on (publishes need the owner's name and
// password) or off (any publish to the name is accepted while the owner is not banned).
// It returns ErrNotFound for an unknown stream. A change moves the policy generation.
func (db *DB) SetStreamAuth(ctx context.Context, name string, required bool) error {
	v := 0
	if required {
		v = 1
	}
	// Only a real change is written, so that setting the same value keeps the auth
	// path's cache.
	res, err := db.exec(ctx, `UPDATE streams SET auth_required = $1 WHERE name = $2 AND auth_required != $1`, v, name)
	if err != nil {
		return fmt.Errorf("set stream auth %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	if _, err := db.StreamByName(ctx, name); err != nil {
		return err
	}
	return nil
}

// ChannelByName resolves a public name to its owner; ErrNotFound if nobody owns it.
func (db *DB) ChannelByName(ctx context.Context, name string) (stagedoor.Channel, error) {
	if s, err := db.StreamByName(ctx, name); err == nil {
		return stagedoor.Channel{Name: s.Name, UserID: s.UserID, UserName: s.UserName, Active: s.Active, Live: s.Live}, nil
	} else if !errors.Is(err, stagedoor.ErrNotFound) {
		return stagedoor.Channel{}, err
	}
	u, err := db.UserByName(ctx, name)
	if err != nil {
		return stagedoor.Channel{}, err
	}
	return stagedoor.Channel{Name: u.Name, UserID: u.ID, UserName: u.Name, Active: u.Active, Live: u.Live}, nil
}
