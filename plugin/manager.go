package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/mediamtx"
	"github.com/stagedoor/stagedoor/policy"
)

// Standing is the policy's answer to "may this running publish continue" (a ban, a
// revoked key, a changed password or a removed name ends it): policy.Policy.StillAllowed,
// and what admitted a publish session on a public name (policy.Policy.Admitted), which
// the manager keeps in the live state so that the answer survives a restart.
type Standing interface {
	StillAllowed(ctx context.Context, r policy.Running) (policy.Verdict, error)
	// Admitted returns what admitted the publish session id (MediaMTX's auth "id", equal
	// to MTX_SOURCE_ID and to the path's source id), while the policy remembers it.
	Admitted(id string) (policy.Admission, bool)
}

// Store is what the plugin needs from the database.
type Store interface {
	// UserByKeyDigest returns stagedoor.ErrNotFound for an unknown key.
	UserByKeyDigest(ctx context.Context, d stagedoor.Digest) (stagedoor.KeyOwner, error)
	// ChannelByName returns stagedoor.ErrNotFound for a name nobody owns.
	ChannelByName(ctx context.Context, name string) (stagedoor.Channel, error)
	// Claim claims l.Name for l.NodeID (cluster.md §3): with takeover, a stream-key
	// publish takes the name from another node's stream-key publish (newest wins);
	// without, only a dead node's names are taken. Claim.Won false: another live node
	// keeps the name.
	Claim(ctx context.Context, l stagedoor.LiveState, takeover bool) (stagedoor.Claim, error)
	// SetOffline takes name offline if node carries it (on sourceID, or any when "").
	SetOffline(ctx context.Context, name, node, sourceID string) (bool, error)
	LiveStates(ctx context.Context) ([]stagedoor.LiveState, error)
	// RequestKick asks another node to kick a publisher; TakeKickRequests removes and
	// returns the requests naming this node.
	RequestKick(ctx context.Context, r stagedoor.KickRequest) error
	TakeKickRequests(ctx context.Context, node string) ([]stagedoor.KickRequest, error)
	// Nodes lists the cluster's nodes with their leases and RTSP addresses (peer aliases).
	Nodes(ctx context.Context) ([]stagedoor.Node, error)
	TouchKey(ctx context.Context, keyID int64) error
	// PolicyGeneration changes when any credential may have been revoked.
	PolicyGeneration(ctx context.Context) (int64, error)
}

// Manager keeps live state and aliases equal to what MediaMTX carries. Hook events are
// hints: every change is confirmed against MediaMTX's API, and a full reconcile runs
// at start, after events, and on a timer.
type Manager struct {
	logger *slog.Logger
	store  Store
	api    *mediamtx.Client
	relay  Relay
	policy Standing

	// NodeID names this Stagedoor node in the live state it writes; its MediaMTX carries
	// those names, and it takes only its own names offline. Default "local"; the service
	// sets --node-id.
	NodeID string
	// Debounce is how long after an event the confirming reconcile runs. Default 200 ms.
	Debounce time.Duration
	// PolicyPoll is how often the policy generation is read, so that a ban or key
	// revocation made by the CLI in another process kicks within about this long plus
	// Debounce. Default 250 ms.
	PolicyPoll time.Duration
	// KeysFirstWins (--cluster-key-takeover=false): a stream-key publish no longer takes a
	// name over from another live node; the first publish keeps it, as for passwords.
	KeysFirstWins bool
	// OnEject, if set, is told of every kick (audit, metrics). It must not block.
	OnEject func(Ejection)
	// Disconnect, if set, closes an RTMP publisher's connection at Stagedoor's RTMP front
	// (rtmpfront.Publishers.Disconnect: the publishes of name admitted before the time,
	// with the key keyFP when it is set) and returns how many it closed. A kick of an RTMP
	// publisher calls it before MediaMTX's API kick, so the publisher is cut even when that
	// API fails. It must not block.
	Disconnect func(name, keyFP string, before time.Time) int
	// Peer, when its Password is set, makes this node serve the names other nodes of a
	// cluster hold, through peer aliases (peer.go).
	Peer Peer
	// OnPolicyChange, if set, is called when the policy generation changes, before the
	// enforcing reconcile (the auth cache is dropped there).
	OnPolicyChange func()

	// Locking. A hook never waits for a reconcile to finish: Reconcile lists MediaMTX and
	// the store and computes its plan without holding any lock a hook takes, then applies
	// each name's change under that name's lock, and only if no hook changed the name
	// since the reconcile began (see nameLocks). reconciling keeps reconciles apart.
	reconciling sync.Mutex
	names       nameLocks
	holds       peerHolds
	trigger     chan struct{}
}

// nameLocks serialises the changes to one public name (its live state and its alias)
// between hooks and the reconciler, and remembers when a hook last changed each name.
//
// Why this is enough: a hook confirms its event with MediaMTX and applies it while it
// holds the name's lock, so it acts on the present. A reconcile acts on the state it
// listed, which may be older than a hook that ran meanwhile (an available hook for a
// stream the listing missed, an unavailable hook for one it saw); applying that stale
// view would undo the hook (remove its alias, mark its stream offline, or re-add the
// alias of a stream that ended). So the reconcile takes a sequence number before it
// lists (start), every hook stamps its name with a newer one when it releases the lock,
// and the reconcile leaves a name alone whose stamp is newer than start: everything it
// knows of that name may predate the hook. A hook that finished before start is in the
// listing, since all its calls returned before the listing began. Nothing is lost by
// skipping: every hook asks for a reconcile after it released the lock, and that one
// starts after the stamp. Two changes to one name never overlap, so their MediaMTX calls
// cannot reach MediaMTX in the other order. Changes to different names are independent.
type nameLocks struct {
	mu      sync.Mutex
	locks   map[string]*nameLock
	seq     uint64
	touched map[string]uint64 // name -> seq when a hook last released it
}

type nameLock struct {
	sem  chan struct{} // one slot: held while a change to the name runs
	refs int           // holders and waiters; the entry goes when it drops to 0
}

// now returns the current sequence number; a name stamped later was changed by a hook
// that finished after this call.
func (l *nameLocks) now() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// lock waits for name's lock, or for ctx to end. unlock releases it; unlock(true)
// (hooks) stamps the name as changed now.
func (l *nameLocks) lock(ctx context.Context, name string) (unlock func(touched bool), err error) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks, l.touched = make(map[string]*nameLock), make(map[string]uint64)
	}
	nl := l.locks[name]
	if nl == nil {
		nl = &nameLock{sem: make(chan struct{}, 1)}
		l.locks[name] = nl
	}
	nl.refs++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		if nl.refs--; nl.refs == 0 {
			delete(l.locks, name)
		}
		l.mu.Unlock()
	}
	select {
	case nl.sem <- struct{}{}:
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
	return func(touched bool) {
		if touched {
			l.mu.Lock()
			l.seq++
			l.touched[name] = l.seq
			l.mu.Unlock()
		}
		<-nl.sem
		release()
	}, nil
}

// changedSince reports whether a hook changed name after start. Ask it holding the lock.
func (l *nameLocks) changedSince(name string, start uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.touched[name] > start
}

// forget drops the stamps no reconcile starting at start or later needs (only call it
// while no reconcile that started earlier runs).
func (l *nameLocks) forget(start uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, seq := range l.touched {
		if seq <= start {
			delete(l.touched, name)
		}
	}
}

// NewManager returns a Manager; call Run to start its reconcile loop.
func NewManager(logger *slog.Logger, st Store, api *mediamtx.Client, relay Relay, pol Standing) *Manager {
	return &Manager{
		logger:     logger.With("component", "plugin"),
		store:      st,
		api:        api,
		relay:      relay,
		policy:     pol,
		NodeID:     "local",
		Debounce:   200 * time.Millisecond,
		PolicyPoll: 250 * time.Millisecond,
		trigger:    make(chan struct{}, 1),
	}
}

// HandleEvent applies one hook event. available: confirmed with paths/get (the source
// must be available with the event's source id), then the name goes live (and, for a key
// path, the alias is set). unavailable: only the source the name is live on can take it
// offline, so an old source's late event never takes down a newer stream. Unknown keys
// and names are ignored. Every event also schedules a full reconcile (after the name's
// lock is released: see nameLocks). It never waits for a reconcile to finish.
func (m *Manager) HandleEvent(ctx context.Context, ev Event) error {
	defer m.ReconcileSoon()
	kind, rest := stagedoor.ParsePath(ev.Path)
	log := m.logger.With("event", ev.Kind, "source_type", ev.SourceType)
	if ev.SourceID == "" {
		log.Warn("hook event without source id ignored")
		return nil
	}
	var (
		live stagedoor.LiveState
		fp   string
	)
	switch kind {
	case stagedoor.PathKey:
		dg := stagedoor.KeyDigest(rest)
		fp = dg.Fingerprint()
		owner, err := m.store.UserByKeyDigest(ctx, dg)
		if errors.Is(err, stagedoor.ErrNotFound) {
			log.Warn("hook event for unknown key ignored", "key_fp", fp)
			return nil
		}
		if err != nil {
			return err
		}
		if !owner.Active && ev.Kind == EventAvailable {
			log.Info("banned user's stream not aliased", "user", owner.UserName, "key_fp", fp)
			return nil
		}
		live = stagedoor.LiveState{Name: owner.UserName, UserID: owner.UserID, UserName: owner.UserName, KeyID: owner.KeyID}
	case stagedoor.PathPublic:
		ch, err := m.store.ChannelByName(ctx, rest)
		if errors.Is(err, stagedoor.ErrNotFound) {
			log.Warn("hook event for unknown name ignored", "name", rest)
			return nil
		}
		if err != nil {
			return err
		}
		live = stagedoor.LiveState{Name: ch.Name, UserID: ch.UserID, UserName: ch.UserName}
		// What the policy saw admit this session (the key as ?key=, password or token, or a
		// password) is authoritative; the hook's ?key= digest is what is left when the
		// policy no longer remembers it (restarted, or the entry expired).
		if adm, ok := m.policy.Admitted(ev.SourceID); ok {
			live.KeyDigest, live.PasswordDigest = adm.KeyDigest, adm.PasswordDigest
		} else if d, ok := ev.keyDigest(); ok {
			live.KeyDigest = &d
		}
		if live.KeyDigest != nil {
			// A key publish the RTMP front renamed at ingest is logged with its key, as on
			// the key path.
			fp = live.KeyDigest.Fingerprint()
		}
	default:
		return nil
	}
	log = log.With("name", live.Name, "key_fp", fp)

	// Only this name's lock: a reconcile in progress never holds it for longer than one
	// change to this name (see nameLocks).
	unlock, err := m.names.lock(ctx, live.Name)
	if err != nil {
		return err
	}
	defer unlock(true)
	switch ev.Kind {
	case EventAvailable:
		p, err := m.api.PathByName(ctx, ev.Path)
		if err != nil && !errors.Is(err, mediamtx.ErrNotFound) {
			return fmt.Errorf("confirm available: %w", err)
		}
		if err != nil || !p.Available || p.Source == nil || p.Source.ID != ev.SourceID {
			log.Info("available event not confirmed by mediamtx; ignored")
			return nil
		}
		live.SourceID, live.SourceType = p.Source.ID, p.Source.Type
		if kind == stagedoor.PathKey && m.heldByDirectIngest(ctx, live.Name) {
			log.Info("name is live through direct ingest; alias not set")
			return nil
		}
		if kind == stagedoor.PathKey {
			err = m.goLiveAliased(ctx, live, ev.Path, !m.KeysFirstWins)
		} else {
			err = m.setLive(ctx, live, publicKind(live), !m.KeysFirstWins)
		}
		if held, ok := errors.AsType[*heldElsewhere](err); ok {
			// One live session per public name, cluster-wide: this node's publisher goes,
			// and the name is served from its holder again.
			m.holds.release(live.Name)
			_ = m.eject(ctx, p.Source, Ejection{Name: live.Name, User: live.UserName, KeyFP: fp, Reason: held.reason()}, time.Now())
			return nil
		}
		if err != nil {
			return err
		}
		if kind == stagedoor.PathPublic && live.KeyDigest != nil {
			m.touchKey(ctx, *live.KeyDigest, log)
		}
		log.Info("live")
	case EventUnavailable:
		changed, err := m.store.SetOffline(ctx, live.Name, m.NodeID, ev.SourceID)
		if err != nil {
			return err
		}
		if !changed {
			log.Info("unavailable event for a source that is not current; ignored")
			return nil
		}
		if kind == stagedoor.PathKey {
			if err := m.api.DeletePathConfig(ctx, stagedoor.LivePrefix+live.Name); err != nil {
				return fmt.Errorf("remove alias of %s: %w", live.Name, err)
			}
		}
		log.Info("offline")
	}
	return nil
}

// touchKey records that the key with digest d went live on a public name (the RTMP
// front's renamed publishes, ?key=, the key as password or token), as a key path's alias
// does. A failure only leaves "last used" behind: it is logged, the stream stays live.
func (m *Manager) touchKey(ctx context.Context, d stagedoor.Digest, log *slog.Logger) {
	o, err := m.store.UserByKeyDigest(ctx, d)
	if err == nil {
		err = m.store.TouchKey(ctx, o.KeyID)
	}
	if err != nil && !errors.Is(err, stagedoor.ErrNotFound) {
		log.Warn("key's last use not recorded", "err", err)
	}
}

// ReconcileSoon asks the reconcile loop to run soon; it never blocks.
func (m *Manager) ReconcileSoon() {
	select {
	case m.trigger <- struct{}{}:
	default:
	}
}

// checkAPIClosed logs an error when MediaMTX's API answers without credentials.
func (m *Manager) checkAPIClosed(ctx context.Context) {
	if open, err := m.api.OpenToAnonymous(ctx); err == nil && open {
		m.logger.Error("MediaMTX's API answers without credentials, so anyone who reaches it reads every key path: set `authHTTPExclude: []` in mediamtx.yml")
	}
}

// Run reconciles at once, then after every ReconcileSoon (debounced), whenever the policy
// generation changes, and every interval, until ctx ends. Errors are logged, not fatal:
// MediaMTX may be restarting.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	failing, checked := false, false
	gen, _ := m.store.PolicyGeneration(ctx)
	poll := time.NewTicker(m.PolicyPoll)
	defer poll.Stop()
	for {
		wait := interval
		if err := m.Reconcile(ctx); err != nil && ctx.Err() == nil {
			if !failing {
				m.logger.Warn("reconcile failed; retrying every second", "err", err)
			}
			failing, wait = true, min(time.Second, interval)
		} else if err == nil && (failing || !checked) {
			if failing {
				m.logger.Info("reconcile recovered")
			}
			failing, checked = false, true
			m.checkAPIClosed(ctx) // MediaMTX is (back) up, perhaps with another config
		}
		next := time.NewTimer(wait)
	idle:
		for {
			select {
			case <-ctx.Done():
				next.Stop()
				return
			case <-next.C:
				break idle
			case <-poll.C:
				g, err := m.store.PolicyGeneration(ctx)
				if err != nil || g == gen {
					continue
				}
				gen = g
				if m.OnPolicyChange != nil {
					m.OnPolicyChange()
				}
				next.Stop()
				break idle // a credential may have been revoked: enforce now
			case <-m.trigger:
				next.Stop()
				select {
				case <-ctx.Done():
					return
				case <-time.After(m.Debounce):
				}
				break idle
			}
		}
	}
}
