package policy_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/policy"
)

// countingSource counts lookups and answers from a map (a fake: it makes lookups
// countable, which a real database cannot).
type countingSource struct {
	n      atomic.Int64
	owners map[stagedoor.Digest]stagedoor.KeyOwner
	fail   bool
}

func (c *countingSource) UserByKeyDigest(_ context.Context, d stagedoor.Digest) (stagedoor.KeyOwner, error) {
	c.n.Add(1)
	if c.fail {
		return stagedoor.KeyOwner{}, errors.New("database is locked")
	}
	if o, ok := c.owners[d]; ok {
		return o, nil
	}
	return stagedoor.KeyOwner{}, stagedoor.ErrNotFound
}

func (c *countingSource) StreamByName(context.Context, string) (stagedoor.Stream, error) {
	c.n.Add(1)
	return stagedoor.Stream{}, stagedoor.ErrNotFound
}

func (c *countingSource) ChannelByName(context.Context, string) (stagedoor.Channel, error) {
	return stagedoor.Channel{}, stagedoor.ErrNotFound
}

func (c *countingSource) RevokedKey(context.Context, stagedoor.Digest) (stagedoor.RevokedKeyInfo, error) {
	return stagedoor.RevokedKeyInfo{}, stagedoor.ErrNotFound
}

func TestCachedCredentials(t *testing.T) {
	key, unknown := stagedoor.NewKey(), stagedoor.NewKey()
	src := &countingSource{owners: map[stagedoor.Digest]stagedoor.KeyOwner{stagedoor.KeyDigest(key): {UserName: "benw", Active: true}}}
	c := policy.NewCachedCredentials(src)
	ctx := t.Context()
	for range 3 {
		if o, err := c.UserByKeyDigest(ctx, stagedoor.KeyDigest(key)); err != nil || o.UserName != "benw" {
			t.Fatalf("lookup = %+v, %v", o, err)
		}
		if _, err := c.UserByKeyDigest(ctx, stagedoor.KeyDigest(unknown)); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Fatalf("unknown key: %v, want ErrNotFound", err)
		}
		if _, err := c.StreamByName(ctx, "concert"); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Fatalf("unknown stream: %v", err)
		}
	}
	if got := src.n.Load(); got != 3 {
		t.Errorf("source lookups = %d, want 3 (one per distinct question)", got)
	}

	// A revocation: the source changes, the cache is told.
	delete(src.owners, stagedoor.KeyDigest(key))
	c.Invalidate()
	if _, err := c.UserByKeyDigest(ctx, stagedoor.KeyDigest(key)); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("after Invalidate: %v, want the revoked key refused", err)
	}

	// Errors other than not-found are never cached.
	src.fail = true
	c.Invalidate()
	before := src.n.Load()
	for range 2 {
		if _, err := c.UserByKeyDigest(ctx, stagedoor.KeyDigest(key)); err == nil || errors.Is(err, stagedoor.ErrNotFound) {
			t.Fatalf("lookup fault: %v, want the fault", err)
		}
	}
	if got := src.n.Load() - before; got != 2 {
		t.Errorf("faulty lookups reached the source %d times, want 2 (not cached)", got)
	}
}

// TestCachedCredentialsOverStore: with a real database, a ban and a key reset are
// refused right after Invalidate, as the service does when the policy generation moves.
func TestCachedCredentialsOverStore(t *testing.T) {
	f := newFixture(t)
	c := policy.NewCachedCredentials(f.DB)
	pub := req("publish", "rtmp", "live/"+f.ActiveKey)
	if d := decide(t.Context(), pub, c, testPolicy); !d.Allow {
		t.Fatalf("valid key: %+v", d)
	}
	if err := f.DB.SetActive(t.Context(), "benw", false); err != nil {
		t.Fatal(err)
	}
	c.Invalidate()
	if d := decide(t.Context(), pub, c, testPolicy); d.Allow {
		t.Error("banned user allowed after Invalidate")
	}
	if err := f.DB.SetActive(t.Context(), "benw", true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.DB.ResetKeys(t.Context(), "benw"); err != nil {
		t.Fatal(err)
	}
	c.Invalidate()
	if d := decide(t.Context(), pub, c, testPolicy); d.Allow {
		t.Error("reset key allowed after Invalidate")
	}
}

// gatedSource reads its answer like countingSource, then holds it until its gate opens:
// a lookup in flight for as long as the test wants.
type gatedSource struct {
	countingSource
	mu   sync.Mutex // guards owners against the test's changes
	gate chan struct{}
}

func (g *gatedSource) UserByKeyDigest(ctx context.Context, d stagedoor.Digest) (stagedoor.KeyOwner, error) {
	g.mu.Lock()
	o, err := g.countingSource.UserByKeyDigest(ctx, d)
	g.mu.Unlock()
	select {
	case <-g.gate:
		return o, err
	case <-ctx.Done():
		return stagedoor.KeyOwner{}, ctx.Err()
	}
}

// TestCachedCredentialsSharedLookup: many requests asking the same question at once (a
// raid right after the cache was dropped) cost one source lookup; an asker that gives up
// does not cancel it for the others, and its answer is kept for the next ones; a lookup
// that straddles Invalidate is answered to its askers but not kept.
func TestCachedCredentialsSharedLookup(t *testing.T) {
	key := stagedoor.NewKey()
	d := stagedoor.KeyDigest(key)
	src := &gatedSource{gate: make(chan struct{}),
		countingSource: countingSource{owners: map[stagedoor.Digest]stagedoor.KeyOwner{d: {UserName: "benw", Active: true}}}}
	c := policy.NewCachedCredentials(src)

	// The first asker gives up before the source answers.
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.UserByKeyDigest(gone, d); !errors.Is(err, context.Canceled) {
		t.Fatalf("asker whose context ended: %v, want context.Canceled", err)
	}
	const askers = 50
	errs := make(chan error, askers)
	for range askers {
		go func() {
			o, err := c.UserByKeyDigest(t.Context(), d)
			if err == nil && o.UserName != "benw" {
				err = errors.New("wrong owner " + o.UserName)
			}
			errs <- err
		}()
	}
	close(src.gate)
	for range askers {
		if err := <-errs; err != nil {
			t.Errorf("concurrent lookup: %v", err)
		}
	}
	if _, err := c.UserByKeyDigest(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if got := src.n.Load(); got != 1 {
		t.Errorf("source lookups = %d, want 1 for %d concurrent askers, one that gave up before them and one after", got, askers)
	}

	// Invalidate while a lookup is in flight: its answer may predate the change.
	src2 := &gatedSource{gate: make(chan struct{}),
		countingSource: countingSource{owners: map[stagedoor.Digest]stagedoor.KeyOwner{d: {UserName: "benw", Active: true}}}}
	c = policy.NewCachedCredentials(src2)
	first := make(chan error, 1)
	go func() {
		_, err := c.UserByKeyDigest(t.Context(), d)
		first <- err
	}()
	for src2.n.Load() == 0 { // until the lookup has read the old state
		time.Sleep(time.Millisecond)
	}
	src2.mu.Lock()
	delete(src2.owners, d) // the revocation the Invalidate stands for
	src2.mu.Unlock()
	c.Invalidate()
	close(src2.gate)
	if err := <-first; err != nil { // it asked before the change: the old answer is right
		t.Errorf("lookup that straddled Invalidate: %v, want the owner read before", err)
	}
	if _, err := c.UserByKeyDigest(t.Context(), d); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("after Invalidate: %v, want the revoked key refused (the straddling answer not kept)", err)
	}
}
