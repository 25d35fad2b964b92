package mediamtx

import (
	"sync"
	"time"
)

// Meter turns MediaMTX's byte counters into bit rates: the rate between the last two
// readings of a path, or the average since the stream became available when there is
// no recent earlier reading. It is safe for concurrent use.
type Meter struct {
	mu   sync.Mutex
	last map[string]reading
}

type reading struct {
	bytes uint64
	at    time.Time
	since time.Time // the stream's availableTime: a new stream starts a new count
}

// meterWindow bounds which earlier reading still counts: older ones say little about now.
const meterWindow = time.Minute

// Rate records p's inbound bytes at now and returns the inbound bit rate in bits per
// second; 0 when p is not available.
func (mt *Meter) Rate(p Path, now time.Time) int64 {
	if !p.Available || p.AvailableTime == nil {
		return 0
	}
	mt.mu.Lock()
	defer mt.mu.Unlock()
	if mt.last == nil {
		mt.last = map[string]reading{}
	}
	for name, r := range mt.last {
		if now.Sub(r.at) > meterWindow {
			delete(mt.last, name)
		}
	}
	cur := reading{bytes: p.InboundBytes, at: now, since: *p.AvailableTime}
	prev, ok := mt.last[p.Name]
	same := ok && prev.since.Equal(cur.since) && cur.bytes >= prev.bytes
	if same && now.Sub(prev.at) >= time.Second {
		mt.last[p.Name] = cur
		return int64(float64(cur.bytes-prev.bytes) * 8 / now.Sub(prev.at).Seconds())
	}
	if !same {
		mt.last[p.Name] = cur // a new stream, or the first reading
	}
	d := now.Sub(cur.since).Seconds()
	if d < 1 {
		return 0
	}
	return int64(float64(cur.bytes) * 8 / d)
}
