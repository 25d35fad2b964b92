package mediamtx_test

import (
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/mediamtx"
)

func TestMeterRate(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)
	start := t0.Add(-10 * time.Second)
	p := func(bytes uint64, since time.Time) mediamtx.Path {
		return mediamtx.Path{Name: "live/benw", Available: true, AvailableTime: &since, InboundBytes: bytes}
	}
	var m mediamtx.Meter
	// First reading: the average since the stream became available (10 s, 1.25 MB).
	if got := m.Rate(p(1_250_000, start), t0); got != 1_000_000 {
		t.Errorf("first reading = %d b/s, want the average 1000000", got)
	}
	// Two seconds later, 1 MB more: 4 Mb/s now, whatever the average.
	if got := m.Rate(p(2_250_000, start), t0.Add(2*time.Second)); got != 4_000_000 {
		t.Errorf("second reading = %d b/s, want 4000000 from the last reading", got)
	}
	// A new stream on the name (another availableTime): its own average again.
	restart := t0.Add(time.Second)
	if got := m.Rate(p(500_000, restart), t0.Add(5*time.Second)); got != 1_000_000 {
		t.Errorf("after a restart = %d b/s, want the new stream's average 1000000", got)
	}
	if got := m.Rate(mediamtx.Path{Name: "live/benw"}, t0); got != 0 {
		t.Errorf("not available = %d, want 0", got)
	}
}
