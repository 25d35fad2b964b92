package manage

import (
	"context"
	"time"

	"github.com/stagedoor/stagedoor"
)

// Panel accounts are not publishing credentials: creating one, setting its password or
// ending its sessions is audited but does not signal a policy change.

// CreateOperator creates an operator's panel account with password (bcrypt at
// stagedoor.DefaultCost). *stagedoor.InvalidError for a bad name or a weak password
// (stagedoor.ValidPanelPassword), checked before bcrypt runs; stagedoor.ErrConflict
// when a panel account holds the name.
func (s *Service) CreateOperator(ctx context.Context, by Actor, name, password string) (stagedoor.PanelAccount, error) {
	if err := ValidOperator(name, password); err != nil {
		return stagedoor.PanelAccount{}, err
	}
	hash, err := panelHash(name, password)
	if err != nil {
		return stagedoor.PanelAccount{}, err
	}
	a, err := s.Store.CreateOperator(ctx, name, hash)
	if err != nil {
		return a, err
	}
	s.audited(ctx, by, "panel operator created "+name, "")
	return a, nil
}

// ValidOperator returns an *stagedoor.InvalidError unless name and password can make an
// operator account: the rule CreateOperator applies, for callers (the CLI) that check
// before they open the database.
func ValidOperator(name, password string) error {
	if err := stagedoor.ValidUsername(name); err != nil {
		return err
	}
	return stagedoor.ValidPanelPassword(name, password)
}

// PanelAccounts lists every panel account.
func (s *Service) PanelAccounts(ctx context.Context) ([]stagedoor.PanelAccount, error) {
	return s.Store.PanelAccounts(ctx)
}

// Invite makes a single-use invite for the streamer of channel to set a panel password
// and returns its token (shown once; only its digest is kept) and expiry,
// stagedoor.InviteTTL from now. stagedoor.ErrNotFound for an unknown channel.
func (s *Service) Invite(ctx context.Context, by Actor, channel string) (string, time.Time, error) {
	token := stagedoor.NewPanelToken()
	expires := s.now().Add(stagedoor.InviteTTL)
	if err := s.Store.CreatePanelInvite(ctx, channel, stagedoor.TokenDigest(token), expires); err != nil {
		return "", time.Time{}, err
	}
	s.audited(ctx, by, "panel invite created", channel)
	return token, expires, nil
}

// AcceptInvite spends an invite token: the channel's streamer account gets password
// (and is created if needed), and its earlier sessions end. A weak password is an
// *stagedoor.InvalidError and leaves the invite usable; stagedoor.ErrNotFound when the
// token is unknown, used or expired; stagedoor.ErrConflict when an operator holds the
// channel's name.
func (s *Service) AcceptInvite(ctx context.Context, by Actor, token, channel, password string) (stagedoor.PanelAccount, error) {
	hash, err := panelHash(channel, password)
	if err != nil {
		return stagedoor.PanelAccount{}, err
	}
	a, err := s.Store.UsePanelInvite(ctx, stagedoor.TokenDigest(token), hash)
	if err != nil {
		return a, err
	}
	s.audited(ctx, by, "panel password set by invite", a.Channel)
	return a, nil
}

// SetPanelPassword replaces the panel password of the account a and ends every session
// of it. The caller has verified the old password. *stagedoor.InvalidError for a weak
// password, stagedoor.ErrNotFound for an unknown account.
func (s *Service) SetPanelPassword(ctx context.Context, by Actor, a stagedoor.PanelAccount, password string) error {
	hash, err := panelHash(a.Name, password)
	if err != nil {
		return err
	}
	if err := s.Store.SetPanelPassword(ctx, a.Name, hash); err != nil {
		return err
	}
	s.audited(ctx, by, "panel password changed "+a.Name, a.Channel)
	return nil
}

// SignOutEverywhere ends every session of the account a. stagedoor.ErrNotFound for an
// unknown account.
func (s *Service) SignOutEverywhere(ctx context.Context, by Actor, a stagedoor.PanelAccount) error {
	if _, err := s.Store.EndPanelSessions(ctx, a.Name); err != nil {
		return err
	}
	s.audited(ctx, by, "panel signed out everywhere "+a.Name, a.Channel)
	return nil
}

func panelHash(name, password string) (string, error) {
	if err := stagedoor.ValidPanelPassword(name, password); err != nil {
		return "", err
	}
	return stagedoor.HashPassword(password, stagedoor.DefaultCost)
}
