package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/stagedoor/stagedoor"
)

// CreateUser creates an active user and its first stream key in one transaction.
// It returns an *InvalidError for a bad name and ErrConflict if the name is taken.
func (db *DB) CreateUser(ctx context.Context, name string) (stagedoor.NewUser, error) {
	if err := stagedoor.ValidUsername(name); err != nil {
		return stagedoor.NewUser{}, err
	}
	key := stagedoor.NewKey()
	nu := stagedoor.NewUser{User: stagedoor.User{Name: name, Active: true}, StreamKey: key, Fingerprint: stagedoor.Fingerprint(key)}
	now := db.now()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if err := nameFree(ctx, tx, name, 0); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `INSERT INTO users (name, active, created_at) VALUES ($1, 1, $2) RETURNING id`,
			name, now).Scan(&nu.ID); err != nil {
			return err
		}
		return insertKey(ctx, tx, nu.ID, key, "default", now)
	})
	if err != nil {
		if isUniqueViolation(err) || errors.Is(err, stagedoor.ErrConflict) {
			return stagedoor.NewUser{}, fmt.Errorf("create user %s: %w", name, stagedoor.ErrConflict)
		}
		return stagedoor.NewUser{}, fmt.Errorf("create user %s: %w", name, err)
	}
	nu.CreatedAt = time.Unix(now, 0).UTC()
	return nu, nil
}

const userColumns = `u.id, u.name, u.active, u.created_at, u.password_hash IS NOT NULL,
	l.source_id, l.source_type, l.live_since, l.key_id`

type rowScanner interface{ Scan(dest ...any) error }

func scanUser(r rowScanner) (stagedoor.User, error) {
	var (
		u          stagedoor.User
		active     int
		created    int64
		sourceID   sql.NullString
		sourceType sql.NullString
		since      sql.NullInt64
		keyID      sql.NullInt64
	)
	if err := r.Scan(&u.ID, &u.Name, &active, &created, &u.HasPassword, &sourceID, &sourceType, &since, &keyID); err != nil {
		return stagedoor.User{}, err
	}
	u.Active = active == 1
	u.CreatedAt = time.Unix(created, 0).UTC()
	if sourceID.Valid {
		u.Live = &stagedoor.LiveState{
			Name: u.Name, UserID: u.ID, UserName: u.Name, KeyID: keyID.Int64,
			SourceID: sourceID.String, SourceType: sourceType.String,
			Since: time.Unix(since.Int64, 0).UTC(),
		}
	}
	return u, nil
}

// UserByName returns the user called name, with its live state; ErrNotFound if none.
func (db *DB) UserByName(ctx context.Context, name string) (stagedoor.User, error) {
	row := db.db.QueryRowContext(ctx, `SELECT `+userColumns+`
		FROM users u LEFT JOIN live_state l ON l.name = u.name WHERE u.name = $1`, name)
	u, err := scanUser(row)
	if errors.Is(err, sql.ErrNoRows) {
		return stagedoor.User{}, fmt.Errorf("user %s: %w", name, stagedoor.ErrNotFound)
	}
	if err != nil {
		return stagedoor.User{}, fmt.Errorf("user %s: %w", name, err)
	}
	return u, nil
}

// Users returns every user ordered by name. Its only errors are the database's.
func (db *DB) Users(ctx context.Context) ([]stagedoor.User, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+userColumns+`
		FROM users u LEFT JOIN live_state l ON l.name = u.name ORDER BY u.name`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []stagedoor.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}

// SetActive bans (active=false) or unbans a user. It returns ErrNotFound for an unknown name.
// Banning takes effect on the next auth call (the auth path reads the flag every time);
// a running service also notices it at once (policy generation) and kicks the user's live
// streams. A change of state queues a user.banned / user.unbanned event.
func (db *DB) SetActive(ctx context.Context, name string, active bool) error {
	v := 0
	if active {
		v = 1
	}
	now := db.now()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var cur int
		err := tx.QueryRowContext(ctx, `SELECT active FROM users WHERE name = $1`, name).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("user %s: %w", name, stagedoor.ErrNotFound)
		}
		if err != nil || cur == v {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET active = $1 WHERE name = $2`, v, name); err != nil {
			return err
		}
		ev := stagedoor.EventUserBanned
		if active {
			ev = stagedoor.EventUserUnbanned
		}
		return addEvent(ctx, tx, ev, name, name, now)
	})
	if err != nil {
		return fmt.Errorf("set active for %s: %w", name, err)
	}
	return nil
}

// nameFree returns ErrConflict if name is taken in the public namespace live/<name>: by a
// user, or by a stream not owned by owner (a user may name a stream after themselves).
func nameFree(ctx context.Context, tx *sql.Tx, name string, owner int64) error {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM users WHERE name = $1 AND id != $2) +
		(SELECT count(*) FROM streams WHERE name = $1)`, name, owner).Scan(&n)
	if err != nil {
		return err
	}
	if n > 0 {
		return stagedoor.ErrConflict
	}
	return nil
}

// PasswordHash returns the user's publishing password hash, "" when none is set;
// stagedoor.ErrNotFound for an unknown user. The hash is a publish credential: only the
// operator and the user themselves may see it (the CLI's passwd output, the panel).
func (db *DB) PasswordHash(ctx context.Context, name string) (string, error) {
	var h string
	err := db.db.QueryRowContext(ctx, `SELECT coalesce(password_hash, '') FROM users WHERE name = $1`, name).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("user %s: %w", name, stagedoor.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("password hash of %s: %w", name, err)
	}
	return h, nil
}
