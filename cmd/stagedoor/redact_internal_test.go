package main

import (
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"
)

// redactEveryPattern is redact without the guards that skip a pattern: the reference
// the guarded version must agree with.
func redactEveryPattern(r *redactor, line string) string {
	for _, s := range r.secrets {
		line = strings.ReplaceAll(line, s, redactedMark)
	}
	line = keyInText.ReplaceAllStringFunc(line, func(k string) string { return "key:" + stagedoor.Fingerprint(k) })
	line = keyLikeRun.ReplaceAllStringFunc(line, func(run string) string {
		if uuidShape.MatchString(run) {
			return run
		}
		return redactedMark
	})
	line = keyPrefix.ReplaceAllString(line, "sk_"+redactedMark)
	line = credInURL.ReplaceAllString(line, "${1}"+redactedMark+"@")
	return credInQuery.ReplaceAllString(line, "${1}="+redactedMark)
}

func redactSeeds() []string {
	key := stagedoor.NewKey()
	return []string{
		"",
		`{"time":"2026-12-02T07:00:00.123456789Z","level":"INFO","msg":"auth","action":"publish","protocol":"rtmp","ip":"203.0.113.7","path_kind":"key","user":"benw","allow":true,"reason":"stream key","key_fp":"0a1b2c3d","user_agent":"FMLE/3.0 (compatible; Lavf59.27.100)"}`,
		"INF [path live/" + key + "] stream is available",
		"INF [path live/" + key[:30] + "]",
		"INF path 'live/" + key[1:] + "' refused",
		"source rtsp://stagedoor-relay:topsecret-relay@127.0.0.1:8554/live/x",
		"query user=alice&pass=$2a$10$abc/def token=tok123 KEY=x",
		"INF [session 3fa85f64-5717-4562-b3fc-2c963f66afa6] created",
		strings.Repeat("a", 25) + " " + strings.Repeat("b", 26),
		"sk_abc sk_ sk_abcd",
		"webhook to https://user:pw@hooks.example/x failed",
	}
}

// TestRedactGuardsChangeNothing: skipping a pattern that cannot match gives the same
// output as running every pattern.
func TestRedactGuardsChangeNothing(t *testing.T) {
	r := newRedactor(nil, []string{"topsecret-relay"})
	for _, line := range redactSeeds() {
		if got, want := r.redact(line), redactEveryPattern(r, line); got != want {
			t.Errorf("redact(%q)\n got %q\nwant %q", line, got, want)
		}
	}
}

func FuzzRedactGuards(f *testing.F) {
	for _, s := range redactSeeds() {
		f.Add(s)
	}
	r := newRedactor(nil, []string{"topsecret-relay"})
	f.Fuzz(func(t *testing.T, line string) {
		if got, want := r.redact(line), redactEveryPattern(r, line); got != want {
			t.Errorf("redact(%q)\n got %q\nwant %q", line, got, want)
		}
	})
}

// BenchmarkRedactDecisionLine is the redactor's cost on one auth decision log line, the
// line `run` writes for every MediaMTX auth call.
func BenchmarkRedactDecisionLine(b *testing.B) {
	r := newRedactor(nil, []string{"topsecret-relay", "another-secret"})
	line := redactSeeds()[1]
	for b.Loop() {
		_ = r.redact(line)
	}
}
