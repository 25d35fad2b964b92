package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/stagedoor/stagedoor"
)

// UserByKeyDigest returns the owner of the key with this digest, banned or not
// (check Active); ErrNotFound if no key has it. One indexed read, no write: it is on
// MediaMTX's serial auth path.
func (db *DB) UserByKeyDigest(ctx context.Context, d stagedoor.Digest) (stagedoor.KeyOwner, error) {
	var (
		o      stagedoor.KeyOwner
		active int
	)
	err := db.db.QueryRowContext(ctx, `SELECT u.id, u.name, u.active, k.id, k.fingerprint
		FROM stream_keys k JOIN users u ON u.id = k.user_id WHERE k.digest = $1`, d[:]).
		Scan(&o.UserID, &o.UserName, &active, &o.KeyID, &o.Fingerprint)
	if errors.Is(err, sql.ErrNoRows) {
		return stagedoor.KeyOwner{}, fmt.Errorf("key %s: %w", d.Fingerprint(), stagedoor.ErrNotFound)
	}
	if err != nil {
		return stagedoor.KeyOwner{}, fmt.Errorf("key %s: %w", d.Fingerprint(), err)
	}
	o.Active = active == 1
	return o, nil
}

// TouchKey records that the key was used to go live; called from hooks, never from auth.
// A key id that names no key (revoked meanwhile) is not an error; the only errors are the
// database's.
func (db *DB) TouchKey(ctx context.Context, keyID int64) error {
	if _, err := db.exec(ctx, `UPDATE stream_keys SET last_used_at = $1 WHERE id = $2`, db.now(), keyID); err != nil {
		return fmt.Errorf("touch key: %w", err)
	}
	return nil
}

func insertKey(ctx context.Context, tx *sql.Tx, userID int64, key, label string, now int64) error {
	d := stagedoor.KeyDigest(key)
	_, err := tx.ExecContext(ctx, `INSERT INTO stream_keys (user_id, digest, fingerprint, label, created_at)
		VALUES ($1, $2, $3, $4, $5)`, userID, d[:], d.Fingerprint(), label, now)
	return err
}
