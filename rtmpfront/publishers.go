package rtmpfront

import (
	"sync"
	"time"
)

// Publishers is the set of publishes the front has let through, with who made them: a
// kick (a ban, a revoke, a reset, a password change) closes their connections at the front
// itself, beside MediaMTX's API kick, so a publisher is cut even when MediaMTX's API does
// not answer. One set may serve several fronts (RTMP and RTMPS).
type Publishers struct {
	mu  sync.Mutex
	set map[*heldPublish]struct{}
}

type heldPublish struct {
	name, keyFP string
	admitted    time.Time
	close       func()
}

// NewPublishers returns an empty set.
func NewPublishers() *Publishers {
	return &Publishers{set: make(map[*heldPublish]struct{})}
}

// add holds a publish of name with the key keyFP ("" without a key) until the returned
// func is called; closeConn ends its connection.
func (ps *Publishers) add(name, keyFP string, closeConn func()) (remove func()) {
	if ps == nil {
		return func() {}
	}
	h := &heldPublish{name: name, keyFP: keyFP, admitted: time.Now(), close: closeConn}
	ps.mu.Lock()
	ps.set[h] = struct{}{}
	ps.mu.Unlock()
	return func() {
		ps.mu.Lock()
		delete(ps.set, h)
		ps.mu.Unlock()
	}
}

// Disconnect closes the front's connections of publishes of name admitted before before,
// and returns how many it closed: only those made with the key keyFP when keyFP is set (a
// revoked key), every one of the name otherwise (a ban, a removed name, a changed
// password, an operator's kick). A publish admitted since (an encoder back with a new
// password, say) and a publish with another key are left alone.
func (ps *Publishers) Disconnect(name, keyFP string, before time.Time) int {
	if ps == nil {
		return 0
	}
	var hit []*heldPublish
	ps.mu.Lock()
	for h := range ps.set {
		if h.name == name && (keyFP == "" || h.keyFP == keyFP) && h.admitted.Before(before) {
			hit = append(hit, h)
			delete(ps.set, h)
		}
	}
	ps.mu.Unlock()
	for _, h := range hit {
		h.close()
	}
	return len(hit)
}

// Len returns how many publishes the set holds.
func (ps *Publishers) Len() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.set)
}
