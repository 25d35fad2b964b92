package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/stagedoor/stagedoor"
)

func userID(ctx context.Context, tx *sql.Tx, name string) (int64, error) {
	return idByName(ctx, tx, `SELECT id FROM users WHERE name = $1`, "user", name)
}

// idByName runs query (one id by one name parameter) and returns the id; ErrNotFound,
// naming what, when no row matches.
func idByName(ctx context.Context, tx *sql.Tx, query, what, name string) (int64, error) {
	var id int64
	err := tx.QueryRowContext(ctx, query, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%s %s: %w", what, name, stagedoor.ErrNotFound)
	}
	return id, err
}

func addEvent(ctx context.Context, tx *sql.Tx, event, user, channel string, now int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO outbox (at, event, username, channel, next_at) VALUES ($1, $2, $3, $4, $5)`,
		now, event, user, channel, now)
	return err
}

// AddKey adds a labelled key to the user and returns it (shown once). ErrNotFound for an
// unknown user, *InvalidError for a bad label.
func (db *DB) AddKey(ctx context.Context, name, label string) (stagedoor.IssuedKey, error) {
	if err := stagedoor.ValidLabel(label); err != nil {
		return stagedoor.IssuedKey{}, err
	}
	key := stagedoor.IssuedKey{UserName: name, StreamKey: stagedoor.NewKey(), Label: label}
	key.Fingerprint = stagedoor.Fingerprint(key.StreamKey)
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		id, err := userID(ctx, tx, name)
		if err != nil {
			return err
		}
		return insertKey(ctx, tx, id, key.StreamKey, label, db.now())
	})
	if err != nil {
		return stagedoor.IssuedKey{}, fmt.Errorf("add key for %s: %w", name, err)
	}
	return key, nil
}

// Keys lists the user's keys, oldest first; ErrNotFound for an unknown user.
func (db *DB) Keys(ctx context.Context, name string) ([]stagedoor.KeyInfo, error) {
	if _, err := db.UserByName(ctx, name); err != nil {
		return nil, err
	}
	rows, err := db.db.QueryContext(ctx, `SELECT k.id, k.fingerprint, k.label, k.created_at, k.last_used_at
		FROM stream_keys k JOIN users u ON u.id = k.user_id WHERE u.name = $1 ORDER BY k.created_at, k.id`, name)
	if err != nil {
		return nil, fmt.Errorf("list keys of %s: %w", name, err)
	}
	defer rows.Close()
	out := []stagedoor.KeyInfo{}
	for rows.Next() {
		var (
			k       stagedoor.KeyInfo
			created int64
			used    sql.NullInt64
		)
		if err := rows.Scan(&k.ID, &k.Fingerprint, &k.Label, &created, &used); err != nil {
			return nil, fmt.Errorf("list keys of %s: %w", name, err)
		}
		k.CreatedAt = time.Unix(created, 0).UTC()
		if used.Valid {
			t := time.Unix(used.Int64, 0).UTC()
			k.LastUsedAt = &t
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// revokeWhere moves the matching keys to revoked_keys and deletes them; it returns how
// many were revoked. where is one of the constant clauses of this file, never input: a
// WHERE clause (WHERE true for all keys) whose placeholders start at $3 and take args.
func revokeWhere(ctx context.Context, tx *sql.Tx, r stagedoor.Revocation, now int64, where string, args ...any) (int64, error) {
	keep := 0
	if r.KeepLive {
		keep = 1
	}
	// The upsert replaces an earlier revocation of the same digest. SQLite needs the
	// WHERE of INSERT … SELECT before ON CONFLICT (where always has one), or it reads ON
	// as a join constraint.
	//nolint:gosec // G202: where is a constant clause of this file, never input
	q := `INSERT INTO revoked_keys (digest, user_id, fingerprint, keep_live, revoked_at)
		SELECT digest, user_id, fingerprint, $1, $2 FROM stream_keys ` + where + `
		ON CONFLICT (digest) DO UPDATE SET user_id = excluded.user_id, fingerprint = excluded.fingerprint,
			keep_live = excluded.keep_live, revoked_at = excluded.revoked_at`
	if _, err := tx.ExecContext(ctx, q, append([]any{keep, now}, args...)...); err != nil {
		return 0, err
	}
	// Exactly the keys just revoked: a digest is never issued twice, so any key whose
	// digest is revoked is one of them.
	res, err := tx.ExecContext(ctx, `DELETE FROM stream_keys WHERE digest IN (SELECT digest FROM revoked_keys)`)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// endKeepLive ends the keep-live grace of the keys revoked earlier, of one user (userID)
// or of everyone (userID 0), unless r keeps streams live: a reset without keep-live means
// "every old stream stops", and the keys revoked with keep-live before it are no longer
// among the keys the reset revokes.
func endKeepLive(ctx context.Context, tx *sql.Tx, r stagedoor.Revocation, userID int64) error {
	if r.KeepLive {
		return nil
	}
	_, err := tx.ExecContext(ctx, `UPDATE revoked_keys SET keep_live = 0 WHERE keep_live = 1 AND ($1 = 0 OR user_id = $1)`, userID)
	return err
}

// RevokeKey revokes the user's key with this fingerprint. ErrNotFound if the user has no
// such key.
func (db *DB) RevokeKey(ctx context.Context, name, fingerprint string, r stagedoor.Revocation) error {
	now := db.now()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		id, err := userID(ctx, tx, name)
		if err != nil {
			return err
		}
		n, err := revokeWhere(ctx, tx, r, now, `WHERE user_id = $3 AND fingerprint = $4`, id, fingerprint)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("key %s of %s: %w", fingerprint, name, stagedoor.ErrNotFound)
		}
		return addEvent(ctx, tx, stagedoor.EventKeyRotated, name, name, now)
	})
	if err != nil {
		return fmt.Errorf("revoke key: %w", err)
	}
	return nil
}

// ResetKeys replaces every key of the user with one new key and kicks streams on the old
// ones (see ResetKeysWith). It returns ErrNotFound for an unknown user.
func (db *DB) ResetKeys(ctx context.Context, name string) (string, error) {
	k, err := db.ResetKeysWith(ctx, name, stagedoor.Revocation{})
	return k.StreamKey, err
}

// ResetKeysWith replaces every key of the user with one new key, in one transaction.
// Without KeepLive it also ends the keep-live grace of the user's keys revoked earlier,
// so every stream on an old key is kicked. It returns ErrNotFound for an unknown user.
func (db *DB) ResetKeysWith(ctx context.Context, name string, r stagedoor.Revocation) (stagedoor.IssuedKey, error) {
	key := stagedoor.IssuedKey{UserName: name, StreamKey: stagedoor.NewKey(), Label: "default"}
	key.Fingerprint = stagedoor.Fingerprint(key.StreamKey)
	now := db.now()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		id, err := userID(ctx, tx, name)
		if err != nil {
			return err
		}
		if err := endKeepLive(ctx, tx, r, id); err != nil {
			return err
		}
		if _, err := revokeWhere(ctx, tx, r, now, `WHERE user_id = $3`, id); err != nil {
			return err
		}
		if err := insertKey(ctx, tx, id, key.StreamKey, key.Label, now); err != nil {
			return err
		}
		return addEvent(ctx, tx, stagedoor.EventKeyRotated, name, name, now)
	})
	if err != nil {
		return stagedoor.IssuedKey{}, fmt.Errorf("reset keys of %s: %w", name, err)
	}
	return key, nil
}

// ResetAllKeys gives every user one new key and revokes all old keys, in one transaction
// (a breach response: nothing half-rotated); without KeepLive it also ends every
// keep-live grace of keys revoked earlier. It returns the new keys ordered by user,
// none for an empty database; its only errors are the database's.
func (db *DB) ResetAllKeys(ctx context.Context, r stagedoor.Revocation) ([]stagedoor.IssuedKey, error) {
	now := db.now()
	var out []stagedoor.IssuedKey
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, `SELECT id, name FROM users ORDER BY name`)
		if err != nil {
			return err
		}
		type u struct {
			id   int64
			name string
		}
		var users []u
		for rows.Next() {
			var x u
			if err := rows.Scan(&x.id, &x.name); err != nil {
				rows.Close()
				return err
			}
			users = append(users, x)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if err := endKeepLive(ctx, tx, r, 0); err != nil {
			return err
		}
		if _, err := revokeWhere(ctx, tx, r, now, `WHERE true`); err != nil {
			return err
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO stream_keys (user_id, digest, fingerprint, label, created_at) VALUES ($1, $2, $3, 'default', $4)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		ev, err := tx.PrepareContext(ctx, `INSERT INTO outbox (at, event, username, channel, next_at) VALUES ($1, $2, $3, $4, $5)`)
		if err != nil {
			return err
		}
		defer ev.Close()
		for _, x := range users {
			k := stagedoor.NewKey()
			d := stagedoor.KeyDigest(k)
			if _, err := ins.ExecContext(ctx, x.id, d[:], d.Fingerprint(), now); err != nil {
				return err
			}
			if _, err := ev.ExecContext(ctx, now, stagedoor.EventKeyRotated, x.name, x.name, now); err != nil {
				return err
			}
			out = append(out, stagedoor.IssuedKey{UserName: x.name, StreamKey: k, Fingerprint: d.Fingerprint(), Label: "default"})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reset all keys: %w", err)
	}
	return out, nil
}

// RevokedKey returns the revocation of a key digest; ErrNotFound if it was never revoked.
func (db *DB) RevokedKey(ctx context.Context, d stagedoor.Digest) (stagedoor.RevokedKeyInfo, error) {
	var (
		r            stagedoor.RevokedKeyInfo
		active, keep int
	)
	err := db.db.QueryRowContext(ctx, `SELECT r.user_id, u.name, u.active, r.fingerprint, r.keep_live
		FROM revoked_keys r JOIN users u ON u.id = r.user_id WHERE r.digest = $1`, d[:]).
		Scan(&r.UserID, &r.UserName, &active, &r.Fingerprint, &keep)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("revoked key %s: %w", d.Fingerprint(), stagedoor.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("revoked key %s: %w", d.Fingerprint(), err)
	}
	r.Active, r.KeepLive = active == 1, keep == 1
	return r, nil
}

// PolicyGeneration changes whenever a credential may have been added, changed or
// revoked (user or stream created, stream deleted, ban or unban, password set, key added,
// revoked or reset), including by another process such as the CLI, and never returns to
// an earlier value: the service compares it with the last one it saw and then drops its
// cached auth answers (including "no such key") and reconciles. Live state, outbox and
// audit writes leave it alone. Triggers in the schema move it, so no method can forget.
// Its only errors are the database's.
func (db *DB) PolicyGeneration(ctx context.Context) (int64, error) {
	st, err := db.stmts.prepared(ctx, db.db, `SELECT value FROM policy_generation WHERE id = 1`)
	if err != nil {
		return 0, fmt.Errorf("policy generation: %w", err)
	}
	var v int64
	if err := st.QueryRowContext(ctx).Scan(&v); err != nil {
		return 0, fmt.Errorf("policy generation: %w", err)
	}
	return v, nil
}
