package stagedoor

import (
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// User is a streamer and their public channel.
type User struct {
	ID        int64
	Name      string
	Active    bool
	CreatedAt time.Time
	// HasPassword says whether a publishing password is set (the hash is never listed).
	HasPassword bool
	// Live is nil while the user's own channel live/<Name> is offline.
	Live *LiveState
}

// NewUser is what CreateUser returns: the user and the key, which is never readable again.
type NewUser struct {
	User
	StreamKey   string
	Fingerprint string
}

// KeyOwner is what the auth path learns from a key digest.
type KeyOwner struct {
	UserID      int64
	UserName    string
	Active      bool
	KeyID       int64
	Fingerprint string
}

// Revocation says what happens to a live stream on a key that is revoked.
type Revocation struct {
	// KeepLive lets a stream already live on the key finish; reconnects are refused.
	// False (the default): the reconciler kicks it.
	KeepLive bool
}

// KeyInfo describes a stream key without the key.
type KeyInfo struct {
	ID          int64
	Fingerprint string
	Label       string
	CreatedAt   time.Time
	LastUsedAt  *time.Time
}

// IssuedKey is a key just made, shown once.
type IssuedKey struct {
	UserName    string
	StreamKey   string
	Fingerprint string
	Label       string
}

// maxLabel bounds key labels.
const maxLabel = 64

// ValidLabel returns an *InvalidError unless label is a usable key label: at most 64
// bytes of printable UTF-8.
func ValidLabel(label string) error {
	if len(label) > maxLabel {
		return &InvalidError{Field: "label", Reason: fmt.Sprintf("longer than %d bytes", maxLabel)}
	}
	if !utf8.ValidString(label) {
		return &InvalidError{Field: "label", Reason: "not valid UTF-8"}
	}
	for _, r := range label {
		// Printable only: no C0/C1 controls, no bidi overrides or other format characters
		// that could disguise a label in a terminal.
		if !unicode.IsPrint(r) && r != ' ' {
			return &InvalidError{Field: "label", Reason: "control and format characters are not allowed"}
		}
	}
	return nil
}

// RevokedKeyInfo is what is kept of a revoked key: its owner and whether a stream live
// on it may finish.
type RevokedKeyInfo struct {
	UserID      int64
	UserName    string
	Active      bool
	Fingerprint string
	KeepLive    bool
}
