package rtmpfront_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"

	"golang.org/x/crypto/bcrypt"

	"github.com/stagedoor/stagedoor/rtmpfront"
)

// hashWithSlash returns a real bcrypt hash that contains "/" (bcrypt's alphabet has it),
// at cost 4: only its shape matters here.
func hashWithSlash(t *testing.T) string {
	t.Helper()
	for range 100 {
		h, err := bcrypt.GenerateFromPassword([]byte("correct horse battery staple"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(h), "/") {
			return string(h)
		}
	}
	t.Fatal("no bcrypt hash with a slash in 100 tries")
	return ""
}

func TestRoutableName(t *testing.T) {
	hash := hashWithSlash(t)
	key := stagedoor.NewKey()
	const base = "rtmp://stream.example:1935/live"
	up := func(user, pass string) url.Values { return url.Values{"user": {user}, "pass": {pass}} }
	for _, tt := range []struct {
		name   string
		tcURL  string
		stream string
		ok     bool
		// For ok: the routable stream name and what MediaMTX decodes from its query.
		wantName  string
		wantQuery url.Values
	}{
		{"TwoPartPlaintext", base + "?user=alice&pass=plain", "concert", true, "concert", up("alice", "plain")},
		{"OneFieldPlaintext", base + "?user=alice&pass=plain/concert", "", true, "concert", up("alice", "plain")},
		{"PlaintextWithSlashSplitAtLast", base + "?user=alice&pass=pa/ss/word", "concert", true, "concert", up("alice", "pa/ss/word")},
		{"PlaintextPercentEncoded", base + "?user=alice&pass=p%26ss%2Bw%25rd%23", "concert", true, "concert", up("alice", "p&ss+w%rd#")},
		// As in MediaMTX's url.Query(), a literal "+" decodes to a space.
		{"PlaintextPlusIsSpace", base + "?user=alice&pass=two+words", "concert", true, "concert", up("alice", "two words")},
		{"TwoPartHashWithSlash", base + "?user=alice&pass=" + hash, "concert", true, "concert", up("alice", hash)},
		{"OneFieldHashWithSlash", base + "?user=alice&pass=" + hash + "/concert", "", true, "concert", up("alice", hash)},
		{"HashDollarPercentEncoded", base + "?user=alice&pass=" + strings.ReplaceAll(hash, "$", "%24"), "concert", true, "concert", up("alice", hash)},
		{"HashFullyPercentEncoded", base + "?user=alice&pass=" + url.QueryEscape(hash), "concert", true, "concert", up("alice", hash)},
		{"KeyTwoPart", base + "?key=" + key, "benw", true, "benw", url.Values{"key": {key}}},
		{"KeyOneField", base + "?key=" + key + "/benw", "", true, "benw", url.Values{"key": {key}}},
		// The name already in the path: published as NAME?QUERY.
		{"NameInPathWithHash", base + "/concert?user=alice&pass=" + hash, "", true, "concert", up("alice", hash)},
		{"NameInPathWithKey", base + "/benw?key=" + key, "", true, "benw", url.Values{"key": {key}}},
		{"NameInPathWithoutQuery", base, "concert", true, "concert", url.Values{}},
		{"AlreadyRoutable", base, "concert?user=alice&pass=plain", true, "concert", up("alice", "plain")},
		// url.Parse drops a fragment, in MediaMTX as here.
		{"FragmentDroppedLikeMediaMTX", base + "?user=alice&pass=plain", "con#cert", true, "con", up("alice", "plain")},
		{"StreamIsOnlyAQuery", base, "?user=alice&pass=plain/concert", false, "", nil},
		{"NoUser", base + "?pass=plain", "concert", false, "", nil},
		{"EmptyUser", base + "?user=&pass=plain", "concert", false, "", nil},
		{"NoPass", base + "?user=alice", "concert", false, "", nil},
		{"NoSlashInPass", base + "?user=alice&pass=plain", "", false, "", nil},
		{"HashWithoutName", base + "?user=alice&pass=" + strings.ReplaceAll(hash, "/", "."), "", false, "", nil},
		{"EmptyNameAfterSlash", base + "?user=alice&pass=plain/", "", false, "", nil},
		{"PassStartsWithSlash", base + "?user=alice&pass=/concert", "", false, "", nil},
		{"NameWithQuestionMark", base + "?user=alice&pass=plain", "con?cert", false, "", nil},
		{"KeyWithoutName", base + "?key=" + key, "", false, "", nil},
		{"KeyEmptyName", base + "?key=" + key + "/", "", false, "", nil},
		{"KeyNameWithSlash", base + "?key=" + key + "/a/b", "", false, "", nil},
		{"BadEscapeInPass", base + "?user=alice&pass=%zz", "concert", false, "", nil},
		{"NoHost", "rtmp://stream example/live?user=alice&pass=plain", "concert", false, "", nil},
		{"ThreeSegmentPath", base + "/a/concert?user=alice&pass=plain", "", false, "", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := rtmpfront.RoutableName(tt.tcURL, tt.stream)
			if ok != tt.ok {
				t.Fatalf("RoutableName(%q, %q) = %q, %v; want ok %v", tt.tcURL, tt.stream, got, ok, tt.ok)
			}
			if !ok {
				if got != "" {
					t.Errorf("name = %q with ok false, want empty", got)
				}
				return
			}
			name, query, _ := strings.Cut(got, "?")
			if name != tt.wantName {
				t.Errorf("name = %q, want %q (result %q)", name, tt.wantName, got)
			}
			q, err := url.ParseQuery(query)
			if err != nil {
				t.Fatalf("query %q: %v", query, err)
			}
			if q.Encode() != tt.wantQuery.Encode() {
				t.Errorf("query decodes to %v, want %v (result %q)", q, tt.wantQuery, got)
			}
			// Routing a routed name again changes nothing.
			if again, ok := rtmpfront.RoutableName(base, got); !ok || again != got {
				t.Errorf("RoutableName(base, %q) = %q, %v; want it unchanged", got, again, ok)
			}
		})
	}
	if got, _ := rtmpfront.RoutableName(base+"?user=alice&pass=plain", "concert"); got != "concert?user=alice&pass=plain" {
		t.Errorf("two-part form = %q, want %q", got, "concert?user=alice&pass=plain")
	}
	if got, _ := rtmpfront.RoutableName(base+"?key="+key, "benw"); got != "benw?key="+key {
		t.Errorf("key form = %q, want %q", got, "benw?key="+key)
	}
}
