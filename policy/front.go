package policy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/url"
	"sync"
	"time"

	"github.com/stagedoor/stagedoor"
)

// FrontParam is the query parameter that carries a front grant on the publish the RTMP
// front forwards to MediaMTX: live/<name>?FrontParam=<grant>.
const FrontParam = "sd"

// MinGrantLen is the shortest grant Mint returns: 16 characters of base64url, 96 bits.
const MinGrantLen = 16

// FrontGrants let the RTMP front rename at ingest. The front decides a publish itself
// (DecideIngest) and forwards it to MediaMTX under the public name with a grant instead
// of the streamer's key or password; MediaMTX's auth call presents the grant, and
// Decide answers with the front's verdict. A grant is random, held only in this process,
// used once, valid for GrantTTL, and only for its public name and client address.
type FrontGrants struct {
	// TTL is how long a grant waits for MediaMTX's auth call. Default 10 s, MediaMTX's
	// readTimeout.
	TTL time.Duration
	// Max bounds the grants waiting at once; Mint refuses beyond it. Default 10,000.
	Max int
	// Now is the clock; tests replace it.
	Now func() time.Time

	mu     sync.Mutex
	grants map[string]grant
}

type grant struct {
	name, ip  string
	expires   time.Time
	verdict   Verdict
	admission Admission
}

// NewFrontGrants returns FrontGrants with the defaults.
func NewFrontGrants() *FrontGrants {
	return &FrontGrants{TTL: 10 * time.Second, Max: 10_000, Now: time.Now, grants: map[string]grant{}}
}

// Mint returns a grant of n characters (at least MinGrantLen) for a publish on live/name
// from ip that DecideIngest allowed with v and adm; "" when too many are waiting.
func (f *FrontGrants) Mint(name, ip string, n int, v Verdict, adm Admission) string {
	n = max(n, MinGrantLen)
	raw := make([]byte, (n*6+7)/8)
	_, _ = rand.Read(raw) // never fails (crypto/rand)
	tok := base64.RawURLEncoding.EncodeToString(raw)[:n]
	now := f.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.grants) >= f.Max {
		for k, g := range f.grants {
			if now.After(g.expires) {
				delete(f.grants, k)
			}
		}
		if len(f.grants) >= f.Max {
			return ""
		}
	}
	f.grants[tok] = grant{name: name, ip: ip, expires: now.Add(f.TTL), verdict: v, admission: adm}
	return tok
}

// redeem takes grant tok for a publish on live/name from ip: it is gone after the first
// call, whatever the outcome.
func (f *FrontGrants) redeem(tok, name, ip string) (Verdict, Admission, bool) {
	if f == nil {
		return Verdict{}, Admission{}, false
	}
	now := f.Now()
	f.mu.Lock()
	g, ok := f.grants[tok]
	delete(f.grants, tok)
	f.mu.Unlock()
	if !ok || now.After(g.expires) ||
		subtle.ConstantTimeCompare([]byte(g.name), []byte(name)) != 1 || g.ip != ip {
		return Verdict{}, Admission{}, false
	}
	return g.verdict, g.admission, true
}

// Waiting is how many grants are minted and not yet redeemed or swept.
func (f *FrontGrants) Waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.grants)
}

// frontGrant returns the grant in a publish's query, if any.
func frontGrant(a Attempt) (string, bool) {
	q, err := url.ParseQuery(a.Query)
	if err != nil {
		return "", false
	}
	v, ok := q[FrontParam]
	if !ok {
		return "", false
	}
	if len(v) != 1 {
		return "", true // present but ambiguous: refused
	}
	return v[0], true
}

// DecideIngest decides a publish for the RTMP front, which renames at ingest: as Decide
// would decide the same attempt, and on allow it also returns the public name the stream
// goes out under and what admitted it. A key path live/<key> goes out under its owner's
// name; live/<name> with credentials under that name. A front grant is not accepted here:
// only MediaMTX presents grants.
func (p *Policy) DecideIngest(ctx context.Context, a Attempt) (Verdict, string, Admission) {
	kind, rest := stagedoor.ParsePath(a.Path)
	if p.Healthy != nil && p.Healthy() != nil {
		v := busy(ReasonUnhealthy)
		v.PathKind = kind
		return v, "", Admission{}
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	v, name, adm := p.decideIngest(ctx, a, kind, rest)
	v.PathKind = kind
	if !v.Allow {
		return v, "", Admission{}
	}
	return v, name, adm
}

func (p *Policy) decideIngest(ctx context.Context, a Attempt, kind, rest string) (Verdict, string, Admission) {
	switch {
	case a.Action != ActionPublish || a.Protocol != "rtmp":
		return deny("not an RTMP publish"), "", Admission{}
	case kind == stagedoor.PathKey:
		dg := stagedoor.KeyDigest(rest)
		v, adm := p.firstWins("", p.decideKey(ctx, rest, ""), Admission{KeyDigest: &dg})
		return v, v.User, adm
	case kind == stagedoor.PathPublic:
		if _, ok := frontGrant(a); ok {
			return deny("front grant from a client"), "", Admission{}
		}
		v, adm := p.decidePublic(ctx, a, rest)
		v, adm = p.firstWins(rest, v, adm)
		return v, rest, adm
	}
	return deny("publish outside a Stagedoor path"), "", Admission{}
}

func (p *Policy) timeout() time.Duration {
	if p.Timeout <= 0 {
		return 2 * time.Second
	}
	return p.Timeout
}
