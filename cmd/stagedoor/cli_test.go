package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/store"
)

var keyShape = regexp.MustCompile(`sk_[A-Za-z0-9_-]{43}`)

type cliResult struct {
	stdout, stderr string
	err            error
}

func runCLI(t *testing.T, env map[string]string, args ...string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), append([]string{"stagedoor"}, args...), func(k string) string { return env[k] },
		strings.NewReader(""), &stdout, &stderr)
	return cliResult{stdout.String(), stderr.String(), err}
}

func newEnv(t *testing.T) map[string]string {
	return map[string]string{
		"STAGEDOOR_DB":       filepath.Join(t.TempDir(), "stagedoor.db"),
		"STAGEDOOR_HLS_URL":  "http://stream.example:8888",
		"STAGEDOOR_RTMP_URL": "rtmp://stream.example:1935/live",
	}
}

func users(t *testing.T, env map[string]string) []stagedoor.User {
	t.Helper()
	db, err := store.Open(context.Background(), env["STAGEDOOR_DB"])
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	us, err := db.Users(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return us
}

func TestUserAdd(t *testing.T) {
	env := newEnv(t)
	r := runCLI(t, env, "user", "add", "benw", "--json")
	if r.err != nil {
		t.Fatalf("user add: %v %s", r.err, r.stderr)
	}
	var v map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatal(err)
	}
	if v["name"] != "benw" || !stagedoor.IsKey(v["stream_key"]) || v["server_url"] != "rtmp://stream.example:1935/live" ||
		v["hls_url"] != "http://stream.example:8888/live/benw/index.m3u8" {
		t.Errorf("user add --json = %v", v)
	}
	db, _ := store.Open(t.Context(), env["STAGEDOOR_DB"])
	defer db.Close()
	if o, err := db.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(v["stream_key"])); err != nil || o.UserName != "benw" {
		t.Errorf("printed key does not verify: %v %+v", err, o)
	}

	text := runCLI(t, env, "user", "add", "alice")
	for _, want := range []string{"Server:     rtmp://stream.example:1935/live", "Stream Key: sk_", "http://stream.example:8888/live/alice/index.m3u8"} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("user add output lacks %q:\n%s", want, text.stdout)
		}
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	env := newEnv(t)
	if r := runCLI(t, env, "user", "add", "benw"); r.err != nil {
		t.Fatal(r.err)
	}
	before := users(t, env)
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"DuplicateUser", []string{"user", "add", "benw"}},
		{"UppercaseName", []string{"user", "add", "BenW"}},
		{"ReservedName", []string{"user", "add", "api"}},
		{"KeyPrefixName", []string{"user", "add", "sk_abc"}},
		{"TwoNames", []string{"user", "add", "aaa", "bbb"}},
		{"NoName", []string{"user", "add"}},
		{"BanUnknown", []string{"user", "ban", "nobody"}},
		{"UnbanUnknown", []string{"user", "unban", "nobody"}},
		{"ResetUnknown", []string{"key", "reset", "nobody"}},
		{"UnknownUserCommand", []string{"user", "delete", "benw"}},
		{"UnknownCommand", []string{"frobnicate"}},
		{"UnknownFlag", []string{"user", "list", "--nope"}},
		{"HookUnknownEvent", []string{"hook", "ready"}},
		{"HookWithoutEnv", []string{"hook", "available"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, env, tt.args...)
			if r.err == nil {
				t.Fatalf("%v: nil error", tt.args)
			}
			if code := exitCode(r.err); code != 2 {
				t.Errorf("exit code = %d, want 2 (err %v)", code, r.err)
			}
			if keyShape.MatchString(r.err.Error()) {
				t.Errorf("error names a key: %v", r.err)
			}
		})
	}
	after := users(t, env)
	if len(after) != len(before) || after[0].Name != before[0].Name || after[0].Active != before[0].Active {
		t.Errorf("users changed: %+v -> %+v", before, after)
	}
}

func TestBanUnbanAndKeyReset(t *testing.T) {
	env := newEnv(t)
	r := runCLI(t, env, "user", "add", "benw", "--json")
	var v map[string]string
	_ = json.Unmarshal([]byte(r.stdout), &v)
	oldKey := v["stream_key"]

	if r := runCLI(t, env, "user", "ban", "benw"); r.err != nil {
		t.Fatal(r.err)
	}
	if us := users(t, env); us[0].Active {
		t.Error("banned user still active")
	}
	if r := runCLI(t, env, "user", "unban", "benw"); r.err != nil {
		t.Fatal(r.err)
	}
	if us := users(t, env); !us[0].Active {
		t.Error("unbanned user inactive")
	}

	r = runCLI(t, env, "key", "reset", "benw", "--json")
	if r.err != nil {
		t.Fatal(r.err)
	}
	_ = json.Unmarshal([]byte(r.stdout), &v)
	db, _ := store.Open(t.Context(), env["STAGEDOOR_DB"])
	defer db.Close()
	if _, err := db.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(oldKey)); err == nil {
		t.Error("old key still valid after key reset")
	}
	if _, err := db.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(v["stream_key"])); err != nil {
		t.Errorf("new key invalid: %v", err)
	}

	list := runCLI(t, env, "user", "list", "--json")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(list.stdout), &rows); err != nil || len(rows) != 1 || rows[0]["name"] != "benw" {
		t.Errorf("user list --json = %s (%v)", list.stdout, err)
	}
	if strings.Contains(list.stdout, "sk_") {
		t.Error("user list shows a key")
	}
}

// TestServePanelURLRefused: a --panel-url that is not an absolute http(s) URL (invite
// links would be wrong or carry credentials) stops serve and run before anything starts.
func TestServePanelURLRefused(t *testing.T) {
	for _, cmd := range []string{"serve", "run"} {
		for _, bad := range []string{"ftp://tv.example/panel/", "/panel/", "https://u:p@tv.example/panel/"} {
			env := newEnv(t)
			r := runCLI(t, env, cmd, "--panel-url", bad)
			if r.err == nil || exitCode(r.err) != 2 || !strings.Contains(r.err.Error(), "panel-url") || strings.Contains(r.err.Error(), "u:p") {
				t.Errorf("%s --panel-url %q: err %v, stderr %q; want exit 2 naming the flag, not echoing the value", cmd, bad, r.err, r.stderr)
			}
		}
	}
}

func TestServeNeedsHookSecret(t *testing.T) {
	r := runCLI(t, newEnv(t), "serve")
	if r.err == nil || exitCode(r.err) != 2 {
		t.Errorf("serve without %s: err %v", "STAGEDOOR_HOOK_SECRET", r.err)
	}
}

func TestRedactor(t *testing.T) {
	key := stagedoor.NewKey()
	var out bytes.Buffer
	r := newRedactor(&out, []string{"topsecret-relay", ""})
	for _, chunk := range []string{
		"INF [path live/" + key[:10], key[10:] + "] stream is available\n",
		"source rtsp://stagedoor-relay:topsecret-relay@127.0.0.1:8554/live/x\n",
		"query user=alice&pass=$2a$10$abc/def token=tok123\n",
		"INF [RTMP] [conn 127.0.0.1:5000] closed: path 'live/" + key[:len(key)-1] + "' is not configured\n",
		"INF path 'live/" + key[1:] + "' and 'live/" + key[:20] + "' refused\n",
		"INF [session 3fa85f64-5717-4562-b3fc-2c963f66afa6] created by benw_the_streamer\n",
		"source rtsp://u:other-pass@host/x and tail without newline",
	} {
		_, _ = r.Write([]byte(chunk))
	}
	r.Flush()
	got := out.String()
	for _, secret := range []string{key, key[:len(key)-1], key[1:], key[3:20], "topsecret-relay", "$2a$10$abc", "tok123", "other-pass"} {
		if strings.Contains(got, secret) {
			t.Errorf("output still contains %q:\n%s", secret, got)
		}
	}
	for _, want := range []string{"key:" + stagedoor.Fingerprint(key), "stream is available", "user=alice", "tail without newline",
		"3fa85f64-5717-4562-b3fc-2c963f66afa6", "benw_the_streamer", "is not configured"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

// TestCLIChangesAreAudited: every change made at the command line leaves one admin audit
// entry marked cli (the CLI and the admin API share one operator-action service), and a
// refused command leaves none.
func TestCLIChangesAreAudited(t *testing.T) {
	env := newEnv(t)
	steps := []struct {
		args       []string
		wantReason string
	}{
		{[]string{"user", "add", "benw"}, "user created"},
		{[]string{"user", "ban", "benw"}, "user banned"},
		{[]string{"user", "unban", "benw"}, "user unbanned"},
		{[]string{"key", "add", "benw", "--label", "obs"}, "key added "},
		{[]string{"key", "reset", "benw"}, "keys reset"},
		{[]string{"user", "passwd", "benw", "--password", "correct horse"}, "password set"},
		{[]string{"stream", "add", "concert", "--user", "benw"}, "stream created concert"},
		{[]string{"stream", "rm", "concert"}, "stream removed concert"},
		{[]string{"key", "reset", "--all"}, "all keys reset (1 users)"},
	}
	for _, st := range steps {
		if r := runCLI(t, env, st.args...); r.err != nil {
			t.Fatalf("%v: %v %s", st.args, r.err, r.stderr)
		}
	}
	for _, bad := range [][]string{{"user", "ban", "nobody"}, {"user", "add", "benw"}, {"stream", "rm", "nothere"}} {
		if r := runCLI(t, env, bad...); r.err == nil {
			t.Fatalf("%v: nil error", bad)
		}
	}
	r := runCLI(t, env, "audit", "--json")
	if r.err != nil {
		t.Fatalf("audit: %v", r.err)
	}
	var es []stagedoor.AuditEntry
	if err := json.Unmarshal([]byte(r.stdout), &es); err != nil {
		t.Fatalf("audit --json: %v\n%s", err, r.stdout)
	}
	if len(es) != len(steps) {
		t.Fatalf("audit has %d entries, want %d (one per change, none for refusals):\n%s", len(es), len(steps), r.stdout)
	}
	for i, st := range steps {
		e := es[len(es)-1-i] // newest first
		if e.Kind != "admin" || e.Protocol != "cli" || e.Decision != "ok" || !strings.HasPrefix(e.Reason, st.wantReason) {
			t.Errorf("%v: audit entry = %+v, want admin via cli %q", st.args, e, st.wantReason)
		}
	}
	if keyShape.MatchString(r.stdout) || strings.Contains(r.stdout, "$2a$") || strings.Contains(r.stdout, "correct horse") {
		t.Errorf("audit output carries a secret:\n%s", r.stdout)
	}
}
