// Package policy decides who may do what, whatever the transport: whether a publish,
// read, playback or admin action may start (Decide) and whether a running publish may
// continue (StillAllowed). MediaMTX's HTTP auth (authserver), the RTMP front and the
// reconciler (plugin) ask the same questions here. It imports no net/http: a Verdict is
// not a status code, and each adapter maps it to its own wire.
//
// It also holds the two things that keep answers fast on MediaMTX's serial auth path:
// the credential cache (CachedCredentials) and the password limiter (Passwords).
package policy

import (
	"crypto/subtle"
	"net"
	"net/netip"
	"time"

	"github.com/stagedoor/stagedoor"
)

// Actions an Attempt may ask for (the names MediaMTX v1.21.0 uses).
const (
	ActionPublish  = "publish"
	ActionRead     = "read"
	ActionPlayback = "playback"
	ActionAPI      = "api"
	ActionMetrics  = "metrics"
	ActionPprof    = "pprof"
)

// Attempt is one request to act on a path, with whatever credentials came with it.
type Attempt struct {
	Action string
	// Path is the MediaMTX path name, e.g. live/benw or live/<key>; "" for api, metrics
	// and pprof.
	Path string
	// Protocol is rtmp, rtsp, srt, webrtc, hls or moq; "" for api, metrics and pprof.
	Protocol string
	// User, Password and Token are the credentials as presented (Basic auth, URL query
	// user/pass, SRT streamid, Bearer token).
	User, Password, Token string
	// Query is the raw query string of the request (?key=… is read from it).
	Query string
	// IP is the client's address: limits and loopback-only rules apply to it.
	IP string
	// SessionID is the transport's id for the session (MediaMTX's conn or session id),
	// "" when unknown.
	SessionID string
}

// Verdict is the outcome of an Attempt or of a StillAllowed check. It holds allowlisted
// fields only: names and fingerprints, never a secret or a raw path.
type Verdict struct {
	// Allow is true only when one rule explicitly allowed.
	Allow bool
	// Busy marks a refusal that says nothing about the credentials: a deadline passed,
	// the database is unhealthy, or bcrypt is saturated. Retrying later may succeed.
	Busy bool
	// Fault marks a refusal caused by an internal error (a failed lookup, an unusable
	// stored hash).
	Fault bool
	// Reason is a short, fixed phrase for logs, audit and metrics.
	Reason string
	// PathKind is stagedoor.PathKey, PathPublic or PathOther ("" without a path).
	PathKind string
	// User is the user the credential belongs to, when known.
	User   string
	UserID int64
	// KeyID and KeyFP identify the stream key that was presented, when one was.
	KeyID int64
	KeyFP string
}

func allow(reason string) Verdict { return Verdict{Allow: true, Reason: reason} }

func deny(reason string) Verdict { return Verdict{Reason: reason} }

func busy(reason string) Verdict { return Verdict{Busy: true, Reason: reason} }

func fault(reason string) Verdict { return Verdict{Fault: true, Reason: reason} }

// Reasons the adapters and the reconciler recognise.
const (
	// ReasonRelay and ReasonAdmin allow Stagedoor's own internal clients.
	ReasonRelay = "relay"
	ReasonAdmin = "admin"
	// ReasonPeer allows another node of a cluster to pull a public name this node holds.
	ReasonPeer = "peer"
	// ReasonUnhealthy denies every publish while the database fails its health probe.
	ReasonUnhealthy = "database unhealthy"
)

// Secret is a user/password pair Stagedoor gives to one of its own internal clients.
type Secret struct {
	User     string
	Password string
}

// matches compares in constant time; an unset secret never matches.
func (s Secret) matches(user, password string) bool {
	if s.User == "" || s.Password == "" {
		return false
	}
	u := subtle.ConstantTimeCompare([]byte(user), []byte(s.User))
	p := subtle.ConstantTimeCompare([]byte(password), []byte(s.Password))
	return u&p == 1
}

// inNets reports whether ip is in one of nets.
func inNets(ip string, nets []netip.Prefix) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

func isLoopback(ip string) bool {
	a := net.ParseIP(ip)
	return a != nil && a.IsLoopback()
}

// AuditEntry is the audit line of a publish decision: names and fingerprints, never a
// secret or a raw path.
func AuditEntry(a Attempt, v Verdict, at time.Time) stagedoor.AuditEntry {
	decision := "deny"
	if v.Allow {
		decision = "allow"
	}
	ip := a.IP
	if len(ip) > 64 {
		ip = ip[:64]
	}
	return stagedoor.AuditEntry{At: at, Kind: "publish", User: v.User, KeyFP: v.KeyFP, IP: ip,
		Protocol: a.Protocol, Decision: decision, Reason: v.Reason}
}
