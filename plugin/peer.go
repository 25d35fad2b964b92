package plugin

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/mediamtx"
)

// PeerUser is the user name of the cluster credential: a node pulls live/<name> from the
// node that holds it as rtsp://stagedoor-peer:<secret>@<holder>/live/<name>.
const PeerUser = "stagedoor-peer"

// Peer says how this node's MediaMTX pulls the public names other nodes of a cluster
// hold, so that a viewer may play any live name on any node: a peer alias is a runtime
// path entry live/<name> whose on-demand source is the holder's public path, over RTSP
// with the secret every node shares (cluster.md §5). It pulls the public path, so a
// stream key never leaves the node that ingests it. An empty Password: no peer aliases.
type Peer struct {
	Password string
}

func (p Peer) sourceURL(holderRTSP, name string) string {
	u := url.URL{Scheme: "rtsp", User: url.UserPassword(PeerUser, p.Password), Host: holderRTSP,
		Path: "/" + stagedoor.LivePrefix + name}
	return u.String()
}

// isPeerSource reports whether a configured source is a peer alias (with any secret, so
// that the aliases of an earlier run are recognised and replaced).
func isPeerSource(source string) bool {
	u, err := url.Parse(source)
	return err == nil && u.Scheme == "rtsp" && u.User != nil && u.User.Username() == PeerUser
}

// peerTarget is a peer alias this node should carry.
type peerTarget struct {
	source string
	holder string
}

// peerHold is how long MakeRoom keeps the reconcile from putting a peer alias back on a
// name this node is taking over: MediaMTX adds the publisher to the path only once it has
// analysed the tracks (2 s for RTMP), and a peer alias set meanwhile would refuse it.
const peerHold = 15 * time.Second

// peerHolds are the names MakeRoom cleared for a local publish, until when, and the names
// this node carries a peer alias of. One mutex orders MakeRoom against the reconcile
// setting a peer alias: either the hold comes first and no alias is set (claim), or the
// alias is marked first and MakeRoom removes it (hold reports it).
type peerHolds struct {
	mu    sync.Mutex
	until map[string]time.Time
	// aliases are the names with a peer alias, or about to have one; known is false until
	// the first reconcile has listed MediaMTX's (an earlier run may have left some).
	aliases map[string]bool
	known   bool
}

// heldLocked reports whether name is held at now, forgetting a hold that ran out.
func (h *peerHolds) heldLocked(name string, now time.Time) bool {
	t, ok := h.until[name]
	if ok && !now.Before(t) {
		delete(h.until, name)
		return false
	}
	return ok
}

func (h *peerHolds) held(name string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.heldLocked(name, now)
}

// hold marks name as being taken over here and reports whether it may carry a peer alias.
func (h *peerHolds) hold(name string, until time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.until == nil {
		h.until = make(map[string]time.Time)
	}
	if len(h.until) >= 1024 { // names whose hold ran out and no reconcile looked at since
		now := time.Now()
		for n, t := range h.until {
			if !now.Before(t) {
				delete(h.until, n)
			}
		}
	}
	h.until[name] = until
	return !h.known || h.aliases[name]
}

// claim marks name as carrying a peer alias, unless a local publish holds it.
func (h *peerHolds) claim(name string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.heldLocked(name, now) {
		return false
	}
	if h.aliases == nil {
		h.aliases = make(map[string]bool)
	}
	h.aliases[name] = true
	return true
}

// release ends name's hold: the local publish it made room for got on, or lost its claim.
func (h *peerHolds) release(name string) {
	h.mu.Lock()
	delete(h.until, name)
	h.mu.Unlock()
}

// setAliases records the names a reconcile left with a peer alias (or about to get one).
func (h *peerHolds) setAliases(names map[string]bool) {
	h.mu.Lock()
	for n := range h.aliases {
		if !names[n] {
			delete(h.aliases, n)
		}
	}
	if h.aliases == nil {
		h.aliases = make(map[string]bool)
	}
	for n := range names {
		h.aliases[n] = true
	}
	h.known = true
	h.mu.Unlock()
}

// MakeRoom is told that this node admitted a publish on live/<name>: when this node
// serves the name through a peer alias, the alias must go before MediaMTX looks up the
// path's configuration for the publisher (MediaMTX refuses a publisher on a path whose
// source is not "publisher", and one whose path configuration changed between its auth
// and its first media). The reconcile then leaves the name without a peer alias for a
// while, so that the new publisher can get on: a stream-key publish takes the name over;
// any other is refused at auth while another node holds it (cluster.md §3).
//
// The RTMP front calls it with wait before it forwards the publish, so the publisher gets
// on at once. MediaMTX's auth call comes after MediaMTX looked the configuration up, and
// must not wait on MediaMTX's API: without wait the removal runs in the background, and
// such a publisher (a key as ?key=, password or token over SRT, RTSP or WHIP) gets on at
// its encoder's next attempt.
func (m *Manager) MakeRoom(ctx context.Context, name string, wait bool) {
	if !m.holds.hold(name, time.Now().Add(peerHold)) {
		return
	}
	drop := func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := m.dropPeerAlias(ctx, name); err != nil {
			m.logger.Warn("peer alias not removed for a local publish", "name", name, "err", err)
		}
	}
	if wait {
		drop(ctx)
		return
	}
	go drop(context.WithoutCancel(ctx))
}

// dropPeerAlias removes live/<name>'s entry if it is a peer alias, under the name's lock.
func (m *Manager) dropPeerAlias(ctx context.Context, name string) error {
	unlock, err := m.names.lock(ctx, name)
	if err != nil {
		return err
	}
	defer unlock(true)
	confs, err := m.api.PathConfigs(ctx)
	if err != nil {
		return err
	}
	for _, c := range confs {
		if c.Name == stagedoor.LivePrefix+name && isPeerSource(c.Source) {
			if err := m.api.DeletePathConfig(ctx, c.Name); err != nil {
				return err
			}
			// The publisher must not look up the configuration before MediaMTX applied
			// the removal (the front forwards it as soon as this returns).
			if err := m.api.Applied(ctx); err != nil {
				return err
			}
			m.logger.Info("peer alias removed for a local publish", "name", name)
		}
	}
	return nil
}

// peerTargets are the peer aliases this node should carry: one for every name another
// node with a running lease and an RTSP address holds, unless this node wants the name
// itself (it has a publisher of it: the claim decides), MediaMTX carries a publisher on
// it, or a local publish is taking it over (MakeRoom). ok is false when the nodes could
// not be read: then no peer alias is added or removed.
func (m *Manager) peerTargets(ctx context.Context, current []stagedoor.LiveState, want map[string]liveTarget,
	paths []mediamtx.Path, existing map[string]string) (map[string]peerTarget, bool) {
	if m.Peer.Password == "" {
		return nil, true
	}
	nodes, err := m.store.Nodes(ctx)
	if err != nil {
		m.logger.Warn("reconcile: reading the cluster's nodes failed; peer aliases left as they are", "err", err)
		return nil, false
	}
	now := time.Now()
	addr := make(map[string]string, len(nodes))
	for _, n := range nodes {
		if n.ID != m.NodeID && n.RTSPAddr != "" && now.Before(n.LeaseUntil) {
			addr[n.ID] = n.RTSPAddr
		}
	}
	published := make(map[string]bool) // public names MediaMTX carries a publisher of
	for _, p := range paths {
		if kind, name := stagedoor.ParsePath(p.Name); kind == stagedoor.PathPublic && p.Source != nil && p.Source.Type != aliasSourceType {
			if _, ours := existing[name]; !ours {
				published[name] = true
			}
		}
	}
	out := make(map[string]peerTarget)
	for _, l := range current {
		a, ok := addr[l.NodeID]
		if !ok || l.NodeID == m.NodeID {
			continue
		}
		if _, mine := want[l.Name]; mine || published[l.Name] || m.holds.held(l.Name, now) {
			continue
		}
		out[l.Name] = peerTarget{source: m.Peer.sourceURL(a, l.Name), holder: l.NodeID}
	}
	return out, true
}

// setPeerAlias points live/<name> at the node that holds it, unless a local publish has
// taken the name meanwhile (MakeRoom).
func (m *Manager) setPeerAlias(ctx context.Context, name string, t peerTarget) error {
	if !m.holds.claim(name, time.Now()) {
		return nil
	}
	conf := aliasConfig{Source: t.source, SourceOnDemand: true, RTSPTransport: "tcp"}
	if err := m.api.ReplacePathConfig(ctx, stagedoor.LivePrefix+name, conf); err != nil {
		return fmt.Errorf("set peer alias of %s: %w", name, err)
	}
	m.logger.Info("reconcile: peer alias set", "name", name, "holder", t.holder)
	return nil
}
