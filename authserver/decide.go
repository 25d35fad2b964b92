package authserver

import (
	"context"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/url"

	"github.com/stagedoor/stagedoor"
)

// Path kinds, as logged in path_kind.
const (
	PathKey    = stagedoor.PathKey
	PathPublic = stagedoor.PathPublic
	PathOther  = stagedoor.PathOther
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

// Policy is what the decision depends on besides the request and the database.
type Policy struct {
	// PublicReadProtocols lists the protocols that may read a public channel path.
	// Empty means HLS only (the seed: "only allow playback via HTTP/HLS").
	PublicReadProtocols []string
	// Relay is the credential of the alias relay: MediaMTX pulls live/<key> over RTSP
	// from loopback with it to republish the stream as live/<name>. Unset: no relay reads.
	Relay Secret
	// Admin is the operator credential Stagedoor uses for MediaMTX's API, metrics and
	// pprof, accepted from loopback only. Unset: those actions are always denied.
	Admin Secret
	// Passwords verifies user/password publishing. Nil: only stream keys and no-auth
	// streams can publish.
	Passwords *Passwords
}

func (p Policy) publicRead(protocol string) bool {
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

// Credentials is the read-only lookup the decision needs.
type Credentials interface {
	// UserByKeyDigest returns stagedoor.ErrNotFound for an unknown key.
	UserByKeyDigest(ctx context.Context, d stagedoor.Digest) (stagedoor.KeyOwner, error)
	// StreamByName returns stagedoor.ErrNotFound for an unknown stream name.
	StreamByName(ctx context.Context, name string) (stagedoor.Stream, error)
}

// Decision is the outcome of one auth request, with allowlisted fields for the log.
type Decision struct {
	Allow    bool
	Status   int
	Reason   string
	PathKind string
	User     string
	KeyFP    string
}

// Reasons of Stagedoor's own internal clients.
const (
	reasonRelay = "relay"
	reasonAdmin = "admin"
)

// reasonUnhealthy denies everything while the database fails its health probe.
const reasonUnhealthy = "database unhealthy"

func deny(status int, reason string) Decision {
	return Decision{Status: status, Reason: reason}
}

func isLoopback(ip string) bool {
	a := net.ParseIP(ip)
	return a != nil && a.IsLoopback()
}

// Decide is the whole policy. It denies unless one rule explicitly allows; an error
// from the lookup is a deny with 500 (503 when the deadline passed).
func Decide(ctx context.Context, req Request, creds Credentials, pol Policy) Decision {
	kind, rest := stagedoor.ParsePath(req.Path)
	d := decide(ctx, req, kind, rest, creds, pol)
	d.PathKind = kind
	if req.Path == "" {
		d.PathKind = ""
	}
	return d
}

func decide(ctx context.Context, req Request, kind, rest string, creds Credentials, pol Policy) Decision {
	if req.Protocol != "" && !knownProtocols[req.Protocol] {
		return deny(http.StatusUnauthorized, "unknown protocol")
	}
	switch req.Action {
	case ActionPublish:
		if !ingestProtocols[req.Protocol] {
			return deny(http.StatusUnauthorized, "protocol cannot publish")
		}
		switch kind {
		case PathKey:
			return decideKey(ctx, rest, "", creds)
		case PathPublic:
			return decidePublic(ctx, req, rest, creds, pol)
		}
		return deny(http.StatusUnauthorized, "publish outside a Stagedoor path")

	case ActionRead:
		switch kind {
		case PathKey:
			// Only the alias relay reads a key path: RTSP, from loopback, with its secret.
			if req.Protocol == "rtsp" && isLoopback(req.IP) && pol.Relay.matches(req.User, req.Password) {
				return Decision{Allow: true, Status: http.StatusOK, Reason: reasonRelay, User: pol.Relay.User}
			}
			return deny(http.StatusUnauthorized, "key path read")
		case PathPublic:
			if pol.publicRead(req.Protocol) {
				return Decision{Allow: true, Status: http.StatusOK, Reason: "public read", User: rest}
			}
			return deny(http.StatusUnauthorized, "protocol not allowed for public read")
		}
		return deny(http.StatusUnauthorized, "unknown path")

	case ActionPlayback, ActionAPI, ActionMetrics, ActionPprof:
		if req.Path != "" && req.Action != ActionPlayback {
			return deny(http.StatusUnauthorized, "unexpected path")
		}
		if isLoopback(req.IP) && pol.Admin.matches(req.User, req.Password) {
			return Decision{Allow: true, Status: http.StatusOK, Reason: reasonAdmin, User: pol.Admin.User}
		}
		return deny(http.StatusUnauthorized, "admin only")
	}
	return deny(http.StatusUnauthorized, "unknown action")
}

// presentedKey finds a stream key offered for a publish on a public name: ?key= in the
// query (RTMP, RTSP), or as the password or bearer token (SRT, RTSP Basic, WHIP).
func presentedKey(req Request) (string, bool) {
	if q, err := url.ParseQuery(req.Query); err == nil {
		if k := q.Get("key"); k != "" {
			return k, true
		}
	}
	for _, s := range []string{req.Password, req.Token} {
		if stagedoor.IsKey(s) {
			return s, true
		}
	}
	return "", false
}

// decidePublic decides a publish straight to a public name live/<name>: with the owner's
// stream key in the query or as the password, with the stream owner's user and password
// (plaintext or its bcrypt hash), or with nothing for a no-auth stream.
func decidePublic(ctx context.Context, req Request, name string, creds Credentials, pol Policy) Decision {
	if key, ok := presentedKey(req); ok {
		if !stagedoor.IsKey(key) {
			return deny(http.StatusUnauthorized, "malformed key")
		}
		if req.User != "" && req.User != name {
			return deny(http.StatusUnauthorized, "user does not own this name")
		}
		return decideKey(ctx, key, name, creds)
	}
	s, err := creds.StreamByName(ctx, name)
	switch {
	case errors.Is(err, stagedoor.ErrNotFound):
		return deny(http.StatusUnauthorized, "unknown stream")
	case err != nil:
		return lookupFailed(ctx, "")
	case !s.Active:
		return Decision{Status: http.StatusUnauthorized, Reason: "inactive user", User: s.UserName}
	case !s.AuthRequired:
		return Decision{Allow: true, Status: http.StatusOK, Reason: "no-auth stream", User: s.UserName}
	case req.User == "":
		return deny(http.StatusUnauthorized, "missing credentials")
	case req.User != s.UserName:
		return deny(http.StatusUnauthorized, "user does not own this stream")
	case pol.Passwords == nil:
		return deny(http.StatusUnauthorized, "passwords disabled")
	}
	d := pol.Passwords.Verify(s.UserName, req.IP, s.PasswordHash, req.Password)
	d.User = s.UserName
	return d
}

func lookupFailed(ctx context.Context, fp string) Decision {
	d := deny(http.StatusInternalServerError, "lookup failed")
	if ctx.Err() != nil {
		d = deny(http.StatusServiceUnavailable, "deadline exceeded")
	}
	d.KeyFP = fp
	return d
}

// decideKey allows a publish with a known key of an active user; on a public name
// (owner != "") the key must belong to the user of that name.
func decideKey(ctx context.Context, key, owner string, creds Credentials) Decision {
	dg := stagedoor.KeyDigest(key)
	o, err := creds.UserByKeyDigest(ctx, dg)
	switch {
	case errors.Is(err, stagedoor.ErrNotFound):
		return Decision{Status: http.StatusUnauthorized, Reason: "unknown key", KeyFP: dg.Fingerprint()}
	case err != nil:
		return lookupFailed(ctx, dg.Fingerprint())
	case owner != "" && o.UserName != owner:
		return Decision{Status: http.StatusUnauthorized, Reason: "key of another user", KeyFP: o.Fingerprint}
	case !o.Active:
		return Decision{Status: http.StatusUnauthorized, Reason: "inactive user", User: o.UserName, KeyFP: o.Fingerprint}
	}
	return Decision{Allow: true, Status: http.StatusOK, Reason: "stream key", User: o.UserName, KeyFP: o.Fingerprint}
}
