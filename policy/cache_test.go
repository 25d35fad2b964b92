package policy_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

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
	c := policy.NewCachedCredentials(f.db)
	pub := req("publish", "rtmp", "live/"+f.activeKey)
	if d := decide(t.Context(), pub, c, testPolicy); !d.Allow {
		t.Fatalf("valid key: %+v", d)
	}
	if err := f.db.SetActive(t.Context(), "benw", false); err != nil {
		t.Fatal(err)
	}
	c.Invalidate()
	if d := decide(t.Context(), pub, c, testPolicy); d.Allow {
		t.Error("banned user allowed after Invalidate")
	}
	if err := f.db.SetActive(t.Context(), "benw", true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.ResetKeys(t.Context(), "benw"); err != nil {
		t.Fatal(err)
	}
	c.Invalidate()
	if d := decide(t.Context(), pub, c, testPolicy); d.Allow {
		t.Error("reset key allowed after Invalidate")
	}
}
