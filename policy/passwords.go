package policy

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stagedoor/stagedoor"

	"golang.org/x/crypto/bcrypt"
)

// Passwords verifies publishing passwords without letting bcrypt stall MediaMTX, which
// waits for every auth answer serially (docs/threats.md §3.7):
//   - a bcrypt hash presented as the password is compared exactly, in constant time,
//     never passed to bcrypt (its cost would be read from the attacker's string); only
//     the per-address limit applies to it, since a wrong hash costs nothing and a
//     60-character hash cannot be guessed;
//   - recent successes are cached, keyed by SHA-256(user, password), so an encoder's
//     reconnect storm costs no bcrypt; an entry only counts while the stored hash is the
//     one it was verified against, so a password change or re-salt invalidates it, and a
//     ban is checked before any password;
//   - per-address and per-user failure limits are checked before bcrypt (fast refusal);
//   - bcrypt runs at most GOMAXPROCS at a time and at a bounded rate; beyond, a fast 503.
//
// The per-user backoff never refuses the owner because of someone else's guesses from
// another address: it is split by what the presenting address has done for that user.
// An address whose last attempt for the user failed waits out the user's backoff,
// which every failed plaintext guess lengthens. An address that succeeded for the user
// is not held back by it. A clean address (never seen for the user) waits out only a
// separate backoff that counts first failures from clean addresses, so one address,
// or a few, guessing at any pace never refuses the owner's password from elsewhere,
// while guesses spread over many addresses still slow new addresses (SECURITY.md,
// T18). Nothing locks harder than UserMaxBackoff.
//
// Addresses are counted per IPv4 address and per IPv6 /64 (an IPv4-mapped IPv6 address
// counts as IPv4). Limits run on the monotonic clock. The zero value is not usable:
// call NewPasswords.
type Passwords struct {
	// CacheTTL is how long a verified (user, password) is trusted. Default 10 min.
	CacheTTL time.Duration
	// IPMaxFailures failures from one address within IPWindow block that address for
	// IPBlock, for every user and for hashes too. Defaults 5, 10 min, 1 h (MediaMTX's
	// fail2ban recipe).
	IPMaxFailures int
	IPWindow      time.Duration
	IPBlock       time.Duration
	// UserFreeFailures failed plaintext guesses of one user are free; each further one
	// doubles a refusal window from 1 s up to UserMaxBackoff (there is no longer lock).
	// The window refuses addresses that failed for the user; a second count of the
	// same shape, of failures from clean addresses, refuses clean addresses. Counts
	// restart after UserQuiet without a failure, or when a new password is set (a new
	// stored hash). Defaults 10, 15 min, 24 h. None of this touches the user's stream
	// keys or the hash as password.
	UserFreeFailures int
	UserMaxBackoff   time.Duration
	UserQuiet        time.Duration
	// RatePerSecond bounds bcrypt runs per second (burst of the same size).
	// Default 10 per GOMAXPROCS.
	RatePerSecond int

	// Now is the clock; tests replace it. Default time.Now (monotonic).
	Now func() time.Time
	// compare is bcrypt's compare; tests wrap it to count or block.
	compare func(hash, pw []byte) error

	sem   chan struct{}
	runs  atomic.Int64
	hits  atomic.Int64
	mu    sync.Mutex
	cache map[[32]byte]cacheEntry
	ips   limitTable[*ipState]
	users limitTable[*userState]
	// addrs is what each address last did for each user, keyed by pairKey.
	addrs limitTable[*addrState]
	// token bucket
	tokens   float64
	lastFill time.Time
}

type cacheEntry struct {
	hash    string
	expires time.Time
}

type ipState struct {
	fails        int
	windowStart  time.Time
	blockedUntil time.Time
}

// userState counts a user's failed plaintext guesses against one stored hash.
type userState struct {
	hash     string
	lastFail time.Time
	// fails and until: every failure; until refuses addresses that failed.
	fails int
	until time.Time
	// newFails and newUntil: failures from clean addresses; newUntil refuses clean ones.
	newFails int
	newUntil time.Time
}

// addrState is the last outcome of one address for one user, against one stored hash.
type addrState struct {
	hash string
	good bool // succeeded; otherwise it failed
	seen time.Time
}

// maxTracked bounds each limiter table (see table.room) and the success cache.
const maxTracked = 100_000

// NewPasswords returns a Passwords with the defaults above.
func NewPasswords() *Passwords {
	n := runtime.GOMAXPROCS(0)
	p := &Passwords{
		CacheTTL:         10 * time.Minute,
		IPMaxFailures:    5,
		IPWindow:         10 * time.Minute,
		IPBlock:          time.Hour,
		UserFreeFailures: 10,
		UserMaxBackoff:   15 * time.Minute,
		UserQuiet:        24 * time.Hour,
		RatePerSecond:    10 * n,
		Now:              time.Now,
		compare:          bcrypt.CompareHashAndPassword,
		sem:              make(chan struct{}, n),
		cache:            map[[32]byte]cacheEntry{},
	}
	p.ips = newTable(func(s *ipState) time.Time { return s.blockedUntil })
	p.users = newTable(func(s *userState) time.Time { return later(s.until, s.newUntil) })
	// A failed address matters while the user's backoff may still be running; a good
	// one may go (it then counts as clean).
	p.addrs = newTable(func(s *addrState) time.Time {
		if s.good {
			return time.Time{}
		}
		return s.seen.Add(p.UserMaxBackoff)
	})
	return p
}

// BcryptRuns is how many bcrypt verifications ran; CacheHits how many were spared.
func (p *Passwords) BcryptRuns() int64 { return p.runs.Load() }

// CacheHits is how many plaintext verifications the cache answered.
func (p *Passwords) CacheHits() int64 { return p.hits.Load() }

// Verify checks presented against the user's stored bcrypt hash for a publish from ip.
// It returns a Decision with Allow set, or the deny status and reason.
func (p *Passwords) Verify(user, ip, storedHash, presented string) Verdict {
	switch {
	case storedHash == "":
		return deny("no password set")
	case presented == "":
		return deny("missing password")
	case len(presented) > stagedoor.MaxPasswordBytes:
		return deny("password too long")
	}
	addr := addrKey(ip)
	now := p.Now()
	if stagedoor.IsHashShaped(presented) {
		// Hash as password (ScaleEngine): exact, constant-time, no bcrypt ever. Only the
		// address limit applies: a wrong hash is no guess at the user's password.
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.ipBlocked(addr, now) {
			return deny(reasonIPBlocked)
		}
		if subtle.ConstantTimeCompare([]byte(presented), []byte(storedHash)) == 1 {
			p.succeed(user, addr, storedHash, now)
			return allow("password hash")
		}
		p.failIP(addr, now)
		return deny("wrong password hash")
	}

	ck := cacheKey(user, presented)
	p.mu.Lock()
	if e, ok := p.cache[ck]; ok && e.hash == storedHash && now.Before(e.expires) {
		p.mu.Unlock()
		p.hits.Add(1)
		return allow("password (cached)")
	}
	if p.ipBlocked(addr, now) {
		p.mu.Unlock()
		return deny(reasonIPBlocked)
	}
	if p.userBlocked(user, addr, storedHash, now) {
		p.mu.Unlock()
		return deny("too many failures for this user")
	}
	if !p.takeToken(now) {
		p.mu.Unlock()
		return busy("bcrypt rate exceeded")
	}
	p.mu.Unlock()

	if c, err := bcrypt.Cost([]byte(storedHash)); err != nil || c > stagedoor.MaxCost {
		return fault("stored hash unusable")
	}
	select {
	case p.sem <- struct{}{}:
	default:
		return busy("bcrypt busy")
	}
	p.runs.Add(1)
	err := p.compare([]byte(storedHash), []byte(presented))
	<-p.sem

	now = p.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.failIP(addr, now)
		p.failUser(user, addr, storedHash, now)
		return deny("wrong password")
	}
	p.succeed(user, addr, storedHash, now)
	if len(p.cache) >= maxTracked {
		sweep(p.cache, func(e cacheEntry) bool { return now.After(e.expires) })
	}
	p.cache[ck] = cacheEntry{hash: storedHash, expires: now.Add(p.CacheTTL)}
	return allow("password")
}

const reasonIPBlocked = "too many failures from this address"

func cacheKey(user, pw string) [32]byte {
	h := sha256.New()
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(pw))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// ipBlocked reports whether addr is blocked for every user. p.mu is held.
func (p *Passwords) ipBlocked(addr string, now time.Time) bool {
	s := p.ips.m[addr]
	return s != nil && now.Before(s.blockedUntil)
}

// userBlocked reports whether addr must wait before trying a plaintext password of
// user: failed addresses wait out the user's backoff, clean ones the backoff of
// clean addresses, and an address that last succeeded never does. p.mu is held.
func (p *Passwords) userBlocked(user, addr, storedHash string, now time.Time) bool {
	us := p.userState(user, storedHash, now)
	if us == nil {
		return false
	}
	as := p.addrs.m[pairKey(user, addr)]
	switch {
	case as == nil || as.hash != storedHash:
		return now.Before(us.newUntil)
	case as.good:
		return false
	}
	return now.Before(us.until)
}

// userState returns the user's counts against storedHash, nil when there are none: a
// new password, or UserQuiet without a failure, starts them over. p.mu is held.
func (p *Passwords) userState(user, storedHash string, now time.Time) *userState {
	us := p.users.m[user]
	if us != nil && (us.hash != storedHash || now.Sub(us.lastFail) > p.UserQuiet) {
		delete(p.users.m, user)
		return nil
	}
	return us
}

// failIP records a failure from addr. p.mu is held.
func (p *Passwords) failIP(addr string, now time.Time) {
	is := p.ips.m[addr]
	if is == nil || now.Sub(is.windowStart) > p.IPWindow {
		if is == nil && !p.ips.room(now) {
			return // full of blocked addresses: this one goes uncounted (table.room)
		}
		blocked := time.Time{}
		if is != nil {
			blocked = is.blockedUntil // a block outlasting the window stays
		}
		is = &ipState{windowStart: now, blockedUntil: blocked}
		p.ips.m[addr] = is
	}
	is.fails++
	if is.fails >= p.IPMaxFailures {
		is.blockedUntil = later(is.blockedUntil, now.Add(p.IPBlock))
	}
}

// failUser records a failed plaintext guess of user from addr. p.mu is held.
func (p *Passwords) failUser(user, addr, storedHash string, now time.Time) {
	us := p.userState(user, storedHash, now)
	if us == nil {
		if !p.users.room(now) {
			return
		}
		us = &userState{hash: storedHash}
		p.users.m[user] = us
	}
	us.lastFail = now
	us.fails++
	us.until = later(us.until, now.Add(p.backoff(us.fails)))
	k := pairKey(user, addr)
	as := p.addrs.m[k]
	if as == nil || as.hash != storedHash {
		us.newFails++
		us.newUntil = later(us.newUntil, now.Add(p.backoff(us.newFails)))
		if as == nil && !p.addrs.room(now) {
			return
		}
		as = &addrState{}
		p.addrs.m[k] = as
	}
	as.hash, as.good, as.seen = storedHash, false, now
}

// succeed records that addr presented user's password or hash: from then on it is not
// held back by the user's backoff. The user's counts stay: they are other addresses'
// failures (an owner's encoder presenting the hash on every reconnect would otherwise
// reset them for an attacker). p.mu is held.
func (p *Passwords) succeed(user, addr, storedHash string, now time.Time) {
	k := pairKey(user, addr)
	as := p.addrs.m[k]
	if as == nil {
		if !p.addrs.room(now) {
			return
		}
		as = &addrState{}
		p.addrs.m[k] = as
	}
	as.hash, as.good, as.seen = storedHash, true, now
}

// backoff is the refusal window after the n-th counted failure.
func (p *Passwords) backoff(n int) time.Duration {
	over := n - p.UserFreeFailures
	if over <= 0 {
		return 0
	}
	return min(time.Second<<min(over-1, 20), p.UserMaxBackoff)
}

// takeToken refills and takes one token of the bcrypt rate bucket. p.mu is held.
func (p *Passwords) takeToken(now time.Time) bool {
	rate := float64(p.RatePerSecond)
	if p.lastFill.IsZero() {
		p.tokens, p.lastFill = rate, now
	}
	if el := now.Sub(p.lastFill).Seconds(); el > 0 {
		p.tokens = min(rate, p.tokens+el*rate)
		p.lastFill = now
	} else if el < 0 {
		p.lastFill = now // the clock went back: refill from here, never stall
	}
	if p.tokens < 1 {
		return false
	}
	p.tokens--
	return true
}

// sweep deletes expired entries; if none were, it clears the map to bound memory. Only
// the success cache uses it: clearing that costs bcrypt runs, never lifts a limit.
func sweep[K comparable, V any](m map[K]V, expired func(V) bool) {
	n := len(m)
	for k, v := range m {
		if expired(v) {
			delete(m, k)
		}
	}
	if len(m) == n {
		clear(m)
	}
}

// limitTable is a bounded limiter map. Its entries are pinned (never evicted) until the time
// pin returns: a block, or a failure a backoff still depends on. When the table is
// full, room evicts every entry no longer pinned (an unblocked address loses at most
// the failures of its current window); if every entry is pinned, nothing is evicted
// and new keys go untracked (limited by the bcrypt budget and the other tables only)
// until the earliest pin ends. Existing blocks are never lifted to make room.
type limitTable[V any] struct {
	m   map[string]V
	max int
	pin func(V) time.Time
	// retry: no sweep before it, because the last one freed too little to be worth
	// repeating on every call (at most one O(max) sweep a second).
	retry time.Time
}

func newTable[V any](pin func(V) time.Time) limitTable[V] {
	return limitTable[V]{m: map[string]V{}, max: maxTracked, pin: pin}
}

// room reports whether a new key may be added. p.mu is held.
func (t *limitTable[V]) room(now time.Time) bool {
	if len(t.m) < t.max {
		return true
	}
	if now.Before(t.retry) {
		return false
	}
	var earliest time.Time
	for k, v := range t.m {
		u := t.pin(v)
		if !now.Before(u) {
			delete(t.m, k)
			continue
		}
		if earliest.IsZero() || u.Before(earliest) {
			earliest = u
		}
	}
	t.retry = time.Time{}
	if len(t.m) > t.max-t.max/8 {
		t.retry = now.Add(time.Second)
		if !earliest.IsZero() && earliest.Before(t.retry) {
			t.retry = earliest
		}
	}
	return len(t.m) < t.max
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// addrKey is what the address limits count by: an IPv4 address, or the /64 of an IPv6
// one (a single subscriber is commonly given a whole /64); an IPv4-mapped IPv6 address
// is its IPv4 address. Anything unparsable counts by its first 64 bytes.
func addrKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip[:min(len(ip), 64)]
	}
	a = a.WithZone("").Unmap()
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a, 64).Masked().String()
}

func pairKey(user, addr string) string { return user + "\x00" + addr }
