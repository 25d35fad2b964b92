package store

import (
	"context"
	"fmt"
	"time"

	"github.com/stagedoor/stagedoor"
)

// AddEvent queues an event (the service's own: stream.started / stream.stopped), due at
// once. Its only errors are the database's.
func (db *DB) AddEvent(ctx context.Context, event, user, channel string) error {
	now := db.now()
	if _, err := db.exec(ctx, `INSERT INTO outbox (at, event, username, channel, next_at) VALUES ($1, $2, $3, $4, $5)`,
		now, event, user, channel, now); err != nil {
		return fmt.Errorf("queue %s: %w", event, err)
	}
	return nil
}

// DueEvents returns up to limit undelivered events whose next attempt is due, oldest first.
// Its only errors are the database's.
func (db *DB) DueEvents(ctx context.Context, limit int) ([]stagedoor.OutboxEvent, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT id, at, event, username, channel, attempts FROM outbox
		WHERE done = 0 AND next_at <= $1 ORDER BY id LIMIT $2`, db.now(), limit)
	if err != nil {
		return nil, fmt.Errorf("due events: %w", err)
	}
	defer rows.Close()
	var out []stagedoor.OutboxEvent
	for rows.Next() {
		var (
			e  stagedoor.OutboxEvent
			at int64
		)
		if err := rows.Scan(&e.ID, &at, &e.Event, &e.User, &e.Channel, &e.Attempts); err != nil {
			return nil, fmt.Errorf("due events: %w", err)
		}
		e.At = time.Unix(at, 0).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// FinishEvent marks an event delivered (or given up on): it is never due again. An
// unknown id is not an error; the only errors are the database's.
func (db *DB) FinishEvent(ctx context.Context, id int64) error {
	if _, err := db.exec(ctx, `UPDATE outbox SET done = 1, attempts = attempts + 1 WHERE id = $1`, id); err != nil {
		return fmt.Errorf("finish event: %w", err)
	}
	return nil
}

// RetryEvent counts an attempt and schedules the next one after delay, never sooner. An
// unknown id is not an error; the only errors are the database's.
func (db *DB) RetryEvent(ctx context.Context, id int64, delay time.Duration) error {
	// Round up to whole seconds (the column's unit), so a delay is never shortened.
	next := db.Now().Add(delay + time.Second - time.Nanosecond).UTC().Unix()
	if _, err := db.exec(ctx, `UPDATE outbox SET attempts = attempts + 1, next_at = $1, claimed_by = NULL, claimed_until = NULL WHERE id = $2`,
		next, id); err != nil {
		return fmt.Errorf("retry event: %w", err)
	}
	return nil
}

// PruneEvents deletes finished events older than before; pending events stay, however
// old. Its only errors are the database's.
func (db *DB) PruneEvents(ctx context.Context, before time.Time) error {
	if _, err := db.exec(ctx, `DELETE FROM outbox WHERE done = 1 AND at < $1`, before.UTC().Unix()); err != nil {
		return fmt.Errorf("prune events: %w", err)
	}
	return nil
}
