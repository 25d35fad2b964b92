package main

import (
	"context"
	"sync"
	"time"

	"github.com/stagedoor/stagedoor"
)

// liveMap is which public names other live nodes of a cluster hold, for the auth path's
// first-wins check (policy.HeldElsewhere), which must never wait on the database. It is
// refreshed from the database at start, on the database's live and nodes notifications
// (PostgreSQL) and every reconcile interval; a holder whose lease has run out since counts
// as gone. On one node it only ever holds nothing.
type liveMap struct {
	self string
	mu   sync.RWMutex
	held map[string]heldBy
}

type heldBy struct {
	node  string
	until time.Time // the node's lease
}

// HeldElsewhere reports the live node other than this one that holds name, if any.
func (l *liveMap) HeldElsewhere(name string) (string, bool) {
	l.mu.RLock()
	h, ok := l.held[name]
	l.mu.RUnlock()
	if !ok || !time.Now().Before(h.until) {
		return "", false
	}
	return h.node, true
}

// liveSource is what the map reads.
type liveSource interface {
	LiveStates(ctx context.Context) ([]stagedoor.LiveState, error)
	Nodes(ctx context.Context) ([]stagedoor.Node, error)
}

// refresh reads the live names and the nodes' leases again.
func (l *liveMap) refresh(ctx context.Context, db liveSource) error {
	nodes, err := db.Nodes(ctx)
	if err != nil {
		return err
	}
	states, err := db.LiveStates(ctx)
	if err != nil {
		return err
	}
	lease := make(map[string]time.Time, len(nodes))
	for _, n := range nodes {
		lease[n.ID] = n.LeaseUntil
	}
	held := make(map[string]heldBy)
	for _, s := range states {
		if s.NodeID != l.self {
			held[s.Name] = heldBy{node: s.NodeID, until: lease[s.NodeID]}
		}
	}
	l.mu.Lock()
	l.held = held
	l.mu.Unlock()
	return nil
}
