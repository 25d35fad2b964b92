package main

import (
	"bytes"
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"

	"golang.org/x/crypto/bcrypt"

	"github.com/stagedoor/stagedoor/store"
)

// cliHash is bcrypt cost 10 of "correct horse battery staple", stored directly when a
// test needs a password set but does not test `user passwd` (a generation takes about
// 750 ms under -race).
const cliHash = "$2a$10$7jiKhObtcPR5dNsER6VO5eedT/DWJc0NhjAwbetwvM9yfoF2iKCTq"

// formsJSON is the JSON shape of one encoder_urls entry.
type formsJSON struct {
	Stream  string `json:"stream"`
	TwoPart struct {
		Server    string `json:"server"`
		StreamKey string `json:"stream_key"`
	} `json:"two_part"`
	OneField string `json:"one_field"`
	SRT      string `json:"srt"`
	RTSP     string `json:"rtsp"`
	WHIP     string `json:"whip"`
}

// streamEnv is newEnv with every ingest URL set.
func streamEnv(t *testing.T) map[string]string {
	return map[string]string{
		"STAGEDOOR_DB":       filepath.Join(t.TempDir(), "stagedoor.db"),
		"STAGEDOOR_RTMP_URL": "rtmp://stream.example:1935/live",
		"STAGEDOOR_HLS_URL":  "http://stream.example:8888",
		"STAGEDOOR_SRT_URL":  "srt://stream.example:8890",
		"STAGEDOOR_RTSP_URL": "rtsp://stream.example:8554",
		"STAGEDOOR_WHIP_URL": "https://stream.example:8889",
	}
}

func runCLIInput(t *testing.T, env map[string]string, stdin string, args ...string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), append([]string{"stagedoor"}, args...), func(k string) string { return env[k] },
		strings.NewReader(stdin), &stdout, &stderr)
	return cliResult{stdout.String(), stderr.String(), err}
}

func mustRun(t *testing.T, env map[string]string, args ...string) cliResult {
	t.Helper()
	r := runCLI(t, env, args...)
	if r.err != nil {
		t.Fatalf("%v: %v\n%s", args, r.err, r.stderr)
	}
	return r
}

func withDB(t *testing.T, env map[string]string, f func(db *store.DB)) {
	t.Helper()
	db, err := store.Open(t.Context(), env["STAGEDOOR_DB"])
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	f(db)
}

func storedHash(t *testing.T, env map[string]string, user string) string {
	t.Helper()
	var h string
	withDB(t, env, func(db *store.DB) {
		var err error
		if h, err = db.PasswordHash(t.Context(), user); err != nil {
			t.Fatalf("PasswordHash(%s): %v", user, err)
		}
	})
	return h
}

func setHash(t *testing.T, env map[string]string, user, hash string) {
	t.Helper()
	withDB(t, env, func(db *store.DB) {
		if err := db.SetPasswordHash(t.Context(), user, hash); err != nil {
			t.Fatal(err)
		}
	})
}

// streamState lists the streams as "name:owner:auth" in name order.
func streamState(t *testing.T, env map[string]string) string {
	t.Helper()
	var out []string
	withDB(t, env, func(db *store.DB) {
		ss, err := db.Streams(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			auth := "auth"
			if !s.AuthRequired {
				auth = "noauth"
			}
			out = append(out, s.Name+":"+s.UserName+":"+auth)
		}
	})
	return strings.Join(out, ",")
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, s)
	}
}

func TestUserPasswdJSON(t *testing.T) {
	t.Parallel()
	env := streamEnv(t)
	mustRun(t, env, "user", "add", "alice")
	mustRun(t, env, "stream", "add", "concert", "--user", "alice")
	mustRun(t, env, "stream", "add", "lobbycam", "--user", "alice", "--no-auth")

	const pw = "correct horse"
	r := mustRun(t, env, "user", "passwd", "alice", "--password", pw, "--json")
	var out struct {
		Name         string      `json:"name"`
		PasswordHash string      `json:"password_hash"`
		EncoderURLs  []formsJSON `json:"encoder_urls"`
	}
	decodeJSON(t, r.stdout, &out)
	if out.Name != "alice" || !stagedoor.IsHashShaped(out.PasswordHash) {
		t.Fatalf("passwd --json = %+v", out)
	}
	if c, err := bcrypt.Cost([]byte(out.PasswordHash)); err != nil || c != stagedoor.DefaultCost {
		t.Errorf("cost = %d, %v; want %d", c, err, stagedoor.DefaultCost)
	}
	if got := storedHash(t, env, "alice"); got != out.PasswordHash {
		t.Errorf("stored hash = %q, want the printed one", got)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(out.PasswordHash), []byte(pw)); err != nil {
		t.Errorf("printed hash does not verify the password: %v", err)
	}
	// Only streams that need the password get encoder settings.
	if len(out.EncoderURLs) != 1 || out.EncoderURLs[0].Stream != "concert" ||
		out.EncoderURLs[0].TwoPart.StreamKey != "concert?user=alice&pass="+out.PasswordHash {
		t.Errorf("encoder_urls = %+v, want concert's only", out.EncoderURLs)
	}
	if strings.Contains(r.stdout+r.stderr, pw) {
		t.Error("output carries the plaintext password")
	}
}

func TestUserPasswdStdin(t *testing.T) {
	t.Parallel()
	env := streamEnv(t)
	mustRun(t, env, "user", "add", "bob")
	const pw = "s3cret stdin pw"
	r := runCLIInput(t, env, pw+"\r\n", "user", "passwd", "bob")
	if r.err != nil {
		t.Fatalf("passwd from stdin: %v", r.err)
	}
	h := storedHash(t, env, "bob")
	if err := bcrypt.CompareHashAndPassword([]byte(h), []byte(pw)); err != nil {
		t.Errorf("stored hash does not verify the stdin line without its line ending: %v", err)
	}
	for _, want := range []string{"Password set for bob", h, "no password streams yet"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout+r.stderr, pw) {
		t.Error("output carries the plaintext password")
	}
}

func TestUserPasswdRefusalsChangeNothing(t *testing.T) {
	t.Parallel()
	env := streamEnv(t)
	mustRun(t, env, "user", "add", "alice")
	setHash(t, env, "alice", cliHash)
	long := strings.Repeat("a", 73)
	for _, tt := range []struct {
		name  string
		stdin string
		args  []string
	}{
		{"EmptyStdin", "", []string{"user", "passwd", "alice"}},
		{"EmptyLine", "\n", []string{"user", "passwd", "alice"}},
		{"EmptyFlagFallsBackToEmptyStdin", "", []string{"user", "passwd", "alice", "--password="}},
		{"73Bytes", "", []string{"user", "passwd", "alice", "--password", long}},
		{"73BytesOnStdin", long + "\n", []string{"user", "passwd", "alice"}},
		{"HashShaped", "", []string{"user", "passwd", "alice", "--password", "$2a$10$" + strings.Repeat("x", 53)}},
		{"Cost9", "", []string{"user", "passwd", "alice", "--password", "correct horse", "--cost", "9"}},
		{"Cost13", "", []string{"user", "passwd", "alice", "--password", "correct horse", "--cost", "13"}},
		{"CostNotANumber", "", []string{"user", "passwd", "alice", "--password", "correct horse", "--cost", "ten"}},
		{"UnknownUser", "", []string{"user", "passwd", "nobody", "--password", "correct horse"}},
		{"NoName", "", []string{"user", "passwd", "--password", "correct horse"}},
		{"TwoNames", "", []string{"user", "passwd", "alice", "bob", "--password", "correct horse"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLIInput(t, env, tt.stdin, tt.args...)
			if r.err == nil {
				t.Fatalf("%v: nil error", tt.args)
			}
			if code := exitCode(r.err); code != 2 {
				t.Errorf("exit code = %d, want 2 (err %v)", code, r.err)
			}
			if got := storedHash(t, env, "alice"); got != cliHash {
				t.Errorf("stored hash changed to %q", got)
			}
			for _, secret := range []string{"correct horse", long, cliHash} {
				if strings.Contains(r.err.Error()+r.stdout, secret) {
					t.Errorf("error or output carries a secret: %v %s", r.err, r.stdout)
				}
			}
		})
	}
}

func TestStreamAddEncoderURLs(t *testing.T) {
	env := streamEnv(t)
	mustRun(t, env, "user", "add", "alice")
	mustRun(t, env, "user", "add", "bob")
	setHash(t, env, "alice", cliHash)
	type addJSON struct {
		Name         string      `json:"name"`
		User         string      `json:"user"`
		AuthRequired bool        `json:"auth_required"`
		HLSURL       string      `json:"hls_url"`
		EncoderURLs  []formsJSON `json:"encoder_urls"`
	}
	add := func(args ...string) (addJSON, string) {
		t.Helper()
		r := mustRun(t, env, append([]string{"stream", "add"}, append(args, "--json")...)...)
		var out addJSON
		decodeJSON(t, r.stdout, &out)
		if len(out.EncoderURLs) != 1 {
			t.Fatalf("stream add %v: %d encoder_urls entries, want 1", args, len(out.EncoderURLs))
		}
		return out, r.stdout
	}

	t.Run("Password", func(t *testing.T) {
		out, _ := add("concert", "--user", "alice")
		f := out.EncoderURLs[0]
		if out.Name != "concert" || out.User != "alice" || !out.AuthRequired ||
			out.HLSURL != "http://stream.example:8888/live/concert/index.m3u8" {
			t.Errorf("stream add = %+v", out)
		}
		for _, c := range []struct{ field, got, want string }{
			{"stream", f.Stream, "concert"},
			{"two_part.server", f.TwoPart.Server, "rtmp://stream.example:1935/live"},
			{"two_part.stream_key", f.TwoPart.StreamKey, "concert?user=alice&pass=" + cliHash},
			{"one_field", f.OneField, "rtmp://stream.example:1935/live/concert?user=alice&pass=" + cliHash},
			{"srt", f.SRT, "srt://stream.example:8890?streamid=publish:live/concert:alice:" + cliHash},
		} {
			if c.got != c.want {
				t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
			}
		}
		// What MediaMTX decodes from the one-field URL and the RTSP URL.
		u, err := url.Parse(f.OneField)
		if err != nil || u.Path != "/live/concert" || u.Query().Get("user") != "alice" || u.Query().Get("pass") != cliHash {
			t.Errorf("one_field decodes to path %q query %v (%v)", u.Path, u.Query(), err)
		}
		ru, err := url.Parse(f.RTSP)
		if err != nil {
			t.Fatalf("rtsp %q: %v", f.RTSP, err)
		}
		if pass, _ := ru.User.Password(); ru.Scheme != "rtsp" || ru.Host != "stream.example:8554" || ru.Path != "/live/concert" ||
			ru.User.Username() != "alice" || pass != cliHash {
			t.Errorf("rtsp = %q: user %q path %q", f.RTSP, ru.User.Username(), ru.Path)
		}
		if !strings.HasPrefix(f.WHIP, "https://stream.example:8889/live/concert/whip") {
			t.Errorf("whip = %q", f.WHIP)
		}
		withDB(t, env, func(db *store.DB) {
			s, err := db.StreamByName(t.Context(), "concert")
			if err != nil || s.UserName != "alice" || !s.AuthRequired {
				t.Errorf("stored stream = %+v, %v", s, err)
			}
		})
	})

	t.Run("NoAuth", func(t *testing.T) {
		out, raw := add("lobbycam", "--user", "alice", "--no-auth")
		f := out.EncoderURLs[0]
		if out.AuthRequired {
			t.Error("auth_required = true, want false")
		}
		for _, c := range []struct{ field, got, want string }{
			{"two_part.stream_key", f.TwoPart.StreamKey, "lobbycam"},
			{"one_field", f.OneField, "rtmp://stream.example:1935/live/lobbycam"},
			{"srt", f.SRT, "srt://stream.example:8890?streamid=publish:live/lobbycam"},
			{"rtsp", f.RTSP, "rtsp://stream.example:8554/live/lobbycam"},
			{"whip", f.WHIP, "https://stream.example:8889/live/lobbycam/whip"},
		} {
			if c.got != c.want {
				t.Errorf("%s = %q, want %q", c.field, c.got, c.want)
			}
		}
		for _, secret := range []string{cliHash, "pass=", "$2a$"} {
			if strings.Contains(raw, secret) {
				t.Errorf("no-auth output carries %q:\n%s", secret, raw)
			}
		}
	})

	t.Run("OwnerWithoutPassword", func(t *testing.T) {
		out, raw := add("bobcam", "--user", "bob")
		if got := out.EncoderURLs[0].TwoPart.StreamKey; got != "bobcam?user=bob&pass=<password>" {
			t.Errorf("stream_key = %q, want the <password> placeholder", got)
		}
		if strings.Contains(raw, "$2a$") {
			t.Errorf("output carries a hash:\n%s", raw)
		}
		text := mustRun(t, env, "stream", "add", "bobcam2", "--user", "bob")
		if !strings.Contains(text.stdout, "No password is set yet: stagedoor user passwd bob") {
			t.Errorf("text output lacks the passwd hint:\n%s", text.stdout)
		}
	})

	if got, want := streamState(t, env), "bobcam:bob:auth,bobcam2:bob:auth,concert:alice:auth,lobbycam:alice:noauth"; got != want {
		t.Errorf("streams = %s, want %s", got, want)
	}
}

func TestStreamAddRefusalsChangeNothing(t *testing.T) {
	env := streamEnv(t)
	mustRun(t, env, "user", "add", "alice")
	mustRun(t, env, "user", "add", "bob")
	mustRun(t, env, "stream", "add", "concert", "--user", "alice")
	before, usersBefore := streamState(t, env), len(users(t, env))
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"NoUserFlag", []string{"stream", "add", "gig"}},
		{"UnknownUser", []string{"stream", "add", "gig", "--user", "nobody"}},
		{"Duplicate", []string{"stream", "add", "concert", "--user", "alice"}},
		{"DuplicateOtherOwner", []string{"stream", "add", "concert", "--user", "bob", "--no-auth"}},
		{"AnotherUsersName", []string{"stream", "add", "bob", "--user", "alice"}},
		{"InvalidName", []string{"stream", "add", "Gig", "--user", "alice"}},
		{"ReservedName", []string{"stream", "add", "api", "--user", "alice"}},
		{"KeyPrefixName", []string{"stream", "add", "sk_gig", "--user", "alice"}},
		{"NoName", []string{"stream", "add", "--user", "alice"}},
		{"TwoNames", []string{"stream", "add", "gig", "gig2", "--user", "alice"}},
		{"NoSubcommand", []string{"stream"}},
		{"UnknownSubcommand", []string{"stream", "frob", "gig"}},
		{"NoAuthOnlyForAdd", []string{"stream", "list", "--no-auth"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, env, tt.args...)
			if r.err == nil {
				t.Fatalf("%v: nil error", tt.args)
			}
			if code := exitCode(r.err); code != 2 {
				t.Errorf("exit code = %d, want 2 (err %v)", code, r.err)
			}
		})
	}
	if after := streamState(t, env); after != before {
		t.Errorf("streams changed: %s -> %s", before, after)
	}
	if n := len(users(t, env)); n != usersBefore {
		t.Errorf("users changed: %d -> %d", usersBefore, n)
	}
}

func TestStreamListAndRemove(t *testing.T) {
	env := streamEnv(t)
	mustRun(t, env, "user", "add", "alice")
	mustRun(t, env, "user", "add", "bob")
	setHash(t, env, "alice", cliHash)
	mustRun(t, env, "stream", "add", "lobbycam", "--user", "alice", "--no-auth")
	mustRun(t, env, "stream", "add", "concert", "--user", "alice")
	mustRun(t, env, "stream", "add", "bobcam", "--user", "bob")
	withDB(t, env, func(db *store.DB) {
		s, err := db.StreamByName(t.Context(), "concert")
		if err != nil {
			t.Fatal(err)
		}
		if err := db.SetLive(t.Context(), stagedoor.LiveState{NodeID: "local", Kind: stagedoor.LiveDirect, Name: "concert", UserID: s.UserID, SourceID: "conn-1", SourceType: "rtmpConn"}); err != nil {
			t.Fatal(err)
		}
	})

	type row struct {
		Name         string  `json:"name"`
		User         string  `json:"user"`
		AuthRequired bool    `json:"auth_required"`
		Live         bool    `json:"live"`
		LiveSince    *string `json:"live_since"`
		HLSURL       string  `json:"hls_url"`
	}
	list := func(args ...string) []row {
		t.Helper()
		r := mustRun(t, env, append([]string{"stream", "list", "--json"}, args...)...)
		if strings.Contains(r.stdout, "$2a$") {
			t.Errorf("stream list carries a hash:\n%s", r.stdout)
		}
		var rows []row
		decodeJSON(t, r.stdout, &rows)
		return rows
	}
	summary := func(rows []row) string {
		var s []string
		for _, r := range rows {
			s = append(s, r.Name+":"+r.User)
		}
		return strings.Join(s, ",")
	}

	all := list()
	if got, want := summary(all), "bobcam:bob,concert:alice,lobbycam:alice"; got != want {
		t.Errorf("stream list = %s, want %s", got, want)
	}
	for _, r := range all {
		wantLive := r.Name == "concert"
		if r.Live != wantLive || (r.LiveSince != nil) != wantLive {
			t.Errorf("%s: live %v since %v, want live %v", r.Name, r.Live, r.LiveSince, wantLive)
		}
		if r.AuthRequired != (r.Name != "lobbycam") {
			t.Errorf("%s: auth_required %v", r.Name, r.AuthRequired)
		}
		if r.HLSURL != "http://stream.example:8888/live/"+r.Name+"/index.m3u8" {
			t.Errorf("%s: hls_url %q", r.Name, r.HLSURL)
		}
	}
	if got, want := summary(list("--user", "alice")), "concert:alice,lobbycam:alice"; got != want {
		t.Errorf("stream list --user alice = %s, want %s", got, want)
	}
	text := mustRun(t, env, "stream", "list")
	for _, want := range []string{"NAME", "lobbycam", "none", "since "} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("text list lacks %q:\n%s", want, text.stdout)
		}
	}
	if r := runCLI(t, env, "stream", "list", "--user", "nobody"); exitCode(r.err) != 2 {
		t.Errorf("stream list --user nobody: err %v, want exit 2", r.err)
	}

	r := mustRun(t, env, "stream", "rm", "concert", "--json")
	var removed struct {
		Name    string `json:"name"`
		Removed bool   `json:"removed"`
	}
	decodeJSON(t, r.stdout, &removed)
	if removed.Name != "concert" || !removed.Removed {
		t.Errorf("stream rm --json = %s", r.stdout)
	}
	if got, want := streamState(t, env), "bobcam:bob:auth,lobbycam:alice:noauth"; got != want {
		t.Errorf("streams after rm = %s, want %s", got, want)
	}
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"Again", []string{"stream", "rm", "concert"}},
		{"Unknown", []string{"stream", "rm", "nosuch"}},
		{"UserName", []string{"stream", "rm", "alice"}},
		{"NoName", []string{"stream", "rm"}},
	} {
		t.Run("Remove"+tt.name, func(t *testing.T) {
			if r := runCLI(t, env, tt.args...); exitCode(r.err) != 2 {
				t.Errorf("%v: err %v, want exit 2", tt.args, r.err)
			}
		})
	}
	if got, want := streamState(t, env), "bobcam:bob:auth,lobbycam:alice:noauth"; got != want {
		t.Errorf("streams after refused rm = %s, want %s", got, want)
	}
	if n := len(users(t, env)); n != 2 {
		t.Errorf("users after stream rm = %d, want 2", n)
	}
}
