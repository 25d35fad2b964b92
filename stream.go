package stagedoor

import "time"

// Stream is a public name a user publishes to with user/password, or with no auth.
type Stream struct {
	ID           int64
	Name         string
	UserID       int64
	UserName     string
	Active       bool // the owner is not banned
	AuthRequired bool
	// PasswordHash is the owner's bcrypt hash, "" if none is set. It is a publish
	// credential: never log or show it outside `user passwd`.
	PasswordHash string
	CreatedAt    time.Time
	Live         *LiveState
}

// Channel is a public name live/<Name> with its owner: a user's own channel or a stream.
type Channel struct {
	Name     string
	UserID   int64
	UserName string
	Active   bool
	Live     *LiveState
}
