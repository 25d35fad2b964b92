package main

import (
	"flag"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

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

// logFlushDelay is how long a log line may wait in memory before it is written.
const logFlushDelay = 10 * time.Millisecond

// logBufferMax bytes waiting are written at once, without waiting for the delay.
const logBufferMax = 32 << 10

// delayedWriter gathers log lines for up to logFlushDelay and writes them in one call:
// `serve` and `run` log every auth decision, MediaMTX calls auth one request at a time,
// and a write(2) per line cost about 5 % of its admission rate. Lines stay whole and in
// order. Close writes what is left; a crash loses at most the last logFlushDelay.
type delayedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	buf    []byte
	closed bool
	kick   chan struct{} // the buffer went from empty to not
	stop   chan struct{}
	done   chan struct{}
}

func newDelayedWriter(w io.Writer) *delayedWriter {
	d := &delayedWriter{w: w, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go d.run()
	return d
}

// Write never fails: a log line has nowhere else to go.
func (d *delayedWriter) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		_, _ = d.w.Write(p)
		return len(p), nil
	}
	wasEmpty := len(d.buf) == 0
	d.buf = append(d.buf, p...)
	switch {
	case len(d.buf) >= logBufferMax:
		d.flushLocked()
	case wasEmpty:
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

func (d *delayedWriter) flushLocked() {
	if len(d.buf) > 0 {
		_, _ = d.w.Write(d.buf)
		d.buf = d.buf[:0]
	}
	if cap(d.buf) > 4*logBufferMax {
		d.buf = nil // one huge line does not pin its memory
	}
}

func (d *delayedWriter) run() {
	defer close(d.done)
	timer := time.NewTimer(logFlushDelay)
	timer.Stop()
	for {
		select {
		case <-d.kick:
			timer.Reset(logFlushDelay)
			select {
			case <-timer.C:
			case <-d.stop:
				return
			}
			d.mu.Lock()
			d.flushLocked()
			d.mu.Unlock()
		case <-d.stop:
			return
		}
	}
}

// Close writes what is waiting; later writes go straight through.
func (d *delayedWriter) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	d.flushLocked()
	d.mu.Unlock()
	close(d.stop)
	<-d.done
}
