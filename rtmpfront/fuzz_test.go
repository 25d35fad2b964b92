package rtmpfront_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor/rtmpfront"
)

// FuzzRoutableName: no panic, and a rewritten name is one path segment whose query
// parses, so MediaMTX routes it to live/<name> and nowhere else.
func FuzzRoutableName(f *testing.F) {
	for _, s := range [][2]string{
		{"rtmp://h:1935/live?user=alice&pass=plain", "concert"},
		{"rtmp://h:1935/live?user=alice&pass=$2a$10$abcdefghijklmnopqrstuv/wxyz0123456789ABCDEFGHIJKLMNOPQRS", "concert"},
		{"rtmp://h:1935/live/concert?user=alice&pass=$2a$10$ab", "cd/ef"},
		{"rtmp://h/live?key=sk_x/benw", ""},
		{"rtmp://h/live", "concert"},
		{"rtmp://h/live?user=a&pass=b/../x", ""},
		{"rtmp://h/live?%zz", "x"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, tc, stream string) {
		name, ok := rtmpfront.RoutableName(tc, stream)
		if !ok {
			return
		}
		seg, query, _ := strings.Cut(name, "?")
		if seg == "" || strings.ContainsAny(seg, "/#") || seg == "." || seg == ".." {
			t.Fatalf("RoutableName(%q, %q) = %q: not one path segment", tc, stream, name)
		}
		if _, err := url.ParseQuery(query); err != nil {
			t.Fatalf("RoutableName(%q, %q) = %q: query does not parse: %v", tc, stream, name, err)
		}
	})
}
