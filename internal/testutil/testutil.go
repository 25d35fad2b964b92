// Package testutil holds the helpers tests of several packages share: a goroutine-safe
// buffer for logs, a clock tests move by hand, credentials that fail on demand and
// MediaMTX's auth body. It imports no storage backend (internal/testdb opens the real
// SQLite database), so the store conformance suite can use it. Only tests import it.
package testutil

import (
	"bytes"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Buffer is a bytes.Buffer that goroutines may write to while a test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger returns a debug-level text logger writing into a new Buffer.
func Logger() (*slog.Logger, *Buffer) {
	b := &Buffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// Discard is a logger that drops everything.
func Discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Clock is a time source tests move by hand; safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// MediaMTXID is a MediaMTX connection id, as sent in the auth body's "id" field.
const MediaMTXID = "6c4d5f3e-2b1a-4c9d-8e7f-0a1b2c3d4e5f"

// MediaMTXAuthBody is the exact JSON body MediaMTX v1.21.0 POSTs to its HTTP auth
// (internal/auth/manager.go and the TestAuthHTTP fixture in manager_test.go), from
// 127.0.0.1 without credentials.
func MediaMTXAuthBody(action, path, protocol string) string {
	return `{"user":"","password":"","token":"","ip":"127.0.0.1","action":"` + action +
		`","path":"` + path + `","protocol":"` + protocol + `","id":"` + MediaMTXID +
		`","query":"","userAgent":"FMLE/3.0 (compatible; Lavf59.27.100)"}`
}
