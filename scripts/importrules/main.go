// Command importrules checks the import direction of Stagedoor's packages (`make lint`):
// each package may import only the packages of this module its rule lists, and none of
// the packages its rule forbids, directly or through another package. It reads the
// import graph from `go list -json ./...` (non-test imports) and exits 1 on a violation.
//
// The rules are the layout in the README: the vocabulary imports nothing of ours; a
// storage backend is imported only by cmd (and internal/testdb, which opens it for
// tests); the conformance suite sees no backend; the policy knows no HTTP; adapters never
// import each other.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
)

const module = "github.com/stagedoor/stagedoor"

// rule says what one package may import from this module (Allow, directly) and what it
// must not depend on at all (Deny, transitively; any import path, ours or not).
type rule struct {
	Allow []string
	Deny  []string
}

// noStore keeps SQL in store: neither the package nor either database driver.
var (
	noStore   = []string{"store", "modernc.org/sqlite", "github.com/jackc/pgx/v5"}
	noHTTPGin = append(noStore[:len(noStore):len(noStore)], "net/http", "github.com/gin-gonic/gin")
)

// rules maps a package (relative to the module, "." for the root) to its rule. Every
// package of the module must have one: a new package needs a decision.
var rules = map[string]rule{
	".":                     {},
	"store":                 {Allow: []string{"."}},
	"policy":                {Allow: []string{"."}, Deny: noHTTPGin},
	"manage":                {Allow: []string{"."}, Deny: noHTTPGin},
	"mediamtx":              {Deny: append(noStore, "github.com/gin-gonic/gin")},
	"mediamtx/mediamtxtest": {Allow: []string{"mediamtx"}, Deny: noStore},
	"health":                {Allow: []string{"."}, Deny: append(noStore, "github.com/gin-gonic/gin")},
	"audit":                 {Allow: []string{"."}, Deny: append(noStore, "github.com/gin-gonic/gin")},
	"webhook":               {Allow: []string{"."}, Deny: append(noStore, "github.com/gin-gonic/gin")},
	"authserver":            {Allow: []string{".", "policy"}, Deny: append(noStore, "plugin", "rtmpfront")},
	"rtmpfront":             {Allow: []string{".", "policy"}, Deny: append(noStore, "plugin", "authserver", "github.com/gin-gonic/gin")},
	"plugin":                {Allow: []string{".", "policy", "mediamtx"}, Deny: append(noStore, "authserver", "github.com/gin-gonic/gin")},
	"web":                   {Allow: []string{".", "manage"}, Deny: append(noStore, "authserver", "plugin")},
	"adminapi":              {Allow: []string{".", "manage"}, Deny: append(noStore, "authserver", "plugin")},
	"panel":                 {Allow: []string{".", "manage", "policy"}, Deny: append(noStore, "authserver", "plugin", "web", "adminapi", "github.com/gin-gonic/gin")},
	"store/storetest":       {Allow: []string{".", "internal/testutil"}, Deny: noStore},
	"internal/testutil":     {Allow: []string{"."}, Deny: noStore},
	"internal/testdb":       {Allow: []string{"store", "store/pgtest"}},
	"store/pgtest":          {Deny: []string{"store"}},
	"cmd/stagedoor":         {Allow: []string{"*"}},
	"e2e":                   {Allow: []string{"*"}},
	"scripts/benchreport":   {},
	"scripts/importrules":   {},
}

// testOnly packages hold test helpers: only tests may import them.
var testOnly = []string{"internal/testutil", "internal/testdb", "mediamtx/mediamtxtest", "store/storetest", "store/pgtest"}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func main() {
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "importrules: go list:", err)
		os.Exit(2)
	}
	pkgs, err := decode(bytes.NewReader(out))
	if err != nil {
		fmt.Fprintln(os.Stderr, "importrules:", err)
		os.Exit(2)
	}
	problems := check(pkgs, rules)
	for _, p := range problems {
		fmt.Println("importrules:", p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
	fmt.Printf("importrules: %d packages follow the import rules\n", len(pkgs))
}

func decode(r io.Reader) ([]pkg, error) {
	var pkgs []pkg
	dec := json.NewDecoder(r)
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("decode go list: %w", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// rel turns an import path of this module into its rule key; ok is false for others.
func rel(path string) (string, bool) {
	if path == module {
		return ".", true
	}
	r, ok := strings.CutPrefix(path, module+"/")
	return r, ok
}

// full is the import path a rule key names: one of our packages, or any other path.
func full(key string, ours map[string]bool) string {
	switch {
	case key == ".":
		return module
	case ours[key]:
		return module + "/" + key
	}
	return key
}

// check returns one line per violation, sorted.
func check(pkgs []pkg, rules map[string]rule) []string {
	ours := map[string]bool{}
	for _, p := range pkgs {
		if k, ok := rel(p.ImportPath); ok {
			ours[k] = true
		}
	}
	var problems []string
	for _, p := range pkgs {
		name, ok := rel(p.ImportPath)
		if !ok {
			continue
		}
		r, ok := rules[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s has no import rule: add one to scripts/importrules", name))
			continue
		}
		for _, imp := range p.Imports {
			dep, ok := rel(imp)
			if !ok {
				continue
			}
			if slices.Contains(testOnly, dep) && !slices.Contains(testOnly, name) {
				problems = append(problems, fmt.Sprintf("%s imports the test helper %s outside its tests", name, dep))
				continue
			}
			if !slices.Contains(r.Allow, "*") && !slices.Contains(r.Allow, dep) {
				problems = append(problems, fmt.Sprintf("%s imports %s, which its rule does not allow", name, dep))
			}
		}
		for _, d := range r.Deny {
			target := full(d, ours)
			if slices.Contains(p.Deps, target) || slices.Contains(p.Imports, target) {
				problems = append(problems, fmt.Sprintf("%s depends on %s, which its rule forbids", name, d))
			}
		}
	}
	sort.Strings(problems)
	return problems
}
