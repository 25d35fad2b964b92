package policy

import (
	"context"
	"errors"
	"fmt"

	"github.com/stagedoor/stagedoor"
)

// Running is a publish in progress, as the reconciler sees it in MediaMTX.
type Running struct {
	// Path is the MediaMTX path it publishes on: live/<key> or live/<name>.
	Path string
	// KeyDigest is the digest of the stream key that admitted a publish on a public
	// name (?key=, or the key as password or token); nil when no key admitted it or it
	// is not known.
	KeyDigest *stagedoor.Digest
	// PasswordDigest is stagedoor.HashDigest of the stored password hash that was current
	// when a password admitted a publish on a public name; nil when no password admitted
	// it or it is not known.
	PasswordDigest *stagedoor.Digest
}

// Reasons StillAllowed refuses with; the reconciler ejects the publisher.
const (
	ReasonNameGone   = "name no longer exists"
	ReasonBanned     = "user banned"
	ReasonKeyRevoked = "key revoked"
	// ReasonPasswordChanged: the password (and so its hash) that admitted the stream was
	// replaced; a new password retires every old URL, running ones included.
	ReasonPasswordChanged = "password changed"
	// ReasonAuthEnabled: the stream was published without credentials while its
	// authentication was off, and it is on again.
	ReasonAuthEnabled = "stream authentication enabled"
)

// StillAllowed says whether a running publish may continue: the mirror of Decide for
// what changed after it started (a ban, a revoked or reset key, a changed password, a
// removed name). A key revoked with keep-live lets the stream it admitted finish. An error means the answer
// is unknown (the lookup failed): the caller must not eject on it.
//
// On allow the Verdict names the owner (User, UserID) and, for a key path, the key
// (KeyID, KeyFP); a key path's public name is the owner's name.
func (p *Policy) StillAllowed(ctx context.Context, r Running) (Verdict, error) {
	kind, rest := stagedoor.ParsePath(r.Path)
	var (
		v   Verdict
		err error
	)
	switch kind {
	case stagedoor.PathKey:
		v, err = p.keyPathStillAllowed(ctx, stagedoor.KeyDigest(rest))
	case stagedoor.PathPublic:
		v, err = p.publicStillAllowed(ctx, rest, r)
	default:
		v = deny("not a Stagedoor path")
	}
	v.PathKind = kind
	return v, err
}

// keyPathStillAllowed: the key must still exist and its owner be active, or the key was
// revoked with keep-live and its owner is active.
func (p *Policy) keyPathStillAllowed(ctx context.Context, dg stagedoor.Digest) (Verdict, error) {
	o, err := p.Credentials.UserByKeyDigest(ctx, dg)
	switch {
	case err == nil && !o.Active:
		return Verdict{Reason: ReasonBanned, User: o.UserName, UserID: o.UserID, KeyFP: o.Fingerprint}, nil
	case err == nil:
		return Verdict{Allow: true, Reason: "stream key", User: o.UserName, UserID: o.UserID, KeyID: o.KeyID, KeyFP: o.Fingerprint}, nil
	case !errors.Is(err, stagedoor.ErrNotFound):
		return Verdict{}, fmt.Errorf("still allowed: %w", err)
	}
	r, err := p.Credentials.RevokedKey(ctx, dg)
	switch {
	case err == nil && r.KeepLive && r.Active:
		return Verdict{Allow: true, Reason: "revoked, keep-live", User: r.UserName, UserID: r.UserID, KeyFP: r.Fingerprint}, nil
	case err == nil || errors.Is(err, stagedoor.ErrNotFound):
		return Verdict{Reason: ReasonKeyRevoked, User: r.UserName, KeyFP: dg.Fingerprint()}, nil
	}
	return Verdict{}, fmt.Errorf("still allowed: %w", err)
}

// publicStillAllowed: the name must still exist and its owner be active; a stream a key
// admitted also needs that key (or its keep-live revocation), one a password admitted
// needs that password's hash to be still the stored one, and one admitted with neither
// needs its stream's authentication to be still off.
func (p *Policy) publicStillAllowed(ctx context.Context, name string, r Running) (Verdict, error) {
	ch, err := p.Credentials.ChannelByName(ctx, name)
	switch {
	case errors.Is(err, stagedoor.ErrNotFound):
		return deny(ReasonNameGone), nil
	case err != nil:
		return Verdict{}, fmt.Errorf("still allowed: %w", err)
	case !ch.Active:
		return Verdict{Reason: ReasonBanned, User: ch.UserName, UserID: ch.UserID}, nil
	}
	v := Verdict{Allow: true, Reason: "channel active", User: ch.UserName, UserID: ch.UserID}
	if r.PasswordDigest == nil && r.KeyDigest == nil {
		// Admitted with no credential: only a stream whose authentication is off allows
		// that, and only while it stays off.
		s, err := p.Credentials.StreamByName(ctx, name)
		switch {
		case err == nil && s.AuthRequired:
			return Verdict{Reason: ReasonAuthEnabled, User: ch.UserName, UserID: ch.UserID}, nil
		case err != nil && !errors.Is(err, stagedoor.ErrNotFound):
			return Verdict{}, fmt.Errorf("still allowed: %w", err)
		}
		return v, nil
	}
	if r.PasswordDigest != nil {
		s, err := p.Credentials.StreamByName(ctx, name)
		switch {
		case errors.Is(err, stagedoor.ErrNotFound):
			return Verdict{Reason: ReasonNameGone, User: ch.UserName, UserID: ch.UserID}, nil
		case err != nil:
			return Verdict{}, fmt.Errorf("still allowed: %w", err)
		case stagedoor.HashDigest(s.PasswordHash) != *r.PasswordDigest:
			return Verdict{Reason: ReasonPasswordChanged, User: ch.UserName, UserID: ch.UserID}, nil
		}
	}
	dg := r.KeyDigest
	if dg == nil {
		return v, nil
	}
	v.KeyFP = dg.Fingerprint()
	if _, err := p.Credentials.UserByKeyDigest(ctx, *dg); err == nil {
		return v, nil
	} else if !errors.Is(err, stagedoor.ErrNotFound) {
		return Verdict{}, fmt.Errorf("still allowed: %w", err)
	}
	rk, err := p.Credentials.RevokedKey(ctx, *dg)
	switch {
	case err == nil && rk.KeepLive:
		v.Reason = "revoked, keep-live"
		return v, nil
	case err == nil || errors.Is(err, stagedoor.ErrNotFound):
		return Verdict{Reason: ReasonKeyRevoked, User: ch.UserName, UserID: ch.UserID, KeyFP: dg.Fingerprint()}, nil
	}
	return Verdict{}, fmt.Errorf("still allowed: %w", err)
}
