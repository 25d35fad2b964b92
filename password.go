package stagedoor

import (
	"fmt"
	"regexp"

	"golang.org/x/crypto/bcrypt"
)

// Password cost bounds: 10 by default (≈ 60 ms a verification on one core); stored
// costs outside [MinCost, MaxCost] are refused, since the cost is read from the hash.
const (
	DefaultCost = 10
	MinCost     = 10
	MaxCost     = 12
	// MaxPasswordBytes is bcrypt's input limit; longer passwords would be truncated.
	MaxPasswordBytes = 72
)

var hashRE = regexp.MustCompile(`^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$`)

// IsHashShaped reports whether s looks like a bcrypt hash ($2a$10$ + 53 characters).
func IsHashShaped(s string) bool { return len(s) == 60 && hashRE.MatchString(s) }

// ValidPassword returns an *InvalidError unless pw can be a publishing password:
// not empty, at most 72 bytes (bcrypt ignores the rest), and not itself shaped like a
// bcrypt hash (a hash-shaped password is compared as a hash and would never verify).
func ValidPassword(pw string) error {
	switch {
	case pw == "":
		return &InvalidError{Field: "password", Reason: "empty"}
	case len(pw) > MaxPasswordBytes:
		return &InvalidError{Field: "password", Reason: fmt.Sprintf("longer than %d bytes", MaxPasswordBytes)}
	case IsHashShaped(pw):
		return &InvalidError{Field: "password", Reason: "looks like a bcrypt hash; choose a plain password"}
	}
	return nil
}

// HashPassword hashes pw with bcrypt at cost, after ValidPassword.
func HashPassword(pw string, cost int) (string, error) {
	if err := ValidPassword(pw); err != nil {
		return "", err
	}
	if cost < MinCost || cost > MaxCost {
		return "", &InvalidError{Field: "cost", Reason: fmt.Sprintf("must be %d to %d", MinCost, MaxCost)}
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}
