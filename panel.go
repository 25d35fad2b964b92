package stagedoor

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"time"
	"unicode/utf8"
)

// Panel roles. An operator sees every channel; a streamer only the one channel their
// account is bound to.
const (
	RoleOperator = "operator"
	RoleStreamer = "streamer"
)

// PanelAccount is a control-panel login. It is separate from publishing credentials: a
// stream key or a publish password never signs anyone in, and a panel password never
// publishes.
type PanelAccount struct {
	ID   int64
	Name string
	// Role is RoleOperator or RoleStreamer.
	Role string
	// Channel is the user (channel) a streamer's account is bound to; "" for operators.
	// A streamer's account is named after its channel.
	Channel string
	// Active is false while a streamer's channel is banned; operators are always active.
	Active    bool
	CreatedAt time.Time
}

// PanelSession is a signed-in browser: the session id itself is only in the cookie, the
// store keeps its digest.
type PanelSession struct {
	Account   PanelAccount
	CreatedAt time.Time
	SeenAt    time.Time
}

// PanelInvite is an unused, unexpired invite: the streamer of Channel may set a panel
// password with it, once.
type PanelInvite struct {
	Channel   string
	ExpiresAt time.Time
}

// InviteTTL is how long an invite link works.
const InviteTTL = 24 * time.Hour

// NewPanelToken returns a fresh opaque token (session id or invite) with 256 bits from
// crypto/rand, URL- and cookie-safe. Only its TokenDigest is stored.
func NewPanelToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// TokenDigest is the digest under which a panel session id or invite token is stored.
// It is domain-separated from KeyDigest, so no stream key and no token share a digest.
func TokenDigest(token string) Digest {
	return sha256.Sum256([]byte("stagedoor panel token\x00" + token))
}

// MinPanelPasswordRunes is the shortest panel password accepted.
const MinPanelPasswordRunes = 10

// ValidPanelPassword returns an *InvalidError unless pw can be a panel password for the
// account called name: ValidPassword's rules (not empty, at most 72 bytes, not shaped
// like a bcrypt hash), at least MinPanelPasswordRunes characters, not the account name,
// and not one character repeated.
func ValidPanelPassword(name, pw string) error {
	if pw == "" {
		return &InvalidError{Field: "password", Reason: "empty"}
	}
	if err := ValidPassword(pw); err != nil {
		return err
	}
	switch {
	case utf8.RuneCountInString(pw) < MinPanelPasswordRunes:
		return &InvalidError{Field: "password", Reason: "too weak: use at least 10 characters"}
	case strings.EqualFold(pw, name):
		return &InvalidError{Field: "password", Reason: "too weak: it is the account name"}
	case strings.Count(pw, pw[:1]) == len(pw):
		return &InvalidError{Field: "password", Reason: "too weak: one character repeated"}
	}
	return nil
}
