package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/store"
)

func runCLIStdin(t *testing.T, env map[string]string, stdin string, args ...string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), append([]string{"stagedoor"}, args...), func(k string) string { return env[k] },
		strings.NewReader(stdin), &stdout, &stderr)
	return cliResult{stdout.String(), stderr.String(), err}
}

func TestOperatorAdd(t *testing.T) {
	env := newEnv(t)
	for _, tt := range []struct{ name, stdin, want string }{
		{"Empty", "", "stdin"},
		{"EmptyLine", "\n", "empty"},
		{"Short", "hunter2\n", "too weak"},
		{"Repeated", "zzzzzzzzzzzz\n", "too weak"},
		{"IsName", "boss_acct1\n", "too weak"},
	} {
		t.Run("Refuses"+tt.name, func(t *testing.T) {
			r := runCLIStdin(t, env, tt.stdin, "operator", "add", "boss_acct1")
			if r.err == nil || exitCode(r.err) != 2 || !strings.Contains(r.err.Error(), tt.want) {
				t.Errorf("operator add with %q: err = %v, want a usage error mentioning %q", tt.stdin, r.err, tt.want)
			}
		})
	}
	r := runCLIStdin(t, env, "correct horse battery\n", "operator", "add", "boss_acct1")
	if r.err != nil || !strings.Contains(r.stdout, "Created panel operator boss_acct1") {
		t.Fatalf("operator add: %v %q %q", r.err, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, "correct horse") {
		t.Error("the password was echoed")
	}
	if r := runCLIStdin(t, env, "correct horse battery\n", "operator", "add", "boss_acct1"); exitCode(r.err) != 2 {
		t.Errorf("second operator add: %v, want exit 2 (taken)", r.err)
	}
	db, err := store.Open(t.Context(), env["STAGEDOOR_DB"])
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, hash, err := db.PanelAccount(t.Context(), "boss_acct1")
	if err != nil || a.Role != stagedoor.RoleOperator || !stagedoor.IsHashShaped(hash) {
		t.Errorf("account = %+v %v, hash shaped %v", a, err, stagedoor.IsHashShaped(hash))
	}
	entries, _ := db.Audit(t.Context(), stagedoor.AuditFilter{})
	if len(entries) != 1 || entries[0].Reason != "panel operator created boss_acct1" || entries[0].Protocol != "cli" {
		t.Errorf("audit = %+v", entries)
	}
}

func TestUserInvite(t *testing.T) {
	env := newEnv(t)
	if r := runCLI(t, env, "user", "invite", "benw"); !errors.Is(r.err, stagedoor.ErrNotFound) {
		t.Errorf("invite for an unknown channel: %v, want ErrNotFound", r.err)
	}
	if r := runCLI(t, env, "user", "add", "benw"); r.err != nil {
		t.Fatal(r.err)
	}
	env["STAGEDOOR_PANEL_URL"] = "https://panel.example/panel"
	r := runCLI(t, env, "user", "invite", "benw", "--json")
	if r.err != nil {
		t.Fatalf("user invite: %v %s", r.err, r.stderr)
	}
	var v map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatal(err)
	}
	token, ok := strings.CutPrefix(v["url"], "https://panel.example/panel/invite/")
	if !ok || len(token) != 43 {
		t.Fatalf("url = %q, want https://panel.example/panel/invite/<token>", v["url"])
	}
	db, err := store.Open(t.Context(), env["STAGEDOOR_DB"])
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	inv, err := db.PanelInvite(t.Context(), stagedoor.TokenDigest(token))
	if err != nil || inv.Channel != "benw" {
		t.Errorf("printed invite does not resolve: %+v %v", inv, err)
	}
	text := runCLI(t, env, "user", "invite", "benw", "--panel-url", "http://h:8080/panel/")
	if text.err != nil || !strings.Contains(text.stdout, "http://h:8080/panel/invite/") {
		t.Errorf("user invite text: %v %q", text.err, text.stdout)
	}
	if r := runCLI(t, env, "user", "invite", "benw", "--panel-url", "ftp://x"); exitCode(r.err) != 2 {
		t.Errorf("bad --panel-url: %v, want exit 2", r.err)
	}
}
