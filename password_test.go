package stagedoor_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"

	"golang.org/x/crypto/bcrypt"
)

// testHash is bcrypt cost 10 of "correct horse battery staple". A constant spares a
// generation (60 ms, about 750 ms under -race).
const testHash = "$2a$10$7jiKhObtcPR5dNsER6VO5eedT/DWJc0NhjAwbetwvM9yfoF2iKCTq"

// withCost returns testHash with its cost field replaced: still hash-shaped.
func withCost(cost string) string { return "$2a$" + cost + "$" + testHash[7:] }

func TestValidPassword(t *testing.T) {
	for _, tt := range []struct {
		name string
		pw   string
		ok   bool
	}{
		{"EmptyRefused", "", false},
		{"OneByteOK", "x", true},
		{"SpacesOK", "correct horse battery staple", true},
		{"NULInsideOK", "pass\x00word", true},
		{"72BytesOK", strings.Repeat("a", 72), true},
		{"72BytesMultibyteOK", strings.Repeat("é", 36), true},
		{"73BytesTooLong", strings.Repeat("a", 73), false},
		{"73BytesMultibyteTooLong", strings.Repeat("é", 36) + "a", false},
		{"HashShapedRefused", testHash, false},
		{"Hash2yShapedRefused", "$2y$" + testHash[4:], false},
		{"HashWithSuffixOK", testHash[:60-1] + "!", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := stagedoor.ValidPassword(tt.pw)
			if ok := err == nil; ok != tt.ok {
				t.Fatalf("ValidPassword = %v, want ok %v", err, tt.ok)
			}
			if err == nil {
				return
			}
			if _, isInvalid := errors.AsType[*stagedoor.InvalidError](err); !isInvalid {
				t.Errorf("ValidPassword = %T, want *stagedoor.InvalidError", err)
			}
			if len(tt.pw) >= 8 && strings.Contains(err.Error(), tt.pw) {
				t.Errorf("error %q echoes the password", err)
			}
		})
	}
}

func TestHashPassword(t *testing.T) {
	pw72 := strings.Repeat("p", 71) + "!"
	for _, tt := range []struct {
		name string
		pw   string
		cost int
		ok   bool
	}{
		{"EmptyRefused", "", stagedoor.DefaultCost, false},
		{"73BytesRefused", pw72 + "x", stagedoor.DefaultCost, false},
		{"HashShapedRefused", testHash, stagedoor.DefaultCost, false},
		{"Cost9Refused", "correct horse", 9, false},
		{"Cost4Refused", "correct horse", 4, false},
		{"Cost13Refused", "correct horse", 13, false},
		{"Cost31Refused", "correct horse", 31, false},
		// The two ends of [10, 12]; cost 12 takes about 3 s under -race, so these run
		// in parallel and are not verified again.
		{"Cost10With72BytesOK", pw72, 10, true},
		{"Cost12OK", "correct horse", 12, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.ok {
				t.Parallel()
			}
			h, err := stagedoor.HashPassword(tt.pw, tt.cost)
			if !tt.ok {
				if _, isInvalid := errors.AsType[*stagedoor.InvalidError](err); !isInvalid || h != "" {
					t.Errorf("HashPassword = %q, %v; want *stagedoor.InvalidError", h, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("HashPassword: %v", err)
			}
			if !stagedoor.IsHashShaped(h) {
				t.Errorf("hash %q is not hash-shaped", h)
			}
			if c, err := bcrypt.Cost([]byte(h)); err != nil || c != tt.cost {
				t.Errorf("bcrypt.Cost = %d, %v; want %d", c, err, tt.cost)
			}
			if strings.Contains(h, tt.pw) {
				t.Error("hash contains the password")
			}
		})
	}
}

func TestIsHashShaped(t *testing.T) {
	for _, tt := range []struct {
		name string
		s    string
		want bool
	}{
		{"Bcrypt2a", testHash, true},
		{"Bcrypt2b", "$2b$" + testHash[4:], true},
		{"Bcrypt2y", "$2y$" + testHash[4:], true},
		{"Cost31StillShaped", withCost("31"), true},
		{"Bcrypt2x", "$2x$" + testHash[4:], false},
		{"Short", testHash[:59], false},
		{"Long", testHash + "a", false},
		{"TrailingName", testHash + "/concert", false},
		{"BadAlphabet", testHash[:59] + "+", false},
		{"OneDigitCost", "$2a$4$" + testHash[7:] + "a", false},
		{"Empty", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := stagedoor.IsHashShaped(tt.s); got != tt.want {
				t.Errorf("IsHashShaped(%q) = %v, want %v", tt.s, got, tt.want)
			}
		})
	}
}
