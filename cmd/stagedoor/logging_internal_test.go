package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testutil"
)

// TestLogFlagsRefused: a bad --log-level or --log-format (flag or env) is a usage error
// naming the flag, for `serve` and `run`, before anything starts (no database).
func TestLogFlagsRefused(t *testing.T) {
	bin, conf := fakeMediaMTX(t)
	for _, cmd := range []string{"serve", "run"} {
		for _, tt := range []struct {
			name, flag string
			args       []string
			env        map[string]string
		}{
			{"LevelFlag", "-log-level", []string{"--log-level", "verbose"}, nil},
			{"LevelEnv", "-log-level", nil, map[string]string{envLogLevel: "trace"}},
			{"LevelNumber", "-log-level", []string{"--log-level", "info+2"}, nil},
			{"FormatFlag", "-log-format", []string{"--log-format", "xml"}, nil},
			{"FormatEnv", "-log-format", nil, map[string]string{envLogFormat: "logfmt"}},
		} {
			t.Run(cmd+"/"+tt.name, func(t *testing.T) {
				dbPath := filepath.Join(t.TempDir(), "stagedoor.db")
				args := []string{"stagedoor", cmd, "--db", dbPath, "--internal-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0"}
				if cmd == "run" {
					args = append(args, "--mediamtx", bin, "--mediamtx-config", conf, "--rtmp-addr", "127.0.0.1:0")
				}
				getenv := func(k string) string {
					if v, ok := tt.env[k]; ok {
						return v
					}
					return serveEnv(k)
				}
				// A refusal is immediate; the deadline only ends a service that started.
				ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
				defer cancel()
				var stderr bytes.Buffer
				err := run(ctx, append(args, tt.args...), getenv, strings.NewReader(""), io.Discard, &stderr)
				if exitCode(err) != 2 || !strings.Contains(err.Error(), tt.flag+" must be") {
					t.Fatalf("err = %v (exit %d), want a usage error about %s", err, exitCode(err), tt.flag)
				}
				if stderr.Len() != 0 {
					t.Errorf("output before the refusal: %s", stderr.String())
				}
				if _, statErr := os.Stat(dbPath); !errors.Is(statErr, os.ErrNotExist) {
					t.Errorf("database created: stat err = %v", statErr)
				}
			})
		}
	}
}

// TestLogFormatDefault: without --log-format, text when stderr is a terminal and JSON
// otherwise (a pipe, a file, journald); the flag and the env override the guess.
func TestLogFormatDefault(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	yes := func(uintptr) bool { return true }
	no := func(uintptr) bool { return false }
	for _, tt := range []struct {
		name   string
		format string
		stderr io.Writer
		isTerm func(uintptr) bool
		want   string
	}{
		{"TerminalText", "", w, yes, "text"},
		{"NotTerminalJSON", "", w, no, "json"},
		{"NoFileJSON", "", &bytes.Buffer{}, yes, "json"},
		{"FlagJSONOnTerminal", "json", w, yes, "json"},
		{"FlagTextOnPipe", "text", w, no, "text"},
		{"FlagCase", "TEXT", w, no, "text"},
		{"RealPipe", "", w, isTerminal, "json"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := logConfig{level: "info", format: tt.format}
			if got := c.formatFor(tt.stderr, tt.isTerm); got != tt.want {
				t.Errorf("format = %q, want %q", got, tt.want)
			}
			var out bytes.Buffer
			c.newLogger(&out, tt.stderr, tt.isTerm).Info("hello", "k", "v")
			if isJSON := json.Valid(bytes.TrimSpace(out.Bytes())); isJSON != (tt.want == "json") {
				t.Errorf("logger wrote %q, want %s", out.String(), tt.want)
			}
		})
	}
	t.Run("RealTerminal", func(t *testing.T) {
		pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
		if err != nil {
			t.Skip("no /dev/ptmx:", err)
		}
		defer pty.Close()
		if !isTerminal(pty.Fd()) {
			t.Error("isTerminal(/dev/ptmx) = false")
		}
	})
}

// TestLogLevelFilters: each level drops what is below it, in both formats.
func TestLogLevelFilters(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		for _, tt := range []struct {
			level string
			want  []string // messages that get through, of debug, info, warn, error
		}{
			{"debug", []string{"m-debug", "m-info", "m-warn", "m-error"}},
			{"info", []string{"m-info", "m-warn", "m-error"}},
			{"INFO", []string{"m-info", "m-warn", "m-error"}},
			{"warn", []string{"m-warn", "m-error"}},
			{"error", []string{"m-error"}},
		} {
			t.Run(format+"/"+tt.level, func(t *testing.T) {
				c := logConfig{level: tt.level, format: format}
				if err := c.validate(); err != nil {
					t.Fatal(err)
				}
				var out bytes.Buffer
				l := c.newLogger(&out, &out, isTerminal)
				l.Debug("m-debug")
				l.Info("m-info")
				l.Warn("m-warn")
				l.Error("m-error")
				var got []string
				for _, m := range []string{"m-debug", "m-info", "m-warn", "m-error"} {
					if strings.Contains(out.String(), m) {
						got = append(got, m)
					}
				}
				if strings.Join(got, ",") != strings.Join(tt.want, ",") {
					t.Errorf("logged %v, want %v", got, tt.want)
				}
			})
		}
	}
}

// TestRunLogSettings: under `run`, --log-format and --log-level shape Stagedoor's own
// lines, and MediaMTX's output still passes the redactor whatever the format.
func TestRunLogSettings(t *testing.T) {
	key := stagedoor.NewKey()
	dir := t.TempDir()
	bin, conf := filepath.Join(dir, "mediamtx"), filepath.Join(dir, "mediamtx.yml")
	script := "#!/bin/sh\necho \"2026/01/01 00:00:00 WAR [RTMP] [conn 127.0.0.1:5] path live/" + key + ": no one is publishing\"\nexec sleep 60\n"
	if err := os.WriteFile(bin, []byte(script), 0o700); err != nil { // #nosec G306 -- test script
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name          string
		args          []string
		wantListening string // how our "listening" line looks; "" : not logged
	}{
		{"Text", []string{"--log-format", "text"}, `level=INFO msg=listening`},
		{"JSON", []string{"--log-format", "json"}, `"level":"INFO","msg":"listening"`},
		{"WarnDropsInfo", []string{"--log-format", "json", "--log-level", "warn"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			out := &testutil.Buffer{}
			done := make(chan error, 1)
			args := append([]string{"stagedoor", "run", "--db", filepath.Join(t.TempDir(), "stagedoor.db"),
				"--mediamtx", bin, "--mediamtx-config", conf, "--internal-addr", "127.0.0.1:0",
				"--public-addr", "127.0.0.1:0", "--rtmp-addr", "127.0.0.1:0", "--mediamtx-api", "http://127.0.0.1:1"}, tt.args...)
			go func() { done <- run(ctx, args, serveEnv, strings.NewReader(""), io.Discard, out) }()
			// Our listeners log before MediaMTX starts: once its line is out, ours are too.
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(out.String(), "no one is publishing") {
				if time.Now().After(deadline) {
					t.Fatalf("no MediaMTX output:\n%s", out)
				}
				select {
				case err := <-done:
					t.Fatalf("run exited early: %v\n%s", err, out)
				case <-time.After(20 * time.Millisecond):
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("run: %v", err)
			}
			s := out.String()
			if strings.Contains(s, key) || !strings.Contains(s, "key:"+stagedoor.Fingerprint(key)) {
				t.Errorf("MediaMTX's line not redacted:\n%s", s)
			}
			if tt.wantListening == "" {
				if strings.Contains(s, "listening") || strings.Contains(s, `"level":"INFO"`) {
					t.Errorf("info lines at --log-level warn:\n%s", s)
				}
			} else if !strings.Contains(s, tt.wantListening) {
				t.Errorf("no %s in:\n%s", tt.wantListening, s)
			}
		})
	}
}
