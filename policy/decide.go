package policy

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"time"

	"github.com/stagedoor/stagedoor"
)

// Credentials is the read-only lookup the decisions need.
type Credentials interface {
	// UserByKeyDigest returns stagedoor.ErrNotFound for an unknown key.
	UserByKeyDigest(ctx context.Context, d stagedoor.Digest) (stagedoor.KeyOwner, error)
	// StreamByName returns stagedoor.ErrNotFound for an unknown stream name.
	StreamByName(ctx context.Context, name string) (stagedoor.Stream, error)
	// ChannelByName returns stagedoor.ErrNotFound for a name nobody owns.
	ChannelByName(ctx context.Context, name string) (stagedoor.Channel, error)
	// RevokedKey returns stagedoor.ErrNotFound for a digest that was never revoked.
	RevokedKey(ctx context.Context, d stagedoor.Digest) (stagedoor.RevokedKeyInfo, error)
}

// Policy is the whole policy: the rules in this package, the credentials they look up,
// and the settings below. Credentials is required; with only it set, stream keys and
// no-auth streams publish, public names play over HLS, and everything else is denied.
type Policy struct {
	// Credentials answers the lookups. Wrap the store in CachedCredentials: MediaMTX
	// waits for every auth answer, one at a time.
	Credentials Credentials
	// PublicReadProtocols lists the protocols that may read a public channel path.
	// Empty means HLS only (the seed: "only allow playback via HTTP/HLS").
	PublicReadProtocols []string
	// Relay is the credential of the alias relay: MediaMTX pulls live/<key> over RTSP
	// from loopback with it to republish the stream as live/<name>. Unset: no relay reads.
	Relay Secret
	// Peer is the credential other nodes of a cluster pull this node's public names with
	// (peer aliases: a node that does not hold live/<name> serves it from the node that
	// does), accepted over RTSP from PeerNets only. Unset: no peer reads.
	Peer Secret
	// PeerNets are the addresses peer reads may come from (--cluster-cidrs).
	PeerNets []netip.Prefix
	// Admin is the operator credential Stagedoor uses for MediaMTX's API, metrics and
	// pprof, accepted from loopback only. Unset: those actions are always denied.
	Admin Secret
	// Passwords verifies user/password publishing. Nil: only stream keys and no-auth
	// streams can publish.
	Passwords *Passwords
	// Healthy, if set, is asked before every publish decision; while it returns an error
	// every publish is refused as Busy (fail closed while the database cannot take writes
	// or be read). Reads and the admin's calls are decided as usual: none of them needs the
	// database (see SECURITY.md, "When the database fails").
	Healthy func() error
	// Timeout bounds every decision, database waits included. Default 2 s.
	Timeout time.Duration
	// HeldElsewhere, if set, says whether another live node of a cluster holds a public
	// name, and which (from an in-memory map, never a database call): a publish on it
	// that no stream key admits is refused at once, since a name is first wins across
	// nodes for passwords and no-auth streams (the live claim enforces it anyway; refusing
	// here spares the encoder MediaMTX's 2 s of analysis and a kick).
	HeldElsewhere func(name string) (node string, held bool)
	// KeysFirstWins (--cluster-key-takeover=false) applies first wins to stream-key
	// publishes too: a key publish of a name another live node holds is refused, where by
	// default the newest key publish takes the name over.
	KeysFirstWins bool
	// Front, if set, holds the grants of the RTMP front's renamed publishes (DecideIngest,
	// FrontGrants). Nil: a publish carrying a grant is refused.
	Front *FrontGrants
	// Admissions, if set, remembers what admitted each publish session on a public name
	// (a key as ?key=, password or token; a password), so that revoking that key or
	// changing that password ends the stream (StillAllowed). Nil: such streams end only
	// with a ban, a removed name, or a revoked ?key= key the hook saw in the query.
	Admissions *Admissions
}

// Admitted returns what admitted publish session id on a public name, while Admissions
// still remembers it: the hook and the reconciler copy it into the live state.
func (p *Policy) Admitted(id string) (Admission, bool) { return p.Admissions.Admitted(id) }

func (p *Policy) publicRead(protocol string) bool {
	if len(p.PublicReadProtocols) == 0 {
		return protocol == "hls"
	}
	for _, x := range p.PublicReadProtocols {
		if x == protocol {
			return true
		}
	}
	return false
}

// ingestProtocols are the protocols a streamer may publish with.
var ingestProtocols = map[string]bool{"rtmp": true, "rtsp": true, "srt": true, "webrtc": true}

// knownProtocols are the protocol values MediaMTX v1.21.0 sends; anything else is denied.
var knownProtocols = map[string]bool{"rtsp": true, "rtmp": true, "hls": true, "webrtc": true, "srt": true, "moq": true}

// Decide says whether an attempt may start. It denies unless one rule explicitly
// allows; a publish while the database is unhealthy, or any attempt whose lookup misses
// the deadline, is refused as Busy, and a failed lookup is a Fault.
func (p *Policy) Decide(ctx context.Context, a Attempt) Verdict {
	kind, rest := stagedoor.ParsePath(a.Path)
	var v Verdict
	if a.Action == ActionPublish && p.Healthy != nil && p.Healthy() != nil {
		v = busy(ReasonUnhealthy)
	} else {
		ctx, cancel := context.WithTimeout(ctx, p.timeout())
		defer cancel()
		v = p.decide(ctx, a, kind, rest)
	}
	v.PathKind = kind
	if a.Path == "" {
		v.PathKind = ""
	}
	return v
}

func (p *Policy) decide(ctx context.Context, a Attempt, kind, rest string) Verdict {
	if a.Protocol != "" && !knownProtocols[a.Protocol] {
		return deny("unknown protocol")
	}
	switch a.Action {
	case ActionPublish:
		if !ingestProtocols[a.Protocol] {
			return deny("protocol cannot publish")
		}
		switch kind {
		case stagedoor.PathKey:
			dg := stagedoor.KeyDigest(rest)
			v, _ := p.firstWins("", p.decideKey(ctx, rest, ""), Admission{KeyDigest: &dg})
			return v
		case stagedoor.PathPublic:
			v, adm := p.decidePublic(ctx, a, rest)
			v, adm = p.firstWins(rest, v, adm)
			if v.Allow {
				// An in-memory write only: the auth path never writes to the database.
				p.Admissions.Record(a.SessionID, adm)
			}
			return v
		}
		return deny("publish outside a Stagedoor path")

	case ActionRead:
		switch kind {
		case stagedoor.PathKey:
			// Only the alias relay reads a key path: RTSP, from loopback, with its secret.
			if a.Protocol == "rtsp" && isLoopback(a.IP) && p.Relay.matches(a.User, a.Password) {
				v := allow(ReasonRelay)
				v.User = p.Relay.User
				return v
			}
			return deny("key path read")
		case stagedoor.PathPublic:
			// Another node of the cluster pulling the public stream for its viewers. Only a
			// public name: key paths never leave the node that ingests them.
			if a.Protocol == "rtsp" && inNets(a.IP, p.PeerNets) && p.Peer.matches(a.User, a.Password) {
				if p.HeldElsewhere != nil {
					if _, held := p.HeldElsewhere(rest); held {
						// This node serves that name through a peer alias itself: a pull
						// from here would chain nodes, or loop while the name moves.
						return deny("peer read of a name another node holds")
					}
				}
				v := allow(ReasonPeer)
				v.User = rest
				return v
			}
			if p.publicRead(a.Protocol) {
				v := allow("public read")
				v.User = rest
				return v
			}
			return deny("protocol not allowed for public read")
		}
		return deny("unknown path")

	case ActionPlayback, ActionAPI, ActionMetrics, ActionPprof:
		if a.Path != "" && a.Action != ActionPlayback {
			return deny("unexpected path")
		}
		if isLoopback(a.IP) && p.Admin.matches(a.User, a.Password) {
			v := allow(ReasonAdmin)
			v.User = p.Admin.User
			return v
		}
		return deny("admin only")
	}
	return deny("unknown action")
}

// queryKeys returns the parameter names of a raw query, nil when it does not parse.
func queryKeys(raw string) []string {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	return keys
}

// presentedKey finds a stream key offered for a publish on a public name: ?key= in the
// query (RTMP, RTSP), or as the password or bearer token (SRT, RTSP Basic, WHIP).
func presentedKey(a Attempt) (string, bool) {
	if q, err := url.ParseQuery(a.Query); err == nil {
		if k := q.Get("key"); k != "" {
			return k, true
		}
	}
	for _, s := range []string{a.Password, a.Token} {
		if stagedoor.IsKey(s) {
			return s, true
		}
	}
	return "", false
}

// decidePublic decides a publish straight to a public name live/<name>: with the owner's
// stream key in the query or as the password, with the stream owner's user and password
// (plaintext or its bcrypt hash), or with nothing for a no-auth stream. The Admission
// says which credential that was, for StillAllowed.
func (p *Policy) decidePublic(ctx context.Context, a Attempt, name string) (Verdict, Admission) {
	if tok, ok := frontGrant(a); ok {
		// Minted by the RTMP front for this name and address after it decided the
		// streamer's own credentials; only over RTMP, and nothing else may come with it.
		if a.Protocol != "rtmp" || a.User != "" || a.Password != "" || a.Token != "" || len(queryKeys(a.Query)) != 1 {
			return deny("front grant with other credentials"), Admission{}
		}
		if v, adm, ok := p.Front.redeem(tok, name, a.IP); ok {
			return v, adm
		}
		return deny("front grant not valid"), Admission{}
	}
	if key, ok := presentedKey(a); ok {
		if !stagedoor.IsKey(key) {
			return deny("malformed key"), Admission{}
		}
		if a.User != "" && a.User != name {
			return deny("user does not own this name"), Admission{}
		}
		dg := stagedoor.KeyDigest(key)
		return p.decideKey(ctx, key, name), Admission{KeyDigest: &dg}
	}
	s, err := p.Credentials.StreamByName(ctx, name)
	switch {
	case errors.Is(err, stagedoor.ErrNotFound):
		return deny("unknown stream"), Admission{}
	case err != nil:
		return lookupFailed(ctx, ""), Admission{}
	case !s.Active:
		return Verdict{Reason: "inactive user", User: s.UserName, UserID: s.UserID}, Admission{}
	case !s.AuthRequired:
		return Verdict{Allow: true, Reason: "no-auth stream", User: s.UserName, UserID: s.UserID}, Admission{}
	case a.User == "":
		return deny("missing credentials"), Admission{}
	case a.User != s.UserName:
		return deny("user does not own this stream"), Admission{}
	case p.Passwords == nil:
		return deny("passwords disabled"), Admission{}
	}
	v := p.Passwords.Verify(s.UserName, a.IP, s.PasswordHash, a.Password)
	v.User, v.UserID = s.UserName, s.UserID
	// The hash that was current, not the password given: plaintext and hash alike are
	// retired by a new password.
	hd := stagedoor.HashDigest(s.PasswordHash)
	return v, Admission{PasswordDigest: &hd}
}

// ReasonHeldElsewhere (+ the node id) refuses a publish on a public name another live
// node holds, and is the reason of the kick of a publisher that lost the name to another
// node (plugin): one live session per public name, cluster-wide.
const ReasonHeldElsewhere = "live on node "

// firstWins turns an allowed publish on a public name (name; "" for a key path, whose
// name is its owner's) that no stream key admitted, or any with KeysFirstWins, into a
// refusal while another live node holds the name (HeldElsewhere).
func (p *Policy) firstWins(name string, v Verdict, adm Admission) (Verdict, Admission) {
	if !v.Allow || (adm.KeyDigest != nil && !p.KeysFirstWins) || p.HeldElsewhere == nil {
		return v, adm
	}
	if name == "" {
		name = v.User
	}
	if node, held := p.HeldElsewhere(name); held {
		return Verdict{Reason: ReasonHeldElsewhere + node, User: v.User, UserID: v.UserID}, Admission{}
	}
	return v, adm
}

func lookupFailed(ctx context.Context, fp string) Verdict {
	v := fault("lookup failed")
	if ctx.Err() != nil {
		v = busy("deadline exceeded")
	}
	v.KeyFP = fp
	return v
}

// decideKey allows a publish with a known key of an active user; on a public name
// (owner != "") the key must belong to the user of that name.
func (p *Policy) decideKey(ctx context.Context, key, owner string) Verdict {
	dg := stagedoor.KeyDigest(key)
	o, err := p.Credentials.UserByKeyDigest(ctx, dg)
	switch {
	case errors.Is(err, stagedoor.ErrNotFound):
		return Verdict{Reason: "unknown key", KeyFP: dg.Fingerprint()}
	case err != nil:
		return lookupFailed(ctx, dg.Fingerprint())
	case owner != "" && o.UserName != owner:
		return Verdict{Reason: "key of another user", KeyFP: o.Fingerprint}
	case !o.Active:
		return Verdict{Reason: "inactive user", User: o.UserName, UserID: o.UserID, KeyFP: o.Fingerprint}
	}
	return Verdict{Allow: true, Reason: "stream key", User: o.UserName, UserID: o.UserID, KeyID: o.KeyID, KeyFP: o.Fingerprint}
}
