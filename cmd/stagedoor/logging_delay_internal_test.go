package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingWriter counts the writes it gets.
type countingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.buf.Write(p)
}

func (c *countingWriter) snapshot() (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String(), c.writes
}

// TestDelayedWriterGathersLines: lines written together reach the output in far fewer
// writes, whole, in order, and within a short wait; Close writes the rest.
func TestDelayedWriterGathersLines(t *testing.T) {
	out := &countingWriter{}
	d := newDelayedWriter(out)
	var want strings.Builder
	for i := range 200 {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		_, _ = d.Write([]byte(line))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, writes := out.snapshot()
		if got == want.String() {
			if writes >= 50 {
				t.Errorf("200 lines took %d writes, want a few", writes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lines not written within 10 s (flush delay %v): got %d bytes of %d", logFlushDelay, len(got), want.Len())
		}
		time.Sleep(logFlushDelay)
	}
	_, _ = d.Write([]byte("last\n"))
	d.Close()
	if got, _ := out.snapshot(); !strings.HasSuffix(got, "line 199\nlast\n") {
		t.Errorf("Close did not write the last line: %q", got[max(0, len(got)-40):])
	}
	_, _ = d.Write([]byte("after\n"))
	if got, _ := out.snapshot(); !strings.HasSuffix(got, "last\nafter\n") {
		t.Errorf("a write after Close is not written through")
	}
}

// TestDelayedWriterFlushesWhenFull: past logBufferMax bytes the lines go out at once.
func TestDelayedWriterFlushesWhenFull(t *testing.T) {
	out := &countingWriter{}
	d := newDelayedWriter(out)
	defer d.Close()
	line := strings.Repeat("x", 1023) + "\n"
	for range logBufferMax / len(line) {
		_, _ = d.Write([]byte(line))
	}
	if got, writes := out.snapshot(); writes != 1 || len(got) != logBufferMax {
		t.Errorf("after %d bytes: %d writes of %d bytes in all, want one write of all of it at once", logBufferMax, writes, len(got))
	}
}
