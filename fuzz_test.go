package stagedoor_test

import (
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"
)

// FuzzParsePath: no panic, deterministic, and only the two exact shapes are recognised.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"live/benw", "live/" + stagedoor.NewKey(), "live/../benw", "live//benw", "/live/benw", "live/benw/",
		"LIVE/BENW", "live/BenW", "live/benw\x00", "live/ｂｅｎｗ", "live/benw\u200b", "live", "",
		"live/sk_" + strings.Repeat("a", 42), "live/sk_" + strings.Repeat("a", 44), "live/index.m3u8",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		kind, rest := stagedoor.ParsePath(p)
		if k2, r2 := stagedoor.ParsePath(p); k2 != kind || r2 != rest {
			t.Fatalf("not deterministic: %q", p)
		}
		switch kind {
		case stagedoor.PathKey:
			if p != "live/"+rest || !stagedoor.IsKey(rest) {
				t.Fatalf("%q classified as key path", p)
			}
		case stagedoor.PathPublic:
			if p != "live/"+rest || stagedoor.ValidUsername(rest) != nil || stagedoor.IsKey(rest) {
				t.Fatalf("%q classified as public path", p)
			}
		case stagedoor.PathOther:
			if rest != "" {
				t.Fatalf("other path %q returned %q", p, rest)
			}
		default:
			t.Fatalf("unknown kind %q", kind)
		}
	})
}
