package policy

import (
	"crypto/sha256"
	"crypto/subtle"
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
//     never passed to bcrypt (its cost would be read from the attacker's string);
//   - recent successes are cached, keyed by SHA-256(user, password), so an encoder's
//     reconnect storm costs no bcrypt; an entry only counts while the stored hash is the
//     one it was verified against, so a password change or re-salt invalidates it, and a
//     ban is checked before any password;
//   - per-IP and per-user failure limits are checked before bcrypt (fast refusal);
//   - bcrypt runs at most GOMAXPROCS at a time and at a bounded rate; beyond, a fast 503.
//
// Limits run on the monotonic clock. The zero value is not usable: call NewPasswords.
type Passwords struct {
	// CacheTTL is how long a verified (user, password) is trusted. Default 10 min.
	CacheTTL time.Duration
	// IPMaxFailures failures from one IP within IPWindow block that IP for IPBlock.
	// Defaults 5, 10 min, 1 h (MediaMTX's fail2ban recipe).
	IPMaxFailures int
	IPWindow      time.Duration
	IPBlock       time.Duration
	// UserFreeFailures consecutive failures of one user are free; each further failure
	// doubles a refusal window from 1 s up to UserMaxBackoff; at UserHardCap consecutive
	// failures the user's password is refused for UserHardCapLock (or until a new
	// password is set, which changes the stored hash). Defaults 10, 15 min, 100 (NIST SP
	// 800-63B §5.2.2), 24 h. A success resets the count. None of this touches the user's
	// stream keys.
	UserFreeFailures int
	UserMaxBackoff   time.Duration
	UserHardCap      int
	UserHardCapLock  time.Duration
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
	ips   map[string]*ipState
	users map[string]*userState
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

type userState struct {
	fails        int
	blockedUntil time.Time
	hash         string // the stored hash the failures were against
}

// maxTracked bounds each map; beyond it expired entries are swept, then the map is reset.
const maxTracked = 100_000

// NewPasswords returns a Passwords with the defaults above.
func NewPasswords() *Passwords {
	n := runtime.GOMAXPROCS(0)
	return &Passwords{
		CacheTTL:         10 * time.Minute,
		IPMaxFailures:    5,
		IPWindow:         10 * time.Minute,
		IPBlock:          time.Hour,
		UserFreeFailures: 10,
		UserMaxBackoff:   15 * time.Minute,
		UserHardCap:      100,
		UserHardCapLock:  24 * time.Hour,
		RatePerSecond:    10 * n,
		Now:              time.Now,
		compare:          bcrypt.CompareHashAndPassword,
		sem:              make(chan struct{}, n),
		cache:            map[[32]byte]cacheEntry{},
		ips:              map[string]*ipState{},
		users:            map[string]*userState{},
	}
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
	now := p.Now()
	if stagedoor.IsHashShaped(presented) {
		// Hash as password (ScaleEngine): exact, constant-time, no bcrypt ever; limited
		// like a password.
		p.mu.Lock()
		defer p.mu.Unlock()
		if reason := p.blocked(user, ip, storedHash, now); reason != "" {
			return deny(reason)
		}
		if subtle.ConstantTimeCompare([]byte(presented), []byte(storedHash)) == 1 {
			delete(p.users, user)
			return allow("password hash")
		}
		p.fail(user, ip, storedHash, now)
		return deny("wrong password hash")
	}

	ck := cacheKey(user, presented)
	p.mu.Lock()
	if e, ok := p.cache[ck]; ok && e.hash == storedHash && now.Before(e.expires) {
		p.mu.Unlock()
		p.hits.Add(1)
		return allow("password (cached)")
	}
	if reason := p.blocked(user, ip, storedHash, now); reason != "" {
		p.mu.Unlock()
		return deny(reason)
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
		p.fail(user, ip, storedHash, now)
		return deny("wrong password")
	}
	delete(p.users, user)
	if len(p.cache) >= maxTracked {
		sweep(p.cache, func(e cacheEntry) bool { return now.After(e.expires) })
	}
	p.cache[ck] = cacheEntry{hash: storedHash, expires: now.Add(p.CacheTTL)}
	return allow("password")
}

func cacheKey(user, pw string) [32]byte {
	h := sha256.New()
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(pw))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// blocked returns a reason when ip or user may not try a password now. p.mu is held.
func (p *Passwords) blocked(user, ip, storedHash string, now time.Time) string {
	if s := p.ips[ip]; s != nil && now.Before(s.blockedUntil) {
		return "too many failures from this address"
	}
	if s := p.users[user]; s != nil {
		if s.hash != storedHash {
			delete(p.users, user) // a new password was set: start over
		} else if now.Before(s.blockedUntil) {
			return "too many failures for this user"
		}
	}
	return ""
}

// fail records a verified failure. p.mu is held.
func (p *Passwords) fail(user, ip, storedHash string, now time.Time) {
	if len(p.ips) >= maxTracked {
		sweep(p.ips, func(s *ipState) bool { return now.After(s.blockedUntil) && now.Sub(s.windowStart) > p.IPWindow })
	}
	is := p.ips[ip]
	if is == nil || now.Sub(is.windowStart) > p.IPWindow {
		is = &ipState{windowStart: now}
		p.ips[ip] = is
	}
	is.fails++
	if is.fails >= p.IPMaxFailures {
		is.blockedUntil = now.Add(p.IPBlock)
	}

	if len(p.users) >= maxTracked {
		sweep(p.users, func(s *userState) bool { return now.After(s.blockedUntil) })
	}
	us := p.users[user]
	if us == nil || us.hash != storedHash {
		us = &userState{hash: storedHash}
		p.users[user] = us
	}
	us.fails++
	switch over := us.fails - p.UserFreeFailures; {
	case us.fails >= p.UserHardCap:
		us.blockedUntil = now.Add(p.UserHardCapLock)
	case over > 0:
		backoff := time.Second << min(over-1, 20)
		us.blockedUntil = now.Add(min(backoff, p.UserMaxBackoff))
	}
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

// sweep deletes expired entries; if none were, it clears the map to bound memory.
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
