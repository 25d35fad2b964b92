package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"github.com/stagedoor/stagedoor"
)

// AppendAudit writes entries in one transaction (the auth path batches them). Its only
// errors are the database's.
func (db *DB) AppendAudit(ctx context.Context, entries []stagedoor.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO audit (at, kind, username, key_fp, ip, protocol, decision, reason)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, e := range entries {
			if _, err := st.ExecContext(ctx, e.At.UTC().Unix(), e.Kind, e.User, e.KeyFP, e.IP, e.Protocol, e.Decision, e.Reason); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}

// Audit returns matching entries, newest first: an empty slice, never nil, when none
// match (the admin API sends it as a JSON array). Its only errors are the database's.
func (db *DB) Audit(ctx context.Context, f stagedoor.AuditFilter) ([]stagedoor.AuditEntry, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	until := int64(math.MaxInt64)
	if !f.Until.IsZero() {
		until = f.Until.UTC().Unix()
	}
	rows, err := db.db.QueryContext(ctx, `SELECT at, kind, username, key_fp, ip, protocol, decision, reason FROM audit
		WHERE ($1 = '' OR username = $1) AND ($2 = '' OR kind = $2) AND at >= $3 AND at < $4 ORDER BY at DESC, id DESC LIMIT $5`,
		f.User, f.Kind, f.Since.UTC().Unix(), until, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	defer rows.Close()
	out := []stagedoor.AuditEntry{}
	for rows.Next() {
		var (
			e  stagedoor.AuditEntry
			at int64
		)
		if err := rows.Scan(&at, &e.Kind, &e.User, &e.KeyFP, &e.IP, &e.Protocol, &e.Decision, &e.Reason); err != nil {
			return nil, fmt.Errorf("read audit: %w", err)
		}
		e.At = time.Unix(at, 0).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// PruneAudit deletes entries older than before and returns how many. Its only errors are
// the database's.
func (db *DB) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	res, err := db.exec(ctx, `DELETE FROM audit WHERE at < $1`, before.UTC().Unix())
	if err != nil {
		return 0, fmt.Errorf("prune audit: %w", err)
	}
	return res.RowsAffected()
}
