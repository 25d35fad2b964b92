package store

import (
	"context"
	"fmt"

	"github.com/stagedoor/stagedoor"

	"golang.org/x/crypto/bcrypt"
)

// SetPasswordHash stores hash as the user's publishing password, replacing any old one
// (old encoder URLs stop working at once). It returns ErrNotFound for an unknown user
// and an *InvalidError for a hash that is malformed or whose cost is out of bounds.
func (db *DB) SetPasswordHash(ctx context.Context, name, hash string) error {
	if !stagedoor.IsHashShaped(hash) {
		return &stagedoor.InvalidError{Field: "password hash", Reason: "not a bcrypt hash"}
	}
	if c, err := bcrypt.Cost([]byte(hash)); err != nil || c < stagedoor.MinCost || c > stagedoor.MaxCost {
		return &stagedoor.InvalidError{Field: "password hash", Reason: fmt.Sprintf("cost must be %d to %d", stagedoor.MinCost, stagedoor.MaxCost)}
	}
	res, err := db.exec(ctx, `UPDATE users SET password_hash = $1 WHERE name = $2`, hash, name)
	if err != nil {
		return fmt.Errorf("set password of %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("user %s: %w", name, stagedoor.ErrNotFound)
	}
	return nil
}
