package main

import (
	"flag"
	"io"
	"log/slog"
	"strings"

	"golang.org/x/sys/unix"
)

// logConfig is how `serve` and `run` log: --log-level and --log-format.
type logConfig struct {
	// level is debug, info, warn or error; default info.
	level string
	// format is text or json; "" picks text when stderr is a terminal, JSON otherwise.
	format string
}

func (c *logConfig) register(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&c.level, "log-level", envOr(getenv, envLogLevel, "info"),
		"debug, info, warn or error (env "+envLogLevel+")")
	fs.StringVar(&c.format, "log-format", getenv(envLogFormat),
		"text or json; default text when stderr is a terminal, json otherwise (env "+envLogFormat+")")
}

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
}

func (c *logConfig) validate() error {
	if _, ok := logLevels[strings.ToLower(c.level)]; !ok {
		return usageError("-log-level must be debug, info, warn or error, not " + quoteFlag(c.level))
	}
	switch strings.ToLower(c.format) {
	case "", "text", "json":
	default:
		return usageError("-log-format must be text or json, not " + quoteFlag(c.format))
	}
	return nil
}

// quoteFlag quotes a bad flag value for an error line, cut short: it is the operator's
// input, echoed back.
func quoteFlag(v string) string {
	if len(v) > 32 {
		v = v[:32] + "…"
	}
	return `"` + strings.ToValidUTF8(v, "?") + `"`
}

// newLogger builds the service's logger writing to w, as c says. stderr is where the
// log goes in the end (w may wrap it, as `run`'s redactor does): the default format
// depends on whether it is a terminal, as isTerminal says. c must have been validated.
func (c logConfig) newLogger(w, stderr io.Writer, isTerminal func(fd uintptr) bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: logLevels[strings.ToLower(c.level)]}
	if c.formatFor(stderr, isTerminal) == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// formatFor is the log format: the flag's, or text when stderr is a terminal (a person
// reads it) and JSON otherwise (journald, a container runtime, a log shipper).
func (c logConfig) formatFor(stderr io.Writer, isTerminal func(fd uintptr) bool) string {
	if f := strings.ToLower(c.format); f != "" {
		return f
	}
	if f, ok := stderr.(interface{ Fd() uintptr }); ok && isTerminal(f.Fd()) {
		return "text"
	}
	return "json"
}

// isTerminal reports whether fd is a terminal.
func isTerminal(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS) // #nosec G115 -- a file descriptor fits an int
	return err == nil
}
