package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/stagedoor/stagedoor"
)

const panelAccountColumns = `a.id, a.name, a.role, coalesce(u.name, ''), coalesce(u.active, 1), a.created_at`

func scanPanelAccount(r rowScanner, extra ...any) (stagedoor.PanelAccount, error) {
	var (
		a       stagedoor.PanelAccount
		active  int
		created int64
	)
	if err := r.Scan(append([]any{&a.ID, &a.Name, &a.Role, &a.Channel, &active, &created}, extra...)...); err != nil {
		return a, err
	}
	a.Active = active == 1
	a.CreatedAt = time.Unix(created, 0).UTC()
	return a, nil
}

// CreateOperator creates an operator's panel account with a bcrypt hash of its panel
// password. *InvalidError for a bad name or a hash that is not bcrypt-shaped,
// ErrConflict when a panel account holds the name.
func (db *DB) CreateOperator(ctx context.Context, name, hash string) (stagedoor.PanelAccount, error) {
	if err := stagedoor.ValidUsername(name); err != nil {
		return stagedoor.PanelAccount{}, err
	}
	if !stagedoor.IsHashShaped(hash) {
		return stagedoor.PanelAccount{}, &stagedoor.InvalidError{Field: "password hash", Reason: "not a bcrypt hash"}
	}
	now := db.now()
	var id int64
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO panel_accounts (name, role, password_hash, created_at)
			VALUES ($1, 'operator', $2, $3) RETURNING id`, name, hash, now).Scan(&id)
	})
	if isUniqueViolation(err) {
		return stagedoor.PanelAccount{}, fmt.Errorf("create operator %s: %w", name, stagedoor.ErrConflict)
	}
	if err != nil {
		return stagedoor.PanelAccount{}, fmt.Errorf("create operator %s: %w", name, err)
	}
	return stagedoor.PanelAccount{ID: id, Name: name, Role: stagedoor.RoleOperator, Active: true,
		CreatedAt: time.Unix(now, 0).UTC()}, nil
}

// PanelAccount returns the panel account called name and its password hash;
// ErrNotFound for an unknown name.
func (db *DB) PanelAccount(ctx context.Context, name string) (stagedoor.PanelAccount, string, error) {
	var hash string
	a, err := scanPanelAccount(db.db.QueryRowContext(ctx, `SELECT `+panelAccountColumns+`, a.password_hash
		FROM panel_accounts a LEFT JOIN users u ON u.id = a.user_id WHERE a.name = $1`, name), &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return a, "", fmt.Errorf("panel account %s: %w", name, stagedoor.ErrNotFound)
	}
	if err != nil {
		return a, "", fmt.Errorf("panel account %s: %w", name, err)
	}
	return a, hash, nil
}

// PanelAccounts lists every panel account ordered by name. Its only errors are the
// database's.
func (db *DB) PanelAccounts(ctx context.Context) ([]stagedoor.PanelAccount, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+panelAccountColumns+`
		FROM panel_accounts a LEFT JOIN users u ON u.id = a.user_id ORDER BY a.name`)
	if err != nil {
		return nil, fmt.Errorf("list panel accounts: %w", err)
	}
	defer rows.Close()
	out := []stagedoor.PanelAccount{}
	for rows.Next() {
		a, err := scanPanelAccount(rows)
		if err != nil {
			return nil, fmt.Errorf("list panel accounts: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// SetPanelPassword replaces the panel password hash of the account called name and
// ends every session of it, in one transaction. *InvalidError for a hash that is not
// bcrypt-shaped, ErrNotFound for an unknown account.
func (db *DB) SetPanelPassword(ctx context.Context, name, hash string) error {
	if !stagedoor.IsHashShaped(hash) {
		return &stagedoor.InvalidError{Field: "password hash", Reason: "not a bcrypt hash"}
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		id, err := panelAccountID(ctx, tx, name)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE panel_accounts SET password_hash = $1 WHERE id = $2`, hash, id); err != nil {
			return err
		}
		_, err = endSessions(ctx, tx, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("set panel password of %s: %w", name, err)
	}
	return nil
}

// panelAccountID returns the id of the panel account called name; ErrNotFound if none.
func panelAccountID(ctx context.Context, tx *sql.Tx, name string) (int64, error) {
	return idByName(ctx, tx, `SELECT id FROM panel_accounts WHERE name = $1`, "panel account", name)
}

// endSessions deletes every session of the account id (a password change, an invite
// used, sign out everywhere) and says how many there were.
func endSessions(ctx context.Context, tx *sql.Tx, id int64) (int64, error) {
	res, err := tx.ExecContext(ctx, `DELETE FROM panel_sessions WHERE account_id = $1`, id)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// CreatePanelSession records a session of the account called name under the digest of
// its id, created and seen now. ErrNotFound for an unknown account, ErrInactive when the
// streamer's channel is banned.
func (db *DB) CreatePanelSession(ctx context.Context, name string, d stagedoor.Digest) error {
	now := db.now()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		a, err := scanPanelAccount(tx.QueryRowContext(ctx, `SELECT `+panelAccountColumns+`
			FROM panel_accounts a LEFT JOIN users u ON u.id = a.user_id WHERE a.name = $1`, name))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("panel account %s: %w", name, stagedoor.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if !a.Active {
			return stagedoor.ErrInactive
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO panel_sessions (digest, account_id, created_at, seen_at) VALUES ($1, $2, $3, $4)`,
			d[:], a.ID, now, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("create panel session: %w", err)
	}
	return nil
}

// PanelSession returns the session with this digest and its account; ErrNotFound for
// an unknown or ended session, and for a session whose streamer's channel is banned.
// Timeouts are the caller's to check.
func (db *DB) PanelSession(ctx context.Context, d stagedoor.Digest) (stagedoor.PanelSession, error) {
	var (
		s             stagedoor.PanelSession
		created, seen int64
	)
	a, err := scanPanelAccount(db.db.QueryRowContext(ctx, `SELECT `+panelAccountColumns+`, s.created_at, s.seen_at
		FROM panel_sessions s JOIN panel_accounts a ON a.id = s.account_id LEFT JOIN users u ON u.id = a.user_id
		WHERE s.digest = $1`, d[:]), &created, &seen)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !a.Active) {
		return s, fmt.Errorf("panel session: %w", stagedoor.ErrNotFound)
	}
	if err != nil {
		return s, fmt.Errorf("panel session: %w", err)
	}
	s.Account, s.CreatedAt, s.SeenAt = a, time.Unix(created, 0).UTC(), time.Unix(seen, 0).UTC()
	return s, nil
}

// TouchPanelSession records that the session was used now; an ended session is no error.
func (db *DB) TouchPanelSession(ctx context.Context, d stagedoor.Digest) error {
	if _, err := db.exec(ctx, `UPDATE panel_sessions SET seen_at = $1 WHERE digest = $2`, db.now(), d[:]); err != nil {
		return fmt.Errorf("touch panel session: %w", err)
	}
	return nil
}

// EndPanelSession ends one session (sign out); an ended session is no error.
func (db *DB) EndPanelSession(ctx context.Context, d stagedoor.Digest) error {
	if _, err := db.exec(ctx, `DELETE FROM panel_sessions WHERE digest = $1`, d[:]); err != nil {
		return fmt.Errorf("end panel session: %w", err)
	}
	return nil
}

// EndPanelSessions ends every session of the account called name (sign out everywhere)
// and says how many there were. ErrNotFound for an unknown account.
func (db *DB) EndPanelSessions(ctx context.Context, name string) (int64, error) {
	var n int64
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		id, err := panelAccountID(ctx, tx, name)
		if err != nil {
			return err
		}
		n, err = endSessions(ctx, tx, id)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("end panel sessions: %w", err)
	}
	return n, nil
}

// PrunePanelSessions deletes sessions created before createdBefore or not seen since
// seenBefore, and says how many.
func (db *DB) PrunePanelSessions(ctx context.Context, createdBefore, seenBefore time.Time) (int64, error) {
	res, err := db.exec(ctx, `DELETE FROM panel_sessions WHERE created_at < $1 OR seen_at < $2`,
		createdBefore.UTC().Unix(), seenBefore.UTC().Unix())
	if err != nil {
		return 0, fmt.Errorf("prune panel sessions: %w", err)
	}
	return res.RowsAffected()
}

// CreatePanelInvite records an invite for the streamer of channel under the digest of
// its token, expiring at expires. ErrNotFound for an unknown channel.
func (db *DB) CreatePanelInvite(ctx context.Context, channel string, d stagedoor.Digest, expires time.Time) error {
	now := db.now()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		id, err := userID(ctx, tx, channel)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO panel_invites (digest, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
			d[:], id, now, expires.UTC().Unix())
		return err
	})
	if err != nil {
		return fmt.Errorf("create invite for %s: %w", channel, err)
	}
	return nil
}

// PanelInvite returns the invite with this digest; ErrNotFound when it is unknown, used
// or expired (the same answer for all three).
func (db *DB) PanelInvite(ctx context.Context, d stagedoor.Digest) (stagedoor.PanelInvite, error) {
	var (
		inv     stagedoor.PanelInvite
		expires int64
	)
	err := db.db.QueryRowContext(ctx, `SELECT u.name, i.expires_at FROM panel_invites i JOIN users u ON u.id = i.user_id
		WHERE i.digest = $1 AND i.used_at IS NULL AND i.expires_at > $2`, d[:], db.now()).Scan(&inv.Channel, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return inv, fmt.Errorf("invite: %w", stagedoor.ErrNotFound)
	}
	if err != nil {
		return inv, fmt.Errorf("invite: %w", err)
	}
	inv.ExpiresAt = time.Unix(expires, 0).UTC()
	return inv, nil
}

// UsePanelInvite spends the invite with this digest: in one transaction it marks the
// invite used, sets the panel password hash of the channel's streamer account (creating
// the account, named after the channel, if there is none) and ends that account's
// sessions. ErrNotFound when the invite is unknown, used or expired; ErrConflict when an
// operator account holds the channel's name; *InvalidError for a hash that is not
// bcrypt-shaped. A refused call changes nothing, and the invite stays usable.
func (db *DB) UsePanelInvite(ctx context.Context, d stagedoor.Digest, hash string) (stagedoor.PanelAccount, error) {
	if !stagedoor.IsHashShaped(hash) {
		return stagedoor.PanelAccount{}, &stagedoor.InvalidError{Field: "password hash", Reason: "not a bcrypt hash"}
	}
	now := db.now()
	var a stagedoor.PanelAccount
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var (
			userID int64
			name   string
		)
		err := tx.QueryRowContext(ctx, `SELECT u.id, u.name FROM panel_invites i JOIN users u ON u.id = i.user_id
			WHERE i.digest = $1 AND i.used_at IS NULL AND i.expires_at > $2`, d[:], now).Scan(&userID, &name)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("invite: %w", stagedoor.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE panel_invites SET used_at = $1 WHERE digest = $2`, now, d[:]); err != nil {
			return err
		}
		var role string
		err = tx.QueryRowContext(ctx, `SELECT role FROM panel_accounts WHERE name = $1 OR user_id = $2`, name, userID).Scan(&role)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := tx.ExecContext(ctx, `INSERT INTO panel_accounts (name, role, user_id, password_hash, created_at)
				VALUES ($1, 'streamer', $2, $3, $4)`, name, userID, hash, now); err != nil {
				return err
			}
		case err != nil:
			return err
		case role != stagedoor.RoleStreamer:
			return fmt.Errorf("panel account %s is an operator: %w", name, stagedoor.ErrConflict)
		default:
			var id int64
			if err := tx.QueryRowContext(ctx, `SELECT id FROM panel_accounts WHERE user_id = $1`, userID).Scan(&id); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE panel_accounts SET password_hash = $1 WHERE id = $2`, hash, id); err != nil {
				return err
			}
			if _, err := endSessions(ctx, tx, id); err != nil {
				return err
			}
		}
		a, err = scanPanelAccount(tx.QueryRowContext(ctx, `SELECT `+panelAccountColumns+`
			FROM panel_accounts a LEFT JOIN users u ON u.id = a.user_id WHERE a.user_id = $1`, userID))
		return err
	})
	if err != nil {
		return stagedoor.PanelAccount{}, fmt.Errorf("use invite: %w", err)
	}
	return a, nil
}
