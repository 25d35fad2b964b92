package stagedoor_test

import (
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"
)

var keyShape = regexp.MustCompile(`^sk_[A-Za-z0-9_-]{43}$`)

// A fixed, well-formed key for table tests (not a real one: no database holds it).
const sampleKey = "sk_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde"

func TestIsKey(t *testing.T) {
	body := strings.TrimPrefix(sampleKey, "sk_")
	for _, tt := range []struct {
		name string
		in   string
		want bool
	}{
		{"GeneratedKeyAccepted", stagedoor.NewKey(), true},
		{"SampleKeyAccepted", sampleKey, true},
		{"EmptyRejected", "", false},
		{"PrefixOnlyRejected", "sk_", false},
		{"ShortByOneRejected", sampleKey[:45], false},
		{"LongByOneRejected", sampleKey + "a", false},
		{"UppercasePrefixRejected", "SK_" + body, false},
		{"NoPrefixRejected", "xx_" + body, false},
		{"StdBase64PlusRejected", "sk_+" + body[1:], false},
		{"StdBase64SlashRejected", "sk_/" + body[1:], false},
		{"PaddingRejected", "sk_" + body[:42] + "=", false},
		{"SpaceRejected", "sk_ " + body[1:], false},
		{"NULRejected", "sk_" + body[:42] + "\x00", false},
		{"NewlineRejected", "sk_" + body[:42] + "\n", false},
		// Same byte length, but a two-byte rune in place of two characters.
		{"NonASCIISameLengthRejected", "sk_é" + body[2:], false},
		{"UsernameRejected", "benw", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := stagedoor.IsKey(tt.in); got != tt.want {
				t.Errorf("IsKey(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestValidUsername(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"LowercaseAccepted", "benw", true},
		{"DigitsAndUnderscoreAccepted", "ben_w_99", true},
		{"ThreeCharsAccepted", "abc", true},
		{"TwentyFiveCharsAccepted", strings.Repeat("a", 25), true},
		{"LeadingUnderscoreAccepted", "_benw", true},
		{"EmptyRejected", "", false},
		{"TwoCharsRejected", "ab", false},
		{"TwentySixCharsRejected", strings.Repeat("a", 26), false},
		{"UppercaseRejected", "BenW", false},
		{"AllUppercaseRejected", "BENW", false},
		{"DotRejected", "ben.w", false},
		{"DotDotRejected", "..", false},
		{"HyphenRejected", "ben-w", false},
		{"SlashRejected", "ben/w", false},
		{"SpaceRejected", "ben w", false},
		{"TrailingNewlineRejected", "benw\n", false},
		{"NULRejected", "benw\x00", false},
		{"AccentRejected", "bénw", false},
		{"FullWidthRejected", "ｂｅｎｗ", false},
		{"ZeroWidthSpaceRejected", "benw\u200b", false},
		{"CyrillicLookalikeRejected", "b\u0435nw", false},
		{"ReservedAPIRejected", "api", false},
		{"ReservedLiveRejected", "live", false},
		{"ReservedIndexRejected", "index", false},
		{"ReservedMetricsRejected", "metrics", false},
		{"ReservedRelayRejected", "relay", false},
		{"ReservedStagedoorRejected", "stagedoor", false},
		{"KeyPrefixRejected", "sk_abc", false},
		{"KeyPrefixOnlyRejected", "sk_", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := stagedoor.ValidUsername(tt.in)
			if got := err == nil; got != tt.ok {
				t.Fatalf("ValidUsername(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err == nil {
				return
			}
			ie, ok := errors.AsType[*stagedoor.InvalidError](err)
			if !ok {
				t.Fatalf("ValidUsername(%q) error %T, want *stagedoor.InvalidError", tt.in, err)
			}
			if ie.Field != "username" {
				t.Errorf("InvalidError.Field = %q, want username", ie.Field)
			}
		})
	}
}

func TestParsePath(t *testing.T) {
	key := stagedoor.NewKey()
	for _, tt := range []struct {
		name     string
		in       string
		wantKind string
		wantRest string
	}{
		{"KeyPathIsKey", "live/" + key, stagedoor.PathKey, key},
		{"SampleKeyPathIsKey", "live/" + sampleKey, stagedoor.PathKey, sampleKey},
		{"ChannelPathIsPublic", "live/benw", stagedoor.PathPublic, "benw"},
		{"UnderscoreChannelIsPublic", "live/ben_w", stagedoor.PathPublic, "ben_w"},

		// threats.md T04: everything else is PathOther.
		{"EmptyIsOther", "", stagedoor.PathOther, ""},
		{"LivePrefixOnlyIsOther", "live/", stagedoor.PathOther, ""},
		{"LiveWithoutSlashIsOther", "live", stagedoor.PathOther, ""},
		{"BareNameIsOther", "benw", stagedoor.PathOther, ""},
		{"BareKeyIsOther", key, stagedoor.PathOther, ""},
		{"DotDotIsOther", "live/../benw", stagedoor.PathOther, ""},
		{"DotIsOther", "live/./x", stagedoor.PathOther, ""},
		{"DoubleSlashIsOther", "live//benw", stagedoor.PathOther, ""},
		{"LeadingSlashIsOther", "/live/benw", stagedoor.PathOther, ""},
		{"TrailingSlashIsOther", "live/benw/", stagedoor.PathOther, ""},
		{"SubpathIsOther", "live/benw/x", stagedoor.PathOther, ""},
		{"KeySubpathIsOther", "live/" + key + "/x", stagedoor.PathOther, ""},
		{"UppercaseAppIsOther", "LIVE/BENW", stagedoor.PathOther, ""},
		{"UppercaseAppOnlyIsOther", "LIVE/benw", stagedoor.PathOther, ""},
		{"MixedCaseNameIsOther", "live/BenW", stagedoor.PathOther, ""},
		{"NULIsOther", "live/benw\x00", stagedoor.PathOther, ""},
		{"PercentNULIsOther", "live/benw%00", stagedoor.PathOther, ""},
		{"FullWidthIsOther", "live/ｂｅｎｗ", stagedoor.PathOther, ""},
		{"ZeroWidthSpaceIsOther", "live/benw\u200b", stagedoor.PathOther, ""},
		{"TrailingNewlineIsOther", "live/benw\n", stagedoor.PathOther, ""},
		{"ThreeHundredCharsIsOther", "live/" + strings.Repeat("a", 300), stagedoor.PathOther, ""},
		{"OneMegabyteIsOther", "live/" + strings.Repeat("a", 1<<20), stagedoor.PathOther, ""},
		{"KeyPrefix42IsOther", "live/sk_" + strings.Repeat("a", 42), stagedoor.PathOther, ""},
		{"KeyPrefix44IsOther", "live/sk_" + strings.Repeat("a", 44), stagedoor.PathOther, ""},
		{"ShortKeyPrefixIsOther", "live/sk_abc", stagedoor.PathOther, ""},
		{"PlaylistIsOther", "live/index.m3u8", stagedoor.PathOther, ""},
		{"NamePlaylistIsOther", "live/benw.m3u8", stagedoor.PathOther, ""},
		{"ReservedNameIsOther", "live/api", stagedoor.PathOther, ""},
		{"ReservedLiveIsOther", "live/live", stagedoor.PathOther, ""},
		{"OtherAppIsOther", "other/benw", stagedoor.PathOther, ""},
		{"UppercaseKeyPrefixIsOther", "live/SK_" + strings.TrimPrefix(key, "sk_"), stagedoor.PathOther, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kind, rest := stagedoor.ParsePath(tt.in)
			if kind != tt.wantKind || rest != tt.wantRest {
				t.Errorf("ParsePath(%.60q) = (%q, %.60q), want (%q, %.60q)", tt.in, kind, rest, tt.wantKind, tt.wantRest)
			}
		})
	}
}

func TestNewKey(t *testing.T) {
	const n = 10_000 // threats.md T34 asks for 10^5; 10^4 keeps `go test -race` quick
	seen := make(map[string]bool, n)
	for range n {
		k := stagedoor.NewKey()
		if seen[k] {
			t.Fatalf("NewKey repeated a key after %d keys", len(seen))
		}
		seen[k] = true
		if !stagedoor.IsKey(k) {
			t.Fatalf("NewKey() = key of length %d that IsKey rejects", len(k))
		}
		if !keyShape.MatchString(k) {
			t.Fatalf("NewKey() does not match %s", keyShape)
		}
		if stagedoor.ValidUsername(k) == nil {
			t.Fatal("NewKey() is a valid username")
		}
		if kind, _ := stagedoor.ParsePath("live/" + k); kind != stagedoor.PathKey {
			t.Fatalf("ParsePath(live/<new key>) kind = %q, want %q", kind, stagedoor.PathKey)
		}
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(stagedoor.NewKey(), stagedoor.KeyPrefix))
	if err != nil {
		t.Fatalf("key body is not base64url: %v", err)
	}
	if len(raw) != 32 {
		t.Errorf("key carries %d random bytes, want 32", len(raw))
	}
}

func TestDigestAndFingerprint(t *testing.T) {
	k := stagedoor.NewKey()
	d := stagedoor.KeyDigest(k)
	if d != stagedoor.KeyDigest(k) {
		t.Error("KeyDigest is not deterministic")
	}
	if d == stagedoor.KeyDigest(stagedoor.NewKey()) {
		t.Error("two keys share a digest")
	}
	fp := stagedoor.Fingerprint(k)
	if len(fp) != 8 || strings.Trim(fp, "0123456789abcdef") != "" {
		t.Errorf("Fingerprint = %q, want 8 lowercase hex characters", fp)
	}
	if got := d.Fingerprint(); got != fp {
		t.Errorf("Digest.Fingerprint = %q, want %q (same as Fingerprint(key))", got, fp)
	}
	if strings.Contains(k, fp) {
		t.Error("fingerprint is a substring of the key")
	}
}
