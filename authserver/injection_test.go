package authserver_test

import (
	"bufio"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/policy"
	"github.com/stagedoor/stagedoor/store"
)

// injectionCorpus is T09's SQL-injection corpus (docs/threats.md §5.1).
var injectionCorpus = []struct {
	name    string
	payload string
}{
	{"OrTrueComment", `' OR 1=1--`},
	{"DropTable", `"; DROP TABLE users;--`},
	{"PercentQuote", `%27`},
	{"NULQuote", "\x00'"},
	{"PathOrTrue", `live/benw' OR '1'='1`},
	{"UnionSelect", `benw' UNION SELECT name, sql FROM sqlite_master--`},
	{"StackedDelete", `'; DELETE FROM stream_keys; SELECT '`},
	{"LongQuotes", strings.Repeat(`' OR 1=1--`, 3000)},
	{"LongDrop", strings.Repeat(`"; DROP TABLE users;--`, 2000)},
}

// rowCounts is the state T09 says must not change, read through the store's methods: a
// dropped or altered table makes one of them fail, and the policy generation would move
// on any credential change.
type rowCounts struct {
	users, keys, streams int
	generation           int64
}

func countRows(t *testing.T, db *store.DB) rowCounts {
	t.Helper()
	ctx := t.Context()
	var c rowCounts
	us, err := db.Users(ctx)
	if err != nil {
		t.Fatalf("Users: %v", err)
	}
	c.users = len(us)
	for _, u := range us {
		ks, err := db.Keys(ctx, u.Name)
		if err != nil {
			t.Fatalf("Keys(%s): %v", u.Name, err)
		}
		c.keys += len(ks)
	}
	ss, err := db.Streams(ctx, "")
	if err != nil {
		t.Fatalf("Streams: %v", err)
	}
	c.streams = len(ss)
	if c.generation, err = db.PolicyGeneration(ctx); err != nil {
		t.Fatalf("PolicyGeneration: %v", err)
	}
	if _, err := db.Audit(ctx, stagedoor.AuditFilter{}); err != nil {
		t.Fatalf("Audit: %v", err)
	}
	return c
}

func TestInjectionCorpusDeniedAndChangesNothing(t *testing.T) {
	ctx := t.Context()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "stagedoor.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	benw, err := db.CreateUser(ctx, "benw")
	if err != nil {
		t.Fatalf("CreateUser(benw): %v", err)
	}
	if _, err := db.CreateUser(ctx, "alice"); err != nil {
		t.Fatalf("CreateUser(alice): %v", err)
	}
	if _, err := db.CreateStream(ctx, "studio", "benw", true); err != nil {
		t.Fatalf("CreateStream(studio): %v", err)
	}
	hash, err := stagedoor.HashPassword("correct horse battery", stagedoor.MinCost)
	if err != nil {
		t.Fatalf("HashPassword: %v", err)
	}
	if err := db.SetPasswordHash(ctx, "benw", hash); err != nil {
		t.Fatalf("SetPasswordHash: %v", err)
	}
	before := countRows(t, db)
	if before.users != 2 || before.keys < 2 || before.streams != 1 {
		t.Fatalf("fixture counts = %+v, want 2 users, ≥ 2 keys, 1 stream", before)
	}

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	pol := &policy.Policy{Credentials: db, Passwords: policy.NewPasswords()}
	srv := httptest.NewServer(authserver.NewHandler(logger, pol, authserver.Options{}))
	t.Cleanup(srv.Close)

	// base is MediaMTX v1.21.0's body for an RTMP publish of benw's channel without
	// credentials; each case replaces one field with a payload.
	base := func() map[string]any {
		return map[string]any{
			"user": "", "password": "", "token": "", "ip": "127.0.0.1",
			"action": "publish", "path": "live/benw", "protocol": "rtmp",
			"id": testutil.MediaMTXID, "query": "", "userAgent": "FMLE/3.0 (compatible; Lavf59.27.100)",
		}
	}
	fields := []struct {
		name  string
		apply func(m map[string]any, p string)
	}{
		{"User", func(m map[string]any, p string) { m["user"] = p }},
		{"UserWithBenwPassword", func(m map[string]any, p string) { m["user"] = p; m["password"] = "correct horse battery" }},
		{"Password", func(m map[string]any, p string) { m["user"] = "benw"; m["password"] = p }},
		{"Token", func(m map[string]any, p string) { m["token"] = p }},
		{"Query", func(m map[string]any, p string) { m["query"] = "user=" + p + "&pass=" + p }},
		{"RawQuery", func(m map[string]any, p string) { m["query"] = p }},
		{"Path", func(m map[string]any, p string) { m["path"] = p }},
		{"KeyPath", func(m map[string]any, p string) { m["path"] = "live/" + p }},
		{"StreamPath", func(m map[string]any, p string) { m["path"] = "live/studio" + p }},
		{"KeyPrefixPath", func(m map[string]any, p string) { m["path"] = "live/" + benw.StreamKey + p }},
		{"UserAgent", func(m map[string]any, p string) { m["userAgent"] = p }},
	}
	for _, f := range fields {
		for _, c := range injectionCorpus {
			t.Run(f.name+"/"+c.name, func(t *testing.T) {
				m := base()
				f.apply(m, c.payload)
				body, err := json.Marshal(m)
				if err != nil {
					t.Fatalf("Marshal: %v", err)
				}
				got := postJSON(t, srv, string(body))
				if got.status >= 200 && got.status < 300 {
					t.Errorf("status = %d, want non-2xx", got.status)
				}
				if got.body != authserver.DenyBody {
					t.Errorf("body = %q, want %q", got.body, authserver.DenyBody)
				}
			})
		}
	}

	if got := countRows(t, db); got != before {
		t.Errorf("row counts after corpus = %+v, want %+v", got, before)
	}
	// The store still answers the fixture: nothing was dropped or rewritten.
	if _, err := db.UserByKeyDigest(ctx, stagedoor.KeyDigest(benw.StreamKey)); err != nil {
		t.Errorf("UserByKeyDigest(benw's key) after corpus: %v", err)
	}
}

// TestNoSQLBuiltFromStrings is T09's static check over store/'s non-test sources: no line
// formats SQL with Sprintf, and the only string concatenation into a query is the
// constant WHERE clause of the three marked helpers.
func TestNoSQLBuiltFromStrings(t *testing.T) {
	root := filepath.Join("..", "store")
	sqlVerb := regexp.MustCompile(`SELECT|INSERT|UPDATE|DELETE`)
	concat := regexp.MustCompile(`\+ ?where\b`)
	var sprintfSQL []string
	concatSites := map[string]int{} // "file func" -> lines
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		fn, n := "", 0
		for sc.Scan() {
			n++
			line := sc.Text()
			if strings.HasPrefix(line, "func ") {
				fn = funcName(line)
			}
			if strings.Contains(line, "Sprintf") && sqlVerb.MatchString(line) {
				sprintfSQL = append(sprintfSQL, path+":"+strconv.Itoa(n)+": "+strings.TrimSpace(line))
			}
			if concat.MatchString(line) {
				concatSites[filepath.Base(path)+" "+fn]++
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	for _, l := range sprintfSQL {
		t.Errorf("SQL built with Sprintf: %s", l)
	}
	var sites []string
	for s := range concatSites {
		sites = append(sites, s)
	}
	slices.Sort(sites)
	want := []string{"live_state.go queryLive", "live_state.go stopLive", "operator.go revokeWhere"}
	if !slices.Equal(sites, want) {
		t.Errorf("functions concatenating a where clause = %q, want exactly %q", sites, want)
	}
}

// funcName returns the name in a "func (recv) Name(" or "func Name(" line.
func funcName(line string) string {
	s := strings.TrimPrefix(line, "func ")
	if strings.HasPrefix(s, "(") {
		if i := strings.Index(s, ") "); i >= 0 {
			s = s[i+2:]
		}
	}
	if i := strings.IndexAny(s, "([ "); i >= 0 {
		s = s[:i]
	}
	return s
}
