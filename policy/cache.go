package policy

import (
	"context"
	"errors"
	"sync"

	"github.com/stagedoor/stagedoor"
)

// CachedCredentials answers the auth path's lookups from memory: MediaMTX waits for every
// answer, one at a time, and a SQLite read costs more than everything else on the path.
// Found and not-found answers are kept until Invalidate, which the service calls when the
// policy generation changes (any ban, password, key or stream change, from this process
// or the CLI: the CLI notifies the running service before it exits, and the service also
// polls the generation every 250 ms). Lookup errors are never cached.
type CachedCredentials struct {
	src Credentials

	mu      sync.RWMutex
	gen     uint64
	keys    map[stagedoor.Digest]cachedKey
	streams map[string]cachedStream
}

type cachedKey struct {
	owner stagedoor.KeyOwner
	err   error // nil or stagedoor.ErrNotFound
}

type cachedStream struct {
	s   stagedoor.Stream
	err error
}

// maxCached bounds each map (unknown keys are cached too); beyond it the map restarts.
const maxCached = 100_000

// NewCachedCredentials wraps src.
func NewCachedCredentials(src Credentials) *CachedCredentials {
	c := &CachedCredentials{src: src}
	c.Invalidate()
	return c
}

// Invalidate forgets every cached answer.
func (c *CachedCredentials) Invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.keys = make(map[stagedoor.Digest]cachedKey)
	c.streams = make(map[string]cachedStream)
}

// UserByKeyDigest implements Credentials.
func (c *CachedCredentials) UserByKeyDigest(ctx context.Context, d stagedoor.Digest) (stagedoor.KeyOwner, error) {
	c.mu.RLock()
	e, ok := c.keys[d]
	gen := c.gen
	c.mu.RUnlock()
	if ok {
		return e.owner, e.err
	}
	o, err := c.src.UserByKeyDigest(ctx, d)
	if err == nil || errors.Is(err, stagedoor.ErrNotFound) {
		c.mu.Lock()
		// A lookup that raced with Invalidate may have read the old state: drop it.
		if c.gen == gen {
			if len(c.keys) >= maxCached {
				c.keys = make(map[stagedoor.Digest]cachedKey)
			}
			c.keys[d] = cachedKey{owner: o, err: err}
		}
		c.mu.Unlock()
	}
	return o, err
}

// StreamByName implements Credentials.
func (c *CachedCredentials) StreamByName(ctx context.Context, name string) (stagedoor.Stream, error) {
	c.mu.RLock()
	e, ok := c.streams[name]
	gen := c.gen
	c.mu.RUnlock()
	if ok {
		return e.s, e.err
	}
	s, err := c.src.StreamByName(ctx, name)
	if err == nil || errors.Is(err, stagedoor.ErrNotFound) {
		c.mu.Lock()
		if c.gen == gen {
			if len(c.streams) >= maxCached {
				c.streams = make(map[string]cachedStream)
			}
			c.streams[name] = cachedStream{s: s, err: err}
		}
		c.mu.Unlock()
	}
	return s, err
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
