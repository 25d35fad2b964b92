package policy

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/stagedoor/stagedoor"
)

// CachedCredentials answers the auth path's lookups from memory: MediaMTX waits for every
// answer, one at a time, and a SQLite read costs more than everything else on the path.
// Found and not-found answers are kept until Invalidate, which the service calls when the
// policy generation changes (any ban, password, key or stream change, from this process
// or the CLI: the CLI notifies the running service before it exits, and the service also
// polls the generation every 250 ms). Lookup errors are never cached.
//
// A question not in the cache is asked of the source once, however many requests ask it
// at the same time: they wait for that one lookup. Every Invalidate empties the cache,
// so the first burst after any change (a raid of publishes with a few keys, each asked
// by many connections at once) would otherwise send one SQLite read per request; on a
// busy machine those queue for the connection pool and the CPU until the decision's
// deadline passes and valid keys are refused with 503. The shared lookup runs on its own
// deadline (lookupTimeout), not on the first asker's, so that when that asker gives up
// the answer still lands in the cache for everyone after it.
type CachedCredentials struct {
	src Credentials

	mu      sync.RWMutex
	gen     uint64
	keys    table[stagedoor.Digest, stagedoor.KeyOwner]
	streams table[string, stagedoor.Stream]
}

// table is the cache of one kind of question: answers, and lookups in flight.
type table[K comparable, V any] struct {
	answers  map[K]answer[V]
	inflight map[K]*flight[V]
}

type answer[V any] struct {
	v   V
	err error // nil or stagedoor.ErrNotFound
}

// flight is one source lookup that every asker of the same question waits for.
type flight[V any] struct {
	done chan struct{}
	v    V
	err  error
}

// maxCached bounds each map (unknown keys are cached too); beyond it the map restarts.
const maxCached = 100_000

// lookupTimeout bounds a shared source lookup. It is MediaMTX's default readTimeout: no
// asker waits longer than that anyway.
const lookupTimeout = 10 * time.Second

// NewCachedCredentials wraps src.
func NewCachedCredentials(src Credentials) *CachedCredentials {
	c := &CachedCredentials{src: src}
	c.Invalidate()
	return c
}

// Invalidate forgets every cached answer. Lookups in flight finish for those already
// waiting, but their answers are not kept, and a question asked after Invalidate starts
// a new lookup.
func (c *CachedCredentials) Invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.keys.reset()
	c.streams.reset()
}

func (t *table[K, V]) reset() {
	t.answers = make(map[K]answer[V])
	t.inflight = make(map[K]*flight[V])
}

// UserByKeyDigest implements Credentials.
func (c *CachedCredentials) UserByKeyDigest(ctx context.Context, d stagedoor.Digest) (stagedoor.KeyOwner, error) {
	return cached(ctx, c, &c.keys, d, func(ctx context.Context) (stagedoor.KeyOwner, error) {
		return c.src.UserByKeyDigest(ctx, d)
	})
}

// StreamByName implements Credentials.
func (c *CachedCredentials) StreamByName(ctx context.Context, name string) (stagedoor.Stream, error) {
	return cached(ctx, c, &c.streams, name, func(ctx context.Context) (stagedoor.Stream, error) {
		return c.src.StreamByName(ctx, name)
	})
}

// cached answers k from t, or waits (at most until ctx ends) for the one source lookup
// of k, starting it if nobody has.
func cached[K comparable, V any](ctx context.Context, c *CachedCredentials, t *table[K, V], k K,
	lookup func(context.Context) (V, error)) (V, error) {
	c.mu.RLock()
	a, ok := t.answers[k]
	c.mu.RUnlock()
	if ok {
		return a.v, a.err
	}
	c.mu.Lock()
	if a, ok := t.answers[k]; ok {
		c.mu.Unlock()
		return a.v, a.err
	}
	f := t.inflight[k]
	if f == nil {
		f = &flight[V]{done: make(chan struct{})}
		t.inflight[k] = f
		go fly(c, t, k, f, c.gen, lookup)
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.v, f.err
	case <-ctx.Done():
		select {
		case <-f.done: // both ready (a starved goroutine wakes late): the answer is better
			return f.v, f.err
		default:
		}
		var zero V
		return zero, ctx.Err()
	}
}

// fly runs the lookup of f and keeps its answer unless the cache was invalidated since
// it started (the lookup may have read the old state).
func fly[K comparable, V any](c *CachedCredentials, t *table[K, V], k K, f *flight[V], gen uint64,
	lookup func(context.Context) (V, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	f.v, f.err = lookup(ctx)
	c.mu.Lock()
	if c.gen == gen {
		delete(t.inflight, k)
		if f.err == nil || errors.Is(f.err, stagedoor.ErrNotFound) {
			if len(t.answers) >= maxCached {
				t.answers = make(map[K]answer[V])
			}
			t.answers[k] = answer[V]{v: f.v, err: f.err}
		}
	}
	c.mu.Unlock()
	close(f.done)
}

// ChannelByName implements Credentials without caching: only StillAllowed asks it, off
// the auth path.
func (c *CachedCredentials) ChannelByName(ctx context.Context, name string) (stagedoor.Channel, error) {
	return c.src.ChannelByName(ctx, name)
}

// RevokedKey implements Credentials without caching: only StillAllowed asks it, off the
// auth path.
func (c *CachedCredentials) RevokedKey(ctx context.Context, d stagedoor.Digest) (stagedoor.RevokedKeyInfo, error) {
	return c.src.RevokedKey(ctx, d)
}

var _ Credentials = (*CachedCredentials)(nil)
