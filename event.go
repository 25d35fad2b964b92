package stagedoor

import "time"

// Outbox events, delivered to webhooks.
const (
	EventStreamStarted = "stream.started"
	EventStreamStopped = "stream.stopped"
	EventUserBanned    = "user.banned"
	EventUserUnbanned  = "user.unbanned"
	EventKeyRotated    = "key.rotated"
)

// OutboxEvent is a queued webhook event: it names a user and channel, never a key.
type OutboxEvent struct {
	ID       int64
	At       time.Time
	Event    string
	User     string
	Channel  string
	Attempts int
}
