package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/mediamtx"
	"github.com/stagedoor/stagedoor/policy"
)

// Ejection records one publisher disconnected because its credential no longer allows it.
type Ejection struct {
	Name       string // the public name the stream played under
	User       string
	KeyFP      string
	SourceType string
	Reason     string
}

type liveTarget struct {
	live    stagedoor.LiveState
	keyPath string // "" for direct ingest on the public name
	fp      string
}

// Reconcile makes live state and aliases match MediaMTX: every available key path of a
// known, active key is live and aliased to its owner's name; every public name MediaMTX
// carries directly (user/password or ?key= ingest) is live; every other alias is removed
// and every other name marked offline. It repairs missed hooks and crashes of either
// process. A MediaMTX that cannot be asked changes nothing.
//
// Hooks run meanwhile: the plan below is computed without a lock, and each name's change
// is applied under that name's lock, skipped if a hook changed the name since start
// (see nameLocks).
func (m *Manager) Reconcile(ctx context.Context) error {
	m.reconciling.Lock()
	defer m.reconciling.Unlock()
	if err := m.takeKicks(ctx); err != nil {
		m.logger.Warn("reconcile: reading kick requests failed; retried at the next reconcile", "err", err)
	}
	start := m.names.now() // before the listings: see apply
	defer m.names.forget(start)

	listed := time.Now() // a publisher in the listing started before this
	paths, err := m.api.Paths(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: list paths: %w", err)
	}
	confs, err := m.api.PathConfigs(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: list path configs: %w", err)
	}
	current, err := m.store.LiveStates(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	existing := make(map[string]string) // public name -> source of our alias entry (relay or peer)
	for _, c := range confs {
		if kind, name := stagedoor.ParsePath(c.Name); kind == stagedoor.PathPublic && (m.relay.isOurs(c.Source) || isPeerSource(c.Source)) {
			existing[name] = c.Source
		}
	}

	want := make(map[string]liveTarget)
	// Direct ingest on public names first: an alias must never replace it (adding the
	// exact-name entry would recreate the path and drop that publisher).
	for _, p := range paths {
		kind, name := stagedoor.ParsePath(p.Name)
		if kind != stagedoor.PathPublic || !p.Available || p.Source == nil || p.Source.ID == "" || p.Source.Type == aliasSourceType {
			continue // an alias's pull (one a hook or MakeRoom removed since the listing) is no publisher
		}
		if _, ours := existing[name]; ours {
			continue
		}
		// What admitted this publisher: as the policy remembers it, else as a hook or an
		// earlier reconcile (perhaps before a restart) stored it with this source.
		var adm policy.Admission
		if a, ok := m.policy.Admitted(p.Source.ID); ok {
			adm = a
		} else if l, ok := liveOf(current, name); ok && l.SourceID == p.Source.ID {
			adm = policy.Admission{KeyDigest: l.KeyDigest, PasswordDigest: l.PasswordDigest}
		}
		v, err := m.policy.StillAllowed(ctx, policy.Running{Path: p.Name, KeyDigest: adm.KeyDigest, PasswordDigest: adm.PasswordDigest})
		if err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		if !v.Allow {
			_ = m.eject(ctx, p.Source, Ejection{Name: name, User: v.User, KeyFP: v.KeyFP, Reason: v.Reason}, listed)
			continue
		}
		want[name] = liveTarget{live: stagedoor.LiveState{Name: name, UserID: v.UserID, UserName: v.User,
			KeyDigest: adm.KeyDigest, PasswordDigest: adm.PasswordDigest, SourceID: p.Source.ID, SourceType: p.Source.Type}}
	}
	for _, p := range paths {
		if kind, _ := stagedoor.ParsePath(p.Name); kind != stagedoor.PathKey || !p.Available || p.Source == nil || p.Source.ID == "" {
			continue
		}
		v, err := m.policy.StillAllowed(ctx, policy.Running{Path: p.Name})
		if err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		if !v.Allow {
			name := ""
			if v.Reason == policy.ReasonBanned {
				name = v.User
			}
			_ = m.eject(ctx, p.Source, Ejection{Name: name, User: v.User, KeyFP: v.KeyFP, Reason: v.Reason}, listed)
			continue
		}
		// A key path plays under its owner's name.
		if prev, ok := want[v.User]; ok && (prev.keyPath == "" || !isCurrent(current, v.User, m.NodeID, p.Source.ID)) {
			continue // direct ingest holds the name, or another key of this user is current
		}
		want[v.User] = liveTarget{
			live: stagedoor.LiveState{Name: v.User, UserID: v.UserID, UserName: v.User,
				KeyID: v.KeyID, SourceID: p.Source.ID, SourceType: p.Source.Type},
			keyPath: p.Name, fp: v.KeyFP,
		}
	}

	peers, peersKnown := m.peerTargets(ctx, current, want, paths, existing)

	var errs []error
	// apply runs one name's change under the name's lock, unless a hook changed the name
	// after start: this reconcile's view of it may predate the hook, and the reconcile
	// the hook asked for will see the name as it is now.
	apply := func(name string, change func() error) {
		unlock, err := m.names.lock(ctx, name)
		if err != nil {
			errs = append(errs, err)
			return
		}
		defer unlock(false)
		if m.names.changedSince(name, start) {
			m.logger.Debug("reconcile: name changed by a hook meanwhile; left to the next reconcile", "name", name)
			return
		}
		if err := change(); err != nil {
			errs = append(errs, err)
		}
	}
	for name, t := range want {
		apply(name, func() error {
			if t.keyPath == "" {
				// Also when only the admission differs (a live state written without
				// it): the stored one is what a restarted service checks against.
				if !isRecorded(current, t.live, m.NodeID) {
					if err := m.setLive(ctx, t.live, publicKind(t.live), false); err != nil {
						return m.ejectHeld(ctx, t, err, listed)
					}
					m.logger.Info("reconcile: live", "name", name)
				}
				return nil
			}
			if existing[name] == m.relay.sourceURL(t.keyPath) && isCurrent(current, name, m.NodeID, t.live.SourceID) {
				return nil
			}
			if err := m.goLiveAliased(ctx, t.live, t.keyPath, false); err != nil {
				return m.ejectHeld(ctx, t, err, listed)
			}
			m.logger.Info("reconcile: live and aliased", "name", name, "key_fp", t.fp)
			return nil
		})
	}
	for name, t := range peers {
		if existing[name] == t.source {
			continue
		}
		apply(name, func() error { return m.setPeerAlias(ctx, name, t) })
	}
	for name, src := range existing {
		if t, ok := want[name]; ok && t.keyPath != "" {
			continue
		}
		if _, ok := peers[name]; ok || (!peersKnown && isPeerSource(src)) {
			continue
		}
		apply(name, func() error {
			if err := m.api.DeletePathConfig(ctx, stagedoor.LivePrefix+name); err != nil {
				return fmt.Errorf("remove alias of %s: %w", name, err)
			}
			m.logger.Info("reconcile: alias removed", "name", name)
			return nil
		})
	}
	if peersKnown {
		// Every name with a peer alias now, or soon: this run's targets, and the peer
		// aliases MediaMTX had that this run may not have removed.
		names := make(map[string]bool, len(peers))
		for name := range peers {
			names[name] = true
		}
		for name, src := range existing {
			if isPeerSource(src) {
				names[name] = true
			}
		}
		m.holds.setAliases(names)
	}
	for _, l := range current {
		if _, ok := want[l.Name]; ok || l.NodeID != m.NodeID {
			continue // wanted, or another node's: its own reconciler answers for it
		}
		apply(l.Name, func() error {
			if _, err := m.store.SetOffline(ctx, l.Name, m.NodeID, ""); err != nil {
				return err
			}
			m.logger.Info("reconcile: offline", "name", l.Name)
			return nil
		})
	}
	return errors.Join(errs...)
}

// ejectHeld kicks this node's publisher of t when err says another live node keeps its
// name (a reconcile never takes a name over); any other err is returned.
func (m *Manager) ejectHeld(ctx context.Context, t liveTarget, err error, seen time.Time) error {
	held, ok := errors.AsType[*heldElsewhere](err)
	if !ok {
		return err
	}
	m.holds.release(t.live.Name) // the local publish lost: serve the name from its holder
	src := &mediamtx.PathSource{Type: t.live.SourceType, ID: t.live.SourceID}
	return m.eject(ctx, src, Ejection{Name: t.live.Name, User: t.live.UserName, KeyFP: t.fp, Reason: held.reason()}, seen)
}

// eject disconnects a publisher whose credential no longer allows it (or that an
// operator kicks), seen live at seen. Failures are logged and returned; the next
// reconcile tries again. At the RTMP front only publishes admitted before seen are
// closed: an encoder that reconnected since (with the new password, say) is not the one
// being ejected.
func (m *Manager) eject(ctx context.Context, src *mediamtx.PathSource, k Ejection, seen time.Time) error {
	k.SourceType = src.Type
	closed := 0
	if src.Type == "rtmpConn" && m.Disconnect != nil {
		closed = m.Disconnect(k.Name, k.KeyFP, seen)
	}
	if err := m.api.Kick(ctx, src.Type, src.ID); err != nil {
		if closed == 0 {
			m.logger.Warn("kick failed", "name", k.Name, "user", k.User, "key_fp", k.KeyFP, "reason", k.Reason, "err", err)
			return err
		}
		// The front cut the publisher; MediaMTX ends its side when the front's closes.
		m.logger.Warn("kick through MediaMTX's API failed; the RTMP front closed the publisher", "name", k.Name,
			"user", k.User, "key_fp", k.KeyFP, "err", err)
	}
	m.logger.Info("kicked", "name", k.Name, "user", k.User, "key_fp", k.KeyFP, "source_type", k.SourceType, "reason", k.Reason)
	if m.OnEject != nil {
		m.OnEject(k)
	}
	return nil
}

func liveOf(live []stagedoor.LiveState, name string) (stagedoor.LiveState, bool) {
	for _, l := range live {
		if l.Name == name {
			return l, true
		}
	}
	return stagedoor.LiveState{}, false
}

// isRecorded reports whether live holds l's name on l's source with l's admission.
func isRecorded(live []stagedoor.LiveState, l stagedoor.LiveState, node string) bool {
	c, ok := liveOf(live, l.Name)
	return ok && c.NodeID == node && c.SourceID == l.SourceID && sameDigest(c.KeyDigest, l.KeyDigest) && sameDigest(c.PasswordDigest, l.PasswordDigest)
}

func sameDigest(a, b *stagedoor.Digest) bool {
	return a == b || (a != nil && b != nil && *a == *b)
}

func isCurrent(live []stagedoor.LiveState, name, node, sourceID string) bool {
	for _, l := range live {
		if l.Name == name {
			return l.NodeID == node && l.SourceID == sourceID
		}
	}
	return false
}

// ReasonOperatorKick is the reason of a kick an operator asked for (Manager.Kick).
const ReasonOperatorKick = "kicked by an operator"

// Kick disconnects the publisher live on the public name now (for a key path, the key
// path's publisher) and reports whether one was live. It is every other kick's path
// (eject: the RTMP front's connection, MediaMTX's kick endpoint, OnEject); a reconcile
// follows at once. A name live on another node is kicked by that node (RequestKick):
// its source id is that node's MediaMTX's, which this node's does not know (and a kick of
// it here could hit an unrelated session that happens to carry the same id).
func (m *Manager) Kick(ctx context.Context, name string) (bool, error) {
	seen := time.Now()
	states, err := m.store.LiveStates(ctx)
	if err != nil {
		return false, err
	}
	l, ok := liveOf(states, name)
	if ok && l.NodeID != m.NodeID {
		return RequestKick(ctx, m.store, m.NodeID, l)
	}
	if !ok || l.SourceID == "" {
		return false, nil
	}
	defer m.ReconcileSoon()
	src := &mediamtx.PathSource{Type: l.SourceType, ID: l.SourceID}
	if err := m.eject(ctx, src, Ejection{Name: name, User: l.UserName, Reason: ReasonOperatorKick}, seen); err != nil {
		return false, err
	}
	return true, nil
}

// KickRequester is where kick requests go: the database every node shares.
type KickRequester interface {
	RequestKick(ctx context.Context, r stagedoor.KickRequest) error
}

// RequestKick has the node holding l kick its publisher (an operator's kick asked on
// service self, which does not carry the stream): the request moves the policy
// generation, so the holder reconciles at once, takes it and kicks if it still carries
// l's source. It reports true: the name was live.
func RequestKick(ctx context.Context, st KickRequester, self string, l stagedoor.LiveState) (bool, error) {
	if err := st.RequestKick(ctx, stagedoor.KickRequest{Name: l.Name, Node: l.NodeID, SourceID: l.SourceID, By: self}); err != nil {
		return false, err
	}
	return true, nil
}

// takeKicks carries out the kicks other services asked of this node (RequestKick): each
// publisher still live here on the source asked about is ejected; a request for a source
// that ended or moved meanwhile does nothing.
func (m *Manager) takeKicks(ctx context.Context) error {
	reqs, err := m.store.TakeKickRequests(ctx, m.NodeID)
	if err != nil || len(reqs) == 0 {
		return err
	}
	states, err := m.store.LiveStates(ctx)
	if err != nil {
		return err
	}
	for _, r := range reqs {
		l, ok := liveOf(states, r.Name)
		if !ok || l.NodeID != m.NodeID || l.SourceID != r.SourceID {
			m.logger.Info("kick request for a stream no longer here; ignored", "name", r.Name, "asked_on", r.By)
			continue
		}
		src := &mediamtx.PathSource{Type: l.SourceType, ID: l.SourceID}
		_ = m.eject(ctx, src, Ejection{Name: r.Name, User: l.UserName, Reason: ReasonOperatorKick + " on node " + r.By}, r.At)
	}
	return nil
}
