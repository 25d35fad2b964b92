package main

import (
	"bufio"
	"bytes"
	"flag"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const unitsDir = "../../deploy/systemd"

// TestSystemdUnitsVerify runs `systemd-analyze verify` on the shipped units in a scratch
// root that holds the machine's own system units and stand-in binaries at the units'
// paths: any complaint (an unknown key, a missing dependency, a wrong path) fails.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is missing (Debian package systemd; scripts/test-deps.sh installs it)")
		}
		t.Skip("systemd-analyze is missing: apt-get install systemd")
	}
	systemUnits := ""
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(d, "multi-user.target")); err == nil {
			systemUnits = d
			break
		}
	}
	if systemUnits == "" {
		t.Fatal("no system units (multi-user.target) found beside systemd-analyze")
	}
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755))
	if out, err := exec.Command("cp", "-a", systemUnits, filepath.Join(root, "usr/lib/systemd/system")).CombinedOutput(); err != nil {
		t.Fatalf("copy system units: %v: %s", err, out)
	}
	for _, bin := range []string{"stagedoor", "mediamtx"} {
		dst := filepath.Join(root, "usr/local/bin", bin)
		must(os.MkdirAll(filepath.Dir(dst), 0o755))
		must(os.WriteFile(dst, []byte("#!/bin/sh\n"), 0o755)) // #nosec G306 -- a stand-in executable
	}
	unitDir := filepath.Join(root, "etc/systemd/system")
	must(os.MkdirAll(unitDir, 0o755))
	var units []string
	for _, u := range []string{"stagedoor.service", "mediamtx.service"} {
		raw, err := os.ReadFile(filepath.Join(unitsDir, u))
		must(err)
		must(os.WriteFile(filepath.Join(unitDir, u), raw, 0o644)) // #nosec G306 -- a unit file
		units = append(units, filepath.Join(unitDir, u))
	}
	cmd := exec.Command(analyze, append([]string{"verify", "--root=" + root}, units...)...) // #nosec G204 -- test
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	// The check itself must be able to fail: a unit with an unknown key is refused.
	bad := filepath.Join(unitDir, "stagedoor.service")
	raw, _ := os.ReadFile(bad)
	must(os.WriteFile(bad, bytes.Replace(raw, []byte("[Service]\n"), []byte("[Service]\nRestrt=always\n"), 1), 0o644))           // #nosec G306
	if out, _ := exec.Command(analyze, "verify", "--root="+root, bad).CombinedOutput(); !bytes.Contains(out, []byte("Restrt")) { // #nosec G204
		t.Fatalf("systemd-analyze verify did not notice an unknown key: %s", out)
	}
}

// TestSystemdUnitsAgree: stagedoor.service's command line is a valid `stagedoor serve`
// with the example environment files, and mediamtx.env points MediaMTX's auth, hooks, API
// and RTMP where that command line has Stagedoor listen and look. No secret is in argv.
func TestSystemdUnitsAgree(t *testing.T) {
	argv := execStart(t, filepath.Join(unitsDir, "stagedoor.service"))
	if len(argv) < 2 || filepath.Base(argv[0]) != "stagedoor" || argv[1] != "serve" {
		t.Fatalf("ExecStart = %q, want stagedoor serve ...", argv)
	}
	for _, a := range argv {
		if strings.Contains(strings.ToLower(a), "secret") || strings.Contains(strings.ToLower(a), "password") {
			t.Errorf("ExecStart argument %q names a secret: secrets go in the environment files", a)
		}
	}
	env := map[string]string{}
	for _, f := range []string{"hook.env.example", "stagedoor.env.example"} {
		for k, v := range envFile(t, filepath.Join(unitsDir, f)) {
			env[k] = v
		}
	}
	getenv := func(k string) string { return env[k] }
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cfg serviceConfig
	cfg.register(fs, getenv, "")
	if pos, err := parseFlags(fs, argv[2:]); err != nil || len(pos) > 0 {
		t.Fatalf("stagedoor.service's serve flags: %v (left over %q)", err, pos)
	}
	if err := cfg.validate(); err != nil {
		t.Fatalf("stagedoor.service's serve flags: %v", err)
	}
	if _, err := loadSecrets(getenv); err != nil {
		t.Fatalf("stagedoor.env's secrets: %v", err)
	}

	mtx := envFile(t, filepath.Join(unitsDir, "mediamtx.env.example"))
	api, err := url.Parse(cfg.mediamtxAPI)
	if err != nil {
		t.Fatal(err)
	}
	rtmpHost, _, _ := net.SplitHostPort(cfg.mediamtxRTMP)
	for k, want := range map[string]string{
		"MTX_AUTHHTTPADDRESS":    "http://" + cfg.internalAddr + "/mediamtx/auth",
		"STAGEDOOR_HOOK_URL":     "http://" + cfg.internalAddr + "/internal/hook",
		"MTX_APIADDRESS":         api.Host,
		"MTX_RTMPADDRESS":        cfg.mediamtxRTMP,
		"MTX_RTMPTRUSTEDPROXIES": rtmpHost,
	} {
		if mtx[k] != want {
			t.Errorf("mediamtx.env %s = %q, want %q (to match stagedoor.service)", k, mtx[k], want)
		}
	}
	if env["STAGEDOOR_HOOK_SECRET"] == "" {
		t.Error("hook.env sets no STAGEDOOR_HOOK_SECRET")
	}
	for _, u := range []string{"stagedoor.service", "mediamtx.service"} {
		raw, _ := os.ReadFile(filepath.Join(unitsDir, u))
		if !bytes.Contains(raw, []byte("EnvironmentFile=/etc/stagedoor/hook.env\n")) {
			t.Errorf("%s does not read /etc/stagedoor/hook.env: the two would not share the hook secret", u)
		}
	}
}

// execStart returns the argv of a unit's ExecStart, its continuation lines joined.
func execStart(t *testing.T, unit string) []string {
	t.Helper()
	raw, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.ReplaceAll(string(raw), "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			if strings.ContainsAny(v, `"'$%`) {
				t.Fatalf("ExecStart %q: quotes and expansions are not understood by this test", v)
			}
			return strings.Fields(v)
		}
	}
	t.Fatalf("%s has no ExecStart", unit)
	return nil
}

// envFile reads KEY=VALUE lines, skipping comments and blank lines.
func envFile(t *testing.T, name string) map[string]string {
	t.Helper()
	f, err := os.Open(name) // #nosec G304 -- a shipped file
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not KEY=VALUE", name, line)
		}
		m[k] = v
	}
	return m
}
