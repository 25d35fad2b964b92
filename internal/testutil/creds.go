package testutil

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/stagedoor/stagedoor"
)

// FakeCreds answers the policy's credential lookups with functions, for faults a real
// database cannot produce on demand. A nil function answers stagedoor.ErrNotFound.
type FakeCreds struct {
	KeyOwner func(ctx context.Context, d stagedoor.Digest) (stagedoor.KeyOwner, error)
	Stream   func(ctx context.Context, name string) (stagedoor.Stream, error)
}

// UserByKeyDigest implements policy.Credentials.
func (f FakeCreds) UserByKeyDigest(ctx context.Context, d stagedoor.Digest) (stagedoor.KeyOwner, error) {
	if f.KeyOwner == nil {
		return stagedoor.KeyOwner{}, fmt.Errorf("key %s: %w", d.Fingerprint(), stagedoor.ErrNotFound)
	}
	return f.KeyOwner(ctx, d)
}

// StreamByName implements policy.Credentials.
func (f FakeCreds) StreamByName(ctx context.Context, name string) (stagedoor.Stream, error) {
	if f.Stream == nil {
		return stagedoor.Stream{}, fmt.Errorf("stream %s: %w", name, stagedoor.ErrNotFound)
	}
	return f.Stream(ctx, name)
}

// ChannelByName implements policy.Credentials: always not found.
func (f FakeCreds) ChannelByName(_ context.Context, name string) (stagedoor.Channel, error) {
	return stagedoor.Channel{}, fmt.Errorf("channel %s: %w", name, stagedoor.ErrNotFound)
}

// RevokedKey implements policy.Credentials: always not found.
func (f FakeCreds) RevokedKey(_ context.Context, d stagedoor.Digest) (stagedoor.RevokedKeyInfo, error) {
	return stagedoor.RevokedKeyInfo{}, fmt.Errorf("revoked key %s: %w", d.Fingerprint(), stagedoor.ErrNotFound)
}

// ErrInjected is the lookup failure of FailingCreds.
var ErrInjected = errors.New("injected lookup failure")

// FailingCreds fails every key and stream lookup with ErrInjected.
func FailingCreds() FakeCreds {
	return FakeCreds{
		KeyOwner: func(context.Context, stagedoor.Digest) (stagedoor.KeyOwner, error) {
			return stagedoor.KeyOwner{}, ErrInjected
		},
		Stream: func(context.Context, string) (stagedoor.Stream, error) { return stagedoor.Stream{}, ErrInjected },
	}
}

// BlockingCreds blocks every key lookup until its context ends.
func BlockingCreds() FakeCreds {
	return FakeCreds{KeyOwner: func(ctx context.Context, _ stagedoor.Digest) (stagedoor.KeyOwner, error) {
		<-ctx.Done()
		return stagedoor.KeyOwner{}, ctx.Err()
	}}
}

// PanickingCreds panics in every key lookup.
func PanickingCreds() FakeCreds {
	return FakeCreds{KeyOwner: func(context.Context, stagedoor.Digest) (stagedoor.KeyOwner, error) {
		panic("injected panic in lookup")
	}}
}

// CountingCreds counts key lookups and answers stagedoor.ErrNotFound.
func CountingCreds(n *atomic.Int64) FakeCreds {
	return FakeCreds{KeyOwner: func(_ context.Context, d stagedoor.Digest) (stagedoor.KeyOwner, error) {
		n.Add(1)
		return stagedoor.KeyOwner{}, fmt.Errorf("key %s: %w", d.Fingerprint(), stagedoor.ErrNotFound)
	}}
}
