package plugin

import (
	"context"
	"fmt"
	"net/url"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/policy"
)

// Relay says how MediaMTX pulls a key path to republish it under the public name:
// the alias is a runtime path entry live/<name> whose source is
// rtsp://User:Password@RTSPAddress/live/<key> (mechanism M1 in docs/mediamtx.md: no
// transcoding, no extra process, no key in any argv). Auth lets only this credential,
// over RTSP from loopback, read a key path.
type Relay struct {
	User, Password string
	// RTSPAddress is MediaMTX's RTSP listener as seen from MediaMTX, e.g. 127.0.0.1:8554.
	RTSPAddress string
}

func (r Relay) sourceURL(keyPath string) string {
	u := url.URL{Scheme: "rtsp", User: url.UserPassword(r.User, r.Password), Host: r.RTSPAddress, Path: "/" + keyPath}
	return u.String()
}

// isOurs reports whether a configured source is one of our aliases (any relay secret,
// so aliases made by an earlier run are recognised and replaced).
func (r Relay) isOurs(source string) bool {
	u, err := url.Parse(source)
	return err == nil && u.Scheme == "rtsp" && u.User != nil && u.User.Username() == r.User && u.Host == r.RTSPAddress
}

type aliasConfig struct {
	Source         string `json:"source"`
	SourceOnDemand bool   `json:"sourceOnDemand"`
	RTSPTransport  string `json:"rtspTransport"`
}

// aliasSourceType is how MediaMTX reports the source of an alias entry (an RTSP pull).
const aliasSourceType = "rtspSource"

// heldByDirectIngest reports whether live/<name> carries a publisher of its own: adding
// the alias entry would recreate that path and drop the publisher.
//
// It lists the paths rather than asking for the one: MediaMTX logs "ERR [API] path not
// found" for a paths/get of a path it does not have, and at a key path's first publish
// the public path does not exist yet.
func (m *Manager) heldByDirectIngest(ctx context.Context, name string) bool {
	paths, err := m.api.Paths(ctx)
	if err != nil {
		return false
	}
	for _, p := range paths {
		if p.Name == stagedoor.LivePrefix+name {
			return p.Available && p.Source != nil && p.Source.Type != aliasSourceType
		}
	}
	return false
}

// publicKind is the claim kind of a publish on a public name: LiveKey when a stream key
// admitted it (the RTMP front's renamed publish, ?key=, the key as password or token), so
// that an encoder reconnecting with its key through another node gets back on at once, as
// on a key path; LiveDirect (first wins) for a password, its hash or no credentials.
func publicKind(l stagedoor.LiveState) string {
	if l.KeyDigest != nil {
		return stagedoor.LiveKey
	}
	return stagedoor.LiveDirect
}

// heldElsewhere is a claim another live node refused (it keeps the name).
type heldElsewhere struct{ name, holder string }

func (e *heldElsewhere) Error() string { return e.name + " is live on node " + e.holder }

// reason is the kick's reason for the local publisher that lost the claim.
func (e *heldElsewhere) reason() string { return policy.ReasonHeldElsewhere + e.holder }

// setLive records live as this node's, published as kind: a claim (cluster.md §3). Only
// a fresh available event may take a stream-key name over from another node (takeover);
// a reconcile never does, so that two nodes cannot take a name back and forth. A name
// another live node keeps is a *heldElsewhere.
func (m *Manager) setLive(ctx context.Context, live stagedoor.LiveState, kind string, takeover bool) error {
	live.NodeID, live.Kind = m.NodeID, kind
	c, err := m.store.Claim(ctx, live, takeover)
	if err != nil {
		return err
	}
	if !c.Won {
		return &heldElsewhere{name: live.Name, holder: c.Holder}
	}
	// The publish MakeRoom held the name for is on: should another node take the name
	// over later, this one serves it from there at once.
	m.holds.release(live.Name)
	return nil
}

// goLiveAliased marks the owner's channel live and points the alias at keyPath.
func (m *Manager) goLiveAliased(ctx context.Context, live stagedoor.LiveState, keyPath string, takeover bool) error {
	if err := m.setLive(ctx, live, stagedoor.LiveKey, takeover); err != nil {
		return err
	}
	if err := m.store.TouchKey(ctx, live.KeyID); err != nil {
		return err
	}
	conf := aliasConfig{Source: m.relay.sourceURL(keyPath), SourceOnDemand: false, RTSPTransport: "tcp"}
	if err := m.api.ReplacePathConfig(ctx, stagedoor.LivePrefix+live.Name, conf); err != nil {
		return fmt.Errorf("set alias of %s: %w", live.Name, err)
	}
	return nil
}
