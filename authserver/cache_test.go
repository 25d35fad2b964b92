package authserver_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/store"
)

// countingSource counts lookups and answers from a map (a fake: it makes lookups
// countable, which a real database cannot).
type countingSource struct {
	n      atomic.Int64
	owners map[store.Digest]store.KeyOwner
	fail   bool
}

func (c *countingSource) UserByKeyDigest(_ context.Context, d store.Digest) (store.KeyOwner, error) {
	c.n.Add(1)
	if c.fail {
		return store.KeyOwner{}, errors.New("database is locked")
	}
	if o, ok := c.owners[d]; ok {
		return o, nil
	}
	return store.KeyOwner{}, store.ErrNotFound
}

func (c *countingSource) StreamByName(context.Context, string) (store.Stream, error) {
	c.n.Add(1)
	return store.Stream{}, store.ErrNotFound
}

func TestCachedCredentials(t *testing.T) {
	key, unknown := store.NewKey(), store.NewKey()
	src := &countingSource{owners: map[store.Digest]store.KeyOwner{store.KeyDigest(key): {UserName: "benw", Active: true}}}
	c := authserver.NewCachedCredentials(src)
	ctx := t.Context()
	for range 3 {
		if o, err := c.UserByKeyDigest(ctx, store.KeyDigest(key)); err != nil || o.UserName != "benw" {
			t.Fatalf("lookup = %+v, %v", o, err)
		}
		if _, err := c.UserByKeyDigest(ctx, store.KeyDigest(unknown)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown key: %v, want ErrNotFound", err)
		}
		if _, err := c.StreamByName(ctx, "concert"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown stream: %v", err)
		}
	}
	if got := src.n.Load(); got != 3 {
		t.Errorf("source lookups = %d, want 3 (one per distinct question)", got)
	}

	// A revocation: the source changes, the cache is told.
	delete(src.owners, store.KeyDigest(key))
	c.Invalidate()
	if _, err := c.UserByKeyDigest(ctx, store.KeyDigest(key)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after Invalidate: %v, want the revoked key refused", err)
	}

	// Errors other than not-found are never cached.
	src.fail = true
	c.Invalidate()
	before := src.n.Load()
	for range 2 {
		if _, err := c.UserByKeyDigest(ctx, store.KeyDigest(key)); err == nil || errors.Is(err, store.ErrNotFound) {
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
	c := authserver.NewCachedCredentials(f.db)
	pub := req("publish", "rtmp", "live/"+f.activeKey)
	if d := authserver.Decide(t.Context(), pub, c, testPolicy); !d.Allow {
		t.Fatalf("valid key: %+v", d)
	}
	if err := f.db.SetActive(t.Context(), "benw", false); err != nil {
		t.Fatal(err)
	}
	c.Invalidate()
	if d := authserver.Decide(t.Context(), pub, c, testPolicy); d.Allow {
		t.Error("banned user allowed after Invalidate")
	}
	if err := f.db.SetActive(t.Context(), "benw", true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.ResetKeys(t.Context(), "benw"); err != nil {
		t.Fatal(err)
	}
	c.Invalidate()
	if d := authserver.Decide(t.Context(), pub, c, testPolicy); d.Allow {
		t.Error("reset key allowed after Invalidate")
	}
}
