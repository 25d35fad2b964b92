// Package stagedoor is the vocabulary every other package shares: names and their
// grammar, stream keys and their digests, path kinds, the domain types, errors, audit
// entries, webhook event names and the public URLs. It imports nothing of ours and sees
// no SQL, HTTP or MediaMTX wire format.
package stagedoor

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"strings"
)

// KeyPrefix starts every stream key. Usernames may not start with it.
const KeyPrefix = "sk_"

// keyLen is the length of a key: the prefix and 32 random bytes in unpadded base64url.
const keyLen = len(KeyPrefix) + 43

var (
	usernameRE = regexp.MustCompile(`^[a-z0-9_]{3,25}$`)
	keyRE      = regexp.MustCompile(`^sk_[A-Za-z0-9_-]{43}$`)
)

// reservedNames are names MediaMTX's HTTP servers or our own pages treat specially.
var reservedNames = map[string]bool{
	"api": true, "publish": true, "whip": true, "whep": true, "live": true,
	"index": true, "favicon": true, "static": true, "healthz": true, "metrics": true,
	"admin": true, "mediamtx": true, "stagedoor": true, "relay": true, "panel": true,
}

// ValidUsername returns an *InvalidError unless name is a usable public channel name:
// ^[a-z0-9_]{3,25}$, not reserved, not starting with the key prefix.
func ValidUsername(name string) error {
	switch {
	case !usernameRE.MatchString(name):
		return &InvalidError{Field: "username", Reason: "must be 3 to 25 characters of a-z, 0-9 and _"}
	case strings.HasPrefix(name, KeyPrefix):
		return &InvalidError{Field: "username", Reason: "names starting with sk_ are reserved"}
	case reservedNames[name]:
		return &InvalidError{Field: "username", Reason: "this name is reserved"}
	}
	return nil
}

// IsKey reports whether s has the shape of a stream key (sk_ + 43 base64url characters).
func IsKey(s string) bool { return len(s) == keyLen && keyRE.MatchString(s) }

// NewKey returns a fresh stream key with 256 bits from crypto/rand.
func NewKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// Digest is the SHA-256 of a secret: what the database keeps instead of the key.
type Digest [sha256.Size]byte

// KeyDigest returns the digest under which key is stored.
func KeyDigest(key string) Digest { return sha256.Sum256([]byte(key)) }

// HashDigest is the SHA-256 of a stored password hash: it tells whether the hash changed
// without keeping a copy of it (the hash is a publish credential).
func HashDigest(hash string) Digest { return sha256.Sum256([]byte(hash)) }

// Fingerprint returns the first 8 hex characters of SHA-256(secret): safe to log.
func Fingerprint(secret string) string {
	d := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(d[:4])
}

// Path kinds of a MediaMTX path name. Log the kind, never the path: it may be a key.
const (
	PathKey    = "key"
	PathPublic = "public"
	PathOther  = "other"
)

// LivePrefix is the application every Stagedoor path lives under.
const LivePrefix = "live/"

// ParsePath classifies a MediaMTX path name: PathKey with the key, PathPublic with the
// channel name, or PathOther. Only these two exact shapes are ever used; MediaMTX's own
// path validation is not relied on (static names bypass it).
func ParsePath(p string) (kind, rest string) {
	rest, ok := strings.CutPrefix(p, LivePrefix)
	if !ok {
		return PathOther, ""
	}
	switch {
	case IsKey(rest):
		return PathKey, rest
	case ValidUsername(rest) == nil:
		return PathPublic, rest
	}
	return PathOther, ""
}

// Fingerprint returns the log-safe fingerprint of the secret this digest was made from.
func (d Digest) Fingerprint() string { return hex.EncodeToString(d[:4]) }
