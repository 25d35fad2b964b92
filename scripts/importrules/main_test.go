package main

import (
	"bytes"
	"os/exec"
	"slices"
	"testing"
)

func ours(rel ...string) []string {
	out := make([]string, 0, len(rel))
	for _, r := range rel {
		if r == "." {
			out = append(out, module)
		} else {
			out = append(out, module+"/"+r)
		}
	}
	return out
}

// TestCheck: each kind of broken rule is reported, and a graph that follows the rules
// reports nothing.
func TestCheck(t *testing.T) {
	good := []pkg{
		{ImportPath: module},
		{ImportPath: module + "/store", Imports: ours("."), Deps: ours(".")},
		{ImportPath: module + "/policy", Imports: ours("."), Deps: ours(".")},
		{ImportPath: module + "/authserver", Imports: append(ours(".", "policy"), "net/http"), Deps: append(ours(".", "policy"), "net/http")},
		{ImportPath: module + "/cmd/stagedoor", Imports: ours(".", "store", "policy", "authserver"), Deps: ours(".", "store", "policy", "authserver")},
	}
	if got := check(good, rules); len(got) != 0 {
		t.Errorf("a graph that follows the rules: %v", got)
	}
	for _, tt := range []struct {
		name string
		p    pkg
		want string
	}{
		{"PolicyImportsHTTP", pkg{ImportPath: module + "/policy", Imports: append(ours("."), "net/http"), Deps: []string{"net/http"}},
			"policy depends on net/http, which its rule forbids"},
		{"AuthserverImportsStore", pkg{ImportPath: module + "/authserver", Imports: ours("store"), Deps: ours("store", ".")},
			"authserver imports store, which its rule does not allow"},
		{"PluginReachesStoreThroughAnotherPackage", pkg{ImportPath: module + "/plugin", Imports: ours("policy"), Deps: ours("policy", "store")},
			"plugin depends on store, which its rule forbids"},
		{"VocabularyImportsOurs", pkg{ImportPath: module, Imports: ours("policy"), Deps: ours("policy")},
			". imports policy, which its rule does not allow"},
		{"TestHelperInProductCode", pkg{ImportPath: module + "/web", Imports: ours("internal/testutil"), Deps: ours("internal/testutil")},
			"web imports the test helper internal/testutil outside its tests"},
		{"NewPackageWithoutRule", pkg{ImportPath: module + "/newthing"}, "newthing has no import rule: add one to scripts/importrules"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			graph := append(slices.Clone(good), tt.p)
			if got := check(graph, rules); !slices.Contains(got, tt.want) {
				t.Errorf("check = %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

// TestModuleFollowsRules runs the check on this module's real import graph, so that
// `make test` fails on a broken import rule as `make lint` does.
func TestModuleFollowsRules(t *testing.T) {
	cmd := exec.CommandContext(t.Context(), "go", "list", "-json", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs, err := decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < len(rules)-2 {
		t.Fatalf("go list found %d packages, want about %d", len(pkgs), len(rules))
	}
	for _, p := range check(pkgs, rules) {
		t.Error(p)
	}
}
