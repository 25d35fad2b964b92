package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestShippedConfig checks the security properties of the shipped mediamtx.yml
// (docs/threats.md T32) and that it routes the two Stagedoor path shapes.
func TestShippedConfig(t *testing.T) {
	raw, err := os.ReadFile("../../mediamtx.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("parse mediamtx.yml: %v", err)
	}
	str := func(k string) string { s, _ := c[k].(string); return s }
	boolean := func(k string) (bool, bool) { b, ok := c[k].(bool); return b, ok }

	if got := str("authMethod"); got != "http" {
		t.Errorf("authMethod = %q, want http", got)
	}
	if got := str("authHTTPAddress"); !strings.HasPrefix(got, "http://127.0.0.1:") || !strings.HasSuffix(got, "/mediamtx/auth") {
		t.Errorf("authHTTPAddress = %q, want loopback /mediamtx/auth", got)
	}
	if ex, ok := c["authHTTPExclude"].([]any); !ok || len(ex) != 0 {
		t.Errorf("authHTTPExclude = %v, want explicitly []", c["authHTTPExclude"])
	}
	if lvl := str("logLevel"); lvl == "debug" || lvl == "" {
		t.Errorf("logLevel = %q, want warn or info, never debug", lvl)
	}
	for _, svc := range []string{"api", "metrics", "pprof", "playback"} {
		on, ok := boolean(svc)
		if !ok {
			t.Errorf("%s not set explicitly", svc)
			continue
		}
		if addr := str(svc + "Address"); on && !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("%s is on at %q, want 127.0.0.1 only", svc, addr)
		}
	}
	if on, ok := boolean("moq"); !ok || on {
		t.Errorf("moq = %v, want explicitly false until Stagedoor handles it", c["moq"])
	}
	if methods, _ := c["rtspAuthMethods"].([]any); len(methods) != 1 || methods[0] != "basic" {
		t.Errorf("rtspAuthMethods = %v, want [basic] (digest hides the password from Stagedoor)", c["rtspAuthMethods"])
	}
	if d := str("hlsDirectory"); d != "" {
		t.Errorf("hlsDirectory = %q: segments on disk are named after key paths", d)
	}
	if s := str("runOnConnect"); s != "" {
		t.Errorf("runOnConnect = %q: it fires before auth", s)
	}

	defaults, _ := c["pathDefaults"].(map[string]any)
	for k, v := range defaults {
		if strings.HasPrefix(k, "runOn") && v != "" {
			t.Errorf("pathDefaults.%s is set: runtime alias entries would inherit it", k)
		}
	}
	if rec, _ := defaults["record"].(bool); rec {
		t.Error("pathDefaults.record is on")
	}

	paths, _ := c["paths"].(map[string]any)
	if _, ok := paths["all_others"]; ok {
		t.Error("paths has all_others: every name would reach auth")
	}
	key, _ := paths["~^live/sk_[A-Za-z0-9_-]{43}$"].(map[string]any)
	public, _ := paths["~^live/[a-z0-9_]{3,25}$"].(map[string]any)
	if key == nil || public == nil {
		t.Fatalf("paths must configure the key regex and the public-name regex; got %v", paths)
	}
	if got := key["runOnAvailable"]; got != "stagedoor hook available" {
		t.Errorf("key path runOnAvailable = %v", got)
	}
	if got := key["runOnUnavailable"]; got != "stagedoor hook unavailable" {
		t.Errorf("key path runOnUnavailable = %v", got)
	}
	if _, ok := public["overridePublisher"].(bool); !ok {
		t.Error("public path overridePublisher must be set deliberately")
	}
	if got := public["runOnAvailable"]; got != "stagedoor hook available" {
		t.Errorf("public path runOnAvailable = %v", got)
	}
	dollar := regexp.MustCompile(`\$`)
	for name, p := range paths {
		pm, _ := p.(map[string]any)
		if rec, _ := pm["record"].(bool); rec {
			t.Errorf("path %s records: recordings are named after key paths", name)
		}
		for k, v := range pm {
			s, _ := v.(string)
			if strings.HasPrefix(k, "runOn") && dollar.MatchString(s) {
				t.Errorf("path %s %s contains a $ variable: MediaMTX expands it into argv", name, k)
			}
			if k == "runOnReady" || k == "runOnNotReady" {
				t.Errorf("path %s uses the deprecated %s", name, k)
			}
		}
	}
	if v := string(raw); strings.Contains(v, "sk_") && regexp.MustCompile(`sk_[A-Za-z0-9_-]{43}`).MatchString(v) {
		t.Error("mediamtx.yml contains a literal stream key")
	}
}

// TestPinnedVersion checks that the MediaMTX the Makefile builds is at least v1.20.1
// (hook-injection fix v1.18.1; authHTTPExclude default and API redaction v1.20.1).
func TestPinnedVersion(t *testing.T) {
	raw, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^MEDIAMTX_VERSION\s*\?=\s*v(\d+)\.(\d+)\.(\d+)\s*$`).FindStringSubmatch(string(raw))
	if m == nil {
		t.Fatal("Makefile does not pin MEDIAMTX_VERSION")
	}
	var v [3]int
	for i := range v {
		for _, ch := range m[i+1] {
			v[i] = v[i]*10 + int(ch-'0')
		}
	}
	if v[0] < 1 || (v[0] == 1 && (v[1] < 20 || (v[1] == 20 && v[2] < 1))) {
		t.Errorf("pinned MediaMTX v%d.%d.%d, want >= v1.20.1", v[0], v[1], v[2])
	}
}
