// Package storetest is the conformance suite for Stagedoor's storage backends: every
// behaviour the service relies on, checked through the methods alone, so that both
// backends of package store, SQLite and PostgreSQL, answer to one contract (including the
// cluster's: claims, leases, sweeps, outbox claims). It holds no SQL and knows no
// backend. It is imported only by tests: a backend's test calls Run with a function that
// opens a fresh, empty store.
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
)

// Store is what a backend provides: every exported method of *store.DB except Close and
// what only SQLite has (its pool, pragmas and file). Unknown names are
// stagedoor.ErrNotFound, taken names stagedoor.ErrConflict and malformed input a
// *stagedoor.InvalidError; a refused call changes nothing. Times come back in UTC, to
// the second at least.
type Store interface {
	// CreateUser creates an active user and one key labelled "default"; *InvalidError for
	// a bad name, ErrConflict when a user or stream holds the name.
	CreateUser(ctx context.Context, name string) (stagedoor.NewUser, error)
	// UserByName returns the user with the live state of its own channel; ErrNotFound.
	UserByName(ctx context.Context, name string) (stagedoor.User, error)
	// PasswordHash returns the user's password hash, "" when none; ErrNotFound.
	PasswordHash(ctx context.Context, name string) (string, error)
	// Users returns every user ordered by name.
	Users(ctx context.Context) ([]stagedoor.User, error)
	// SetActive bans or unbans; a change of state queues user.banned or user.unbanned.
	// ErrNotFound for an unknown user.
	SetActive(ctx context.Context, name string, active bool) error
	// SetPasswordHash replaces the user's password hash; *InvalidError for a malformed
	// hash or a cost outside [MinCost, MaxCost], ErrNotFound for an unknown user.
	SetPasswordHash(ctx context.Context, name, hash string) error

	// AddKey issues a labelled key; *InvalidError for a bad label, ErrNotFound.
	AddKey(ctx context.Context, name, label string) (stagedoor.IssuedKey, error)
	// Keys lists the user's keys oldest first, never the keys themselves; ErrNotFound.
	Keys(ctx context.Context, name string) ([]stagedoor.KeyInfo, error)
	// RevokeKey revokes the user's key with this fingerprint and queues key.rotated;
	// ErrNotFound when the user has no such key.
	RevokeKey(ctx context.Context, name, fingerprint string, r stagedoor.Revocation) error
	// ResetKeys is ResetKeysWith without keep-live, returning the key only.
	ResetKeys(ctx context.Context, name string) (string, error)
	// ResetKeysWith replaces every key of the user with one new key and queues
	// key.rotated; without KeepLive it also ends the keep-live of the user's keys revoked
	// earlier. ErrNotFound.
	ResetKeysWith(ctx context.Context, name string, r stagedoor.Revocation) (stagedoor.IssuedKey, error)
	// ResetAllKeys gives every user one new key, revoking all others, in one step; the
	// keys come ordered by user. Without KeepLive it also ends every earlier keep-live.
	ResetAllKeys(ctx context.Context, r stagedoor.Revocation) ([]stagedoor.IssuedKey, error)
	// UserByKeyDigest returns the owner of a key, banned or not; ErrNotFound.
	UserByKeyDigest(ctx context.Context, d stagedoor.Digest) (stagedoor.KeyOwner, error)
	// RevokedKey returns what is kept of a revoked key; ErrNotFound if never revoked.
	RevokedKey(ctx context.Context, d stagedoor.Digest) (stagedoor.RevokedKeyInfo, error)
	// TouchKey records that the key went live now; a key revoked meanwhile is no error.
	TouchKey(ctx context.Context, keyID int64) error

	// CreateStream creates a stream; *InvalidError for a bad name, ErrNotFound for an
	// unknown owner, ErrConflict when another user or a stream holds the name.
	CreateStream(ctx context.Context, name, owner string, authRequired bool) (stagedoor.Stream, error)
	// StreamByName returns the stream with its owner's state and hash; ErrNotFound.
	StreamByName(ctx context.Context, name string) (stagedoor.Stream, error)
	// Streams lists the owner's streams (all when owner is "") by name; ErrNotFound.
	Streams(ctx context.Context, owner string) ([]stagedoor.Stream, error)
	// SetStreamAuth turns a stream's authentication on or off; ErrNotFound.
	SetStreamAuth(ctx context.Context, name string, required bool) error
	// DeleteStream removes a stream; ErrNotFound.
	DeleteStream(ctx context.Context, name string) error
	// ChannelByName resolves a public name (stream or user) to its owner; ErrNotFound.
	ChannelByName(ctx context.Context, name string) (stagedoor.Channel, error)

	// SetLive marks a name live on a node's source (Claim with takeover): the same node
	// and source keep their Since, another source of the node replaces it; going live from
	// offline queues stream.started. ErrConflict when another live node keeps the name.
	SetLive(ctx context.Context, l stagedoor.LiveState) error
	// Claim marks a name live for l.NodeID unless another node keeps it: a row is taken
	// over when it is the same node's, when both are key publishes and takeover is set,
	// or when its node's lease ran out. It renews the claimer's lease and returns the
	// holder after the claim; *InvalidError for a bad node id or kind.
	Claim(ctx context.Context, l stagedoor.LiveState, takeover bool) (stagedoor.Claim, error)
	// SetOffline takes a name offline if node carries it on sourceID, or on any source
	// when sourceID is "", queueing stream.stopped; it reports whether anything changed.
	// Another node's name is never touched.
	SetOffline(ctx context.Context, name, node, sourceID string) (bool, error)
	// LiveByName returns the live state of a name; ErrNotFound while offline.
	LiveByName(ctx context.Context, name string) (stagedoor.LiveState, error)
	// LiveStates returns every live name ordered by name.
	LiveStates(ctx context.Context) ([]stagedoor.LiveState, error)
	// ClearLive takes every name of node offline, queueing stream.stopped for each.
	ClearLive(ctx context.Context, node string) error

	// RegisterNode records a node as started now at an RTSP address, with a fresh lease.
	RegisterNode(ctx context.Context, id, rtspAddr string) error
	// Nodes lists every known node by id.
	Nodes(ctx context.Context) ([]stagedoor.Node, error)
	// SweepExpired frees the names of dead nodes, one stream.stopped each, and says how
	// many.
	SweepExpired(ctx context.Context) (int64, error)

	// PolicyGeneration changes, to a value it never had, whenever a credential is added,
	// changed or revoked, and only then.
	PolicyGeneration(ctx context.Context) (int64, error)

	// AddEvent queues an event, due now.
	AddEvent(ctx context.Context, event, user, channel string) error
	// DueEvents returns up to limit unfinished events that are due, oldest first.
	DueEvents(ctx context.Context, limit int) ([]stagedoor.OutboxEvent, error)
	// FinishEvent marks an event delivered or given up: it is never due again.
	FinishEvent(ctx context.Context, id int64) error
	// RetryEvent counts an attempt and makes the event due again after delay, never sooner.
	RetryEvent(ctx context.Context, id int64, delay time.Duration) error
	// PruneEvents deletes finished events older than before; pending ones stay.
	PruneEvents(ctx context.Context, before time.Time) error
	// ClaimEvents claims up to limit due, unclaimed events for owner for hold, oldest
	// first; concurrent claimers never get the same event.
	ClaimEvents(ctx context.Context, owner string, limit int, hold time.Duration) ([]stagedoor.OutboxEvent, error)
	// RequestKick asks a node to kick a publisher (an operator's kick made elsewhere).
	RequestKick(ctx context.Context, r stagedoor.KickRequest) error
	// TakeKickRequests removes and returns a node's kick requests under a minute old,
	// oldest first, and drops older ones.
	TakeKickRequests(ctx context.Context, node string) ([]stagedoor.KickRequest, error)

	// AppendAudit writes entries in one step.
	AppendAudit(ctx context.Context, entries []stagedoor.AuditEntry) error
	// Audit returns matching entries newest first, never nil (the admin API sends the
	// slice as a JSON array).
	Audit(ctx context.Context, f stagedoor.AuditFilter) ([]stagedoor.AuditEntry, error)
	// PruneAudit deletes entries older than before and says how many.
	PruneAudit(ctx context.Context, before time.Time) (int64, error)

	// CreateOperator creates an operator's panel account with a bcrypt hash;
	// *InvalidError for a bad name or a hash that is not bcrypt-shaped, ErrConflict when
	// a panel account holds the name.
	CreateOperator(ctx context.Context, name, hash string) (stagedoor.PanelAccount, error)
	// PanelAccount returns an account and its password hash; ErrNotFound.
	PanelAccount(ctx context.Context, name string) (stagedoor.PanelAccount, string, error)
	// PanelAccounts lists every panel account by name, never nil.
	PanelAccounts(ctx context.Context) ([]stagedoor.PanelAccount, error)
	// SetPanelPassword replaces an account's hash and ends all its sessions;
	// *InvalidError for a malformed hash, ErrNotFound.
	SetPanelPassword(ctx context.Context, name, hash string) error
	// CreatePanelSession records a session (by digest) created and seen now;
	// ErrNotFound for an unknown account, ErrInactive for a banned streamer's.
	CreatePanelSession(ctx context.Context, name string, d stagedoor.Digest) error
	// PanelSession returns a session and its account; ErrNotFound when unknown, ended,
	// or its streamer's channel is banned.
	PanelSession(ctx context.Context, d stagedoor.Digest) (stagedoor.PanelSession, error)
	// TouchPanelSession moves a session's SeenAt to now; an ended session is no error.
	TouchPanelSession(ctx context.Context, d stagedoor.Digest) error
	// EndPanelSession ends one session; an ended session is no error.
	EndPanelSession(ctx context.Context, d stagedoor.Digest) error
	// EndPanelSessions ends every session of an account and counts them; ErrNotFound.
	EndPanelSessions(ctx context.Context, name string) (int64, error)
	// PrunePanelSessions deletes sessions created before createdBefore or not seen since
	// seenBefore.
	PrunePanelSessions(ctx context.Context, createdBefore, seenBefore time.Time) (int64, error)
	// CreatePanelInvite records an invite (by digest) for a channel's streamer;
	// ErrNotFound for an unknown channel.
	CreatePanelInvite(ctx context.Context, channel string, d stagedoor.Digest, expires time.Time) error
	// PanelInvite returns a usable invite; ErrNotFound when unknown, used or expired.
	PanelInvite(ctx context.Context, d stagedoor.Digest) (stagedoor.PanelInvite, error)
	// UsePanelInvite spends an invite: sets (creating if needed) the channel's streamer
	// account's hash and ends its sessions. ErrNotFound when unknown, used or expired,
	// ErrConflict when an operator holds the channel's name; a refusal changes nothing.
	UsePanelInvite(ctx context.Context, d stagedoor.Digest, hash string) (stagedoor.PanelAccount, error)
	// A ban (SetActive false) ends every session of the channel's streamer.

	// Ping checks that the store answers a read.
	Ping(ctx context.Context) error
	// ProbeWrite proves that the store takes a write now, renewing node owner's lease.
	ProbeWrite(ctx context.Context, owner string) error
}

// suite runs the cases against stores from open.
type suite struct {
	open func(t *testing.T, now func() time.Time) Store
}

// Run checks the contract of the stores open returns. open must return a new, empty
// store that reads the current time from now and is closed when t ends; the suite moves
// that clock by hand, in whole seconds. Each case opens its own store. The concurrent
// soak (a few seconds) is skipped under -short.
func Run(t *testing.T, open func(t *testing.T, now func() time.Time) Store) {
	s := suite{open: open}
	for _, group := range []struct {
		name string
		run  func(*testing.T, suite)
	}{
		{"CreateUser", testCreateUser},
		{"UserByName", testUserByName},
		{"UserByKeyDigest", testUserByKeyDigest},
		{"SetActive", testSetActive},
		{"SetPasswordHash", testSetPasswordHash},
		{"AddKey", testAddKey},
		{"Keys", testKeys},
		{"RevokeKey", testRevokeKey},
		{"ResetKeys", testResetKeys},
		{"ResetKeysWith", testResetKeysWith},
		{"ResetAllKeys", testResetAllKeys},
		{"ResetEndsKeepLive", testResetEndsKeepLive},
		{"CreateStream", testCreateStream},
		{"StreamByName", testStreamByName},
		{"Streams", testStreams},
		{"SetStreamAuth", testSetStreamAuth},
		{"DeleteStream", testDeleteStream},
		{"ChannelByName", testChannelByName},
		{"SetLive", testSetLive},
		{"SetOffline", testSetOffline},
		{"LiveStates", testLiveStates},
		{"LiveEvents", testLiveEvents},
		{"Outbox", testOutbox},
		{"Audit", testAudit},
		{"PruneAudit", testPruneAudit},
		{"PolicyGeneration", testPolicyGeneration},
		{"Health", testHealth},
		{"PanelAccounts", testPanelAccounts},
		{"PanelSessions", testPanelSessions},
		{"PanelInvites", testPanelInvites},
		{"Concurrency", testConcurrency},
		{"Cluster", testCluster},
	} {
		t.Run(group.name, func(t *testing.T) { group.run(t, s) })
	}
}
