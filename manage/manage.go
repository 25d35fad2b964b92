// Package manage performs every operator action once: the store change, its audit entry
// and the policy-changed signal that makes the running service drop cached answers and
// kick streams whose credential was revoked. The CLI, the admin API and the control
// panel call it; none of them changes the store on its own.
package manage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/stagedoor/stagedoor"
)

// Store is everything operator actions read and change.
type Store interface {
	// CreateUser returns *stagedoor.InvalidError for a bad name, ErrConflict if taken.
	CreateUser(ctx context.Context, name string) (stagedoor.NewUser, error)
	Users(ctx context.Context) ([]stagedoor.User, error)
	// UserByName returns stagedoor.ErrNotFound for an unknown user.
	UserByName(ctx context.Context, name string) (stagedoor.User, error)
	SetActive(ctx context.Context, name string, active bool) error
	SetPasswordHash(ctx context.Context, name, hash string) error
	AddKey(ctx context.Context, name, label string) (stagedoor.IssuedKey, error)
	Keys(ctx context.Context, name string) ([]stagedoor.KeyInfo, error)
	RevokeKey(ctx context.Context, name, fingerprint string, r stagedoor.Revocation) error
	ResetKeysWith(ctx context.Context, name string, r stagedoor.Revocation) (stagedoor.IssuedKey, error)
	ResetAllKeys(ctx context.Context, r stagedoor.Revocation) ([]stagedoor.IssuedKey, error)
	CreateStream(ctx context.Context, name, owner string, authRequired bool) (stagedoor.Stream, error)
	Streams(ctx context.Context, owner string) ([]stagedoor.Stream, error)
	// StreamByName returns stagedoor.ErrNotFound for an unknown stream.
	StreamByName(ctx context.Context, name string) (stagedoor.Stream, error)
	// SetStreamAuth returns stagedoor.ErrNotFound for an unknown stream.
	SetStreamAuth(ctx context.Context, name string, required bool) error
	DeleteStream(ctx context.Context, name string) error
	Audit(ctx context.Context, f stagedoor.AuditFilter) ([]stagedoor.AuditEntry, error)
	LiveStates(ctx context.Context) ([]stagedoor.LiveState, error)

	// Panel accounts (panel.go).
	CreateOperator(ctx context.Context, name, hash string) (stagedoor.PanelAccount, error)
	PanelAccounts(ctx context.Context) ([]stagedoor.PanelAccount, error)
	SetPanelPassword(ctx context.Context, name, hash string) error
	EndPanelSessions(ctx context.Context, name string) (int64, error)
	CreatePanelInvite(ctx context.Context, channel string, d stagedoor.Digest, expires time.Time) error
	UsePanelInvite(ctx context.Context, d stagedoor.Digest, hash string) (stagedoor.PanelAccount, error)
}

// Operator channels, recorded in the Protocol field of admin audit entries.
const (
	ViaCLI   = "cli"
	ViaAPI   = "api"
	ViaPanel = "panel"
)

// Actor is who performs an action, for the audit trail.
type Actor struct {
	// Via is ViaCLI, ViaAPI or ViaPanel.
	Via string
	// IP is the client address of an HTTP caller; "" for the CLI.
	IP string
	// Name is the panel account acting, recorded in the audit entry's reason; "" for
	// the CLI and the admin API.
	Name string
}

// Service performs operator actions. Store is required; the rest may be nil.
type Service struct {
	Store Store
	// Record writes one admin audit entry per change. In the service it queues to the batched
	// recorder; the CLI writes it before it exits. Nil: changes are not audited.
	Record func(context.Context, stagedoor.AuditEntry) error
	// Changed is called after every change that may revoke or alter a credential, so
	// that the running service drops cached answers and re-checks live streams at once.
	Changed func(context.Context)
	// URLs are the public addresses printed with new keys and passwords.
	URLs stagedoor.URLs
	// Kicker disconnects the publisher live on a public name now and reports whether
	// there was one; the running service sets it (its reconciler's kick, audited and
	// counted like every other kick). A name live on another node of a cluster is kicked
	// by that node, which this one asks (plugin.RequestKick). Nil: Kick answers ErrNoService.
	Kicker func(ctx context.Context, name string) (bool, error)
	// Logger reports audit writes that failed after the change was made. Default: discard.
	Logger *slog.Logger
	// Now is the clock of audit entries. Default time.Now.
	Now func() time.Time
}

// changed audits a completed change and signals it.
func (s *Service) changed(ctx context.Context, by Actor, what, user string) {
	s.audited(ctx, by, what, user)
	if s.Changed != nil {
		s.Changed(ctx)
	}
}

// CreateUser creates a channel with its first stream key (shown once). It returns an
// *stagedoor.InvalidError for a bad name and stagedoor.ErrConflict when it is taken.
func (s *Service) CreateUser(ctx context.Context, by Actor, name string) (stagedoor.NewUser, error) {
	if err := stagedoor.ValidUsername(name); err != nil {
		return stagedoor.NewUser{}, err
	}
	nu, err := s.Store.CreateUser(ctx, name)
	if err != nil {
		return nu, err
	}
	s.changed(ctx, by, "user created", nu.Name)
	return nu, nil
}

// SetActive bans (active false) or unbans a user. A ban refuses new publishes at once and
// the running service kicks the user's live streams. stagedoor.ErrNotFound for an
// unknown user.
func (s *Service) SetActive(ctx context.Context, by Actor, name string, active bool) error {
	if err := s.Store.SetActive(ctx, name, active); err != nil {
		return err
	}
	what := "user banned"
	if active {
		what = "user unbanned"
	}
	s.changed(ctx, by, what, name)
	return nil
}

// SetPassword sets a user's publishing password and returns its bcrypt hash (a publish
// credential, shown to the operator once). The user is looked up before bcrypt runs, so
// an unknown user costs nothing: stagedoor.ErrNotFound. A bad password or cost is an
// *stagedoor.InvalidError. cost 0 means stagedoor.DefaultCost.
func (s *Service) SetPassword(ctx context.Context, by Actor, name, password string, cost int) (string, error) {
	if cost == 0 {
		cost = stagedoor.DefaultCost
	}
	if _, err := s.Store.UserByName(ctx, name); err != nil {
		return "", err
	}
	hash, err := stagedoor.HashPassword(password, cost)
	if err != nil {
		return "", err
	}
	if err := s.Store.SetPasswordHash(ctx, name, hash); err != nil {
		return "", err
	}
	s.changed(ctx, by, "password set", name)
	return hash, nil
}

// AddKey adds a labelled stream key to a user (shown once).
func (s *Service) AddKey(ctx context.Context, by Actor, name, label string) (stagedoor.IssuedKey, error) {
	k, err := s.Store.AddKey(ctx, name, label)
	if err != nil {
		return k, err
	}
	s.changed(ctx, by, "key added "+k.Fingerprint, k.UserName)
	return k, nil
}

// RevokeKey revokes one key by fingerprint; a stream live on it is kicked unless
// r.KeepLive. stagedoor.ErrNotFound for an unknown user or fingerprint.
func (s *Service) RevokeKey(ctx context.Context, by Actor, name, fingerprint string, r stagedoor.Revocation) error {
	if err := s.Store.RevokeKey(ctx, name, fingerprint, r); err != nil {
		return err
	}
	s.changed(ctx, by, "key revoked "+fingerprint+keepLiveNote(r), name)
	return nil
}

// ResetKeys replaces every key of a user with one new key (shown once).
func (s *Service) ResetKeys(ctx context.Context, by Actor, name string, r stagedoor.Revocation) (stagedoor.IssuedKey, error) {
	k, err := s.Store.ResetKeysWith(ctx, name, r)
	if err != nil {
		return k, err
	}
	s.changed(ctx, by, "keys reset"+keepLiveNote(r), k.UserName)
	return k, nil
}

// ResetAllKeys replaces every key of every user in one transaction: the breach button.
func (s *Service) ResetAllKeys(ctx context.Context, by Actor, r stagedoor.Revocation) ([]stagedoor.IssuedKey, error) {
	ks, err := s.Store.ResetAllKeys(ctx, r)
	if err != nil {
		return nil, err
	}
	s.changed(ctx, by, fmt.Sprintf("all keys reset (%d users)%s", len(ks), keepLiveNote(r)), "")
	return ks, nil
}

// audited writes the admin audit entry of a completed change.
func (s *Service) audited(ctx context.Context, by Actor, what, user string) {
	if s.Record == nil {
		return
	}
	if by.Name != "" {
		what += " (by " + by.Name + ")"
	}
	e := stagedoor.AuditEntry{At: s.now(), Kind: "admin", User: user, IP: by.IP, Protocol: by.Via, Decision: "ok", Reason: what}
	if err := s.Record(ctx, e); err != nil && s.Logger != nil {
		s.Logger.Error("audit entry of an operator action not written", "action", what, "user", user, "err", err)
	}
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func keepLiveNote(r stagedoor.Revocation) string {
	if r.KeepLive {
		return ", keep-live"
	}
	return ""
}

// CreateStream creates a user/password (or no-auth) stream name for owner.
func (s *Service) CreateStream(ctx context.Context, by Actor, name, owner string, authRequired bool) (stagedoor.Stream, error) {
	st, err := s.Store.CreateStream(ctx, name, owner, authRequired)
	if err != nil {
		return st, err
	}
	s.changed(ctx, by, "stream created "+st.Name, st.UserName)
	return st, nil
}

// SetStreamAuth turns authentication of a stream on or off. Off, any publish to the
// name is accepted while its owner is not banned; on, a new publish needs the owner's
// name and password at once, and a publish admitted without credentials while it was off
// is kicked (the change moves the policy generation and calls Changed; the reconciler
// ejects through policy.StillAllowed, as after a password change).
// stagedoor.ErrNotFound for an unknown stream.
func (s *Service) SetStreamAuth(ctx context.Context, by Actor, name string, required bool) error {
	if err := s.Store.SetStreamAuth(ctx, name, required); err != nil {
		return err
	}
	what := "stream auth disabled " + name
	if required {
		what = "stream auth enabled " + name
	}
	st, err := s.Store.StreamByName(ctx, name)
	owner := ""
	if err == nil {
		owner = st.UserName
	}
	s.changed(ctx, by, what, owner)
	return nil
}

// ErrNoService is Kick's answer where no running service can reach MediaMTX.
var ErrNoService = errors.New("kicking needs the running service")

// Kick disconnects the publisher live on the public name now, without changing any
// credential (an encoder that reconnects with a valid one is admitted again). It reports
// whether one was live; stagedoor.ErrNotFound for a name nobody owns, ErrNoService
// without a running service. A name live on another node of a cluster is kicked by that
// node, which takes the request at once (the policy-generation poll or notification).
func (s *Service) Kick(ctx context.Context, by Actor, name string) (bool, error) {
	if s.Kicker == nil {
		return false, ErrNoService
	}
	owner := name
	if _, err := s.Store.UserByName(ctx, name); err != nil {
		st, serr := s.Store.StreamByName(ctx, name)
		if serr != nil {
			return false, err
		}
		owner = st.UserName
	}
	was, err := s.Kicker(ctx, name)
	if err != nil {
		return false, fmt.Errorf("kick %s: %w", name, err)
	}
	if was {
		s.audited(ctx, by, "kicked "+name, owner)
	}
	return was, nil
}

// DeleteStream removes a stream name. stagedoor.ErrNotFound for an unknown name.
func (s *Service) DeleteStream(ctx context.Context, by Actor, name string) error {
	if err := s.Store.DeleteStream(ctx, name); err != nil {
		return err
	}
	s.changed(ctx, by, "stream removed "+name, "")
	return nil
}

// Users lists every user, banned or not, live or not.
func (s *Service) Users(ctx context.Context) ([]stagedoor.User, error) { return s.Store.Users(ctx) }

// User returns one user; stagedoor.ErrNotFound for an unknown name.
func (s *Service) User(ctx context.Context, name string) (stagedoor.User, error) {
	return s.Store.UserByName(ctx, name)
}

// Keys lists a user's keys (never the keys themselves).
func (s *Service) Keys(ctx context.Context, name string) ([]stagedoor.KeyInfo, error) {
	return s.Store.Keys(ctx, name)
}

// Streams lists stream names, of one owner or ("") of everyone.
func (s *Service) Streams(ctx context.Context, owner string) ([]stagedoor.Stream, error) {
	return s.Store.Streams(ctx, owner)
}

// Audit returns matching audit entries, newest first.
func (s *Service) Audit(ctx context.Context, f stagedoor.AuditFilter) ([]stagedoor.AuditEntry, error) {
	return s.Store.Audit(ctx, f)
}

// Live lists the public names live now.
func (s *Service) Live(ctx context.Context) ([]stagedoor.LiveState, error) {
	return s.Store.LiveStates(ctx)
}
