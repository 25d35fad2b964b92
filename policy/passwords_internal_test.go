package policy

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testutil"
	"golang.org/x/crypto/bcrypt"
)

const (
	testPassword = "correct horse battery staple"
	// testHash10 is bcrypt cost 10 of testPassword. A constant spares a generation
	// (60 ms, about 750 ms under -race); it contains "/" like most real hashes.
	testHash10 = "$2a$10$7jiKhObtcPR5dNsER6VO5eedT/DWJc0NhjAwbetwvM9yfoF2iKCTq"
	// otherHash10 is bcrypt cost 10 of another password.
	otherHash10 = "$2a$10$aKornp162oSSKOW8vPCYPesVx/XDAk7Fpm/bIoXqWgNHpX8KDxTt2"
)

// newTestPasswords returns NewPasswords on a clock that only moves when told to, with
// the rate bucket out of the way; the tests of the bucket set RatePerSecond themselves.
func newTestPasswords() (*Passwords, *testutil.Clock) {
	clk := testutil.NewClock(time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC))
	p := NewPasswords()
	p.Now = clk.Now
	p.RatePerSecond = 1 << 20
	return p, clk
}

// lowCostHash hashes pw at bcrypt's minimum cost 4 (about 1 ms). The store refuses
// such a hash, but Verify only refuses costs above 12, and these tests count bcrypt
// runs rather than time them.
func lowCostHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatalf("GenerateFromPassword: %v", err)
	}
	return string(h)
}

// changeChar returns s with the byte at i replaced by another bcrypt alphabet character.
func changeChar(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

func wantStatus(allow bool) int {
	if allow {
		return http.StatusOK
	}
	return http.StatusUnauthorized
}

func TestVerifyHashAsPassword(t *testing.T) {
	long72 := strings.Repeat("p", 71) + "!"
	hash72 := lowCostHash(t, long72)
	over73 := long72 + "x"
	over10k := long72 + strings.Repeat("x", 10*1024-len(long72))
	// bcrypt itself accepts what follows the 72nd byte (golang/go#36546): only Verify's
	// length check stands between these and a false match.
	for _, pw := range []string{over73, over10k} {
		if err := bcrypt.CompareHashAndPassword([]byte(hash72), []byte(pw)); err != nil {
			t.Fatalf("precondition: bcrypt rejects a %d-byte password with a matching prefix: %v", len(pw), err)
		}
	}
	garbage31 := "$2a$31$" + testHash10[7:]
	// bcrypt would read cost 31 from the client's string: about 36 h of CPU.
	if c, err := bcrypt.Cost([]byte(garbage31)); err != nil || c != 31 {
		t.Fatalf("precondition: bcrypt.Cost(%q) = %d, %v; want 31, nil", garbage31, c, err)
	}

	hash4 := lowCostHash(t, testPassword)

	for _, tt := range []struct {
		name      string
		stored    string
		presented string
		allow     bool
		runs      int64 // bcrypt runs: 0 unless the string is not hash-shaped
	}{
		{"ExactHashAllowed", testHash10, testHash10, true, 0},
		{"LastCharChangedDenied", testHash10, changeChar(testHash10, 59), false, 0},
		{"SaltCharChangedDenied", testHash10, changeChar(testHash10, 12), false, 0},
		{"Cost31SameTailDenied", testHash10, garbage31, false, 0},
		{"Cost31GarbageDenied", testHash10, "$2a$31$" + strings.Repeat("A", 53), false, 0},
		{"Variant2yDenied", testHash10, "$2y$" + testHash10[4:], false, 0},
		{"Variant2bDenied", testHash10, "$2b$" + testHash10[4:], false, 0},
		{"AnotherUsersHashDenied", testHash10, otherHash10, false, 0},
		// Not hash-shaped, so these are plaintext guesses: one bcrypt run each at the
		// stored hash's cost (never a cost read from the client's string).
		{"HashWithTrailingNameIsAPlaintextGuess", hash4, hash4 + "/concert", false, 1},
		{"HashCutShortIsAPlaintextGuess", hash4, hash4[:31], false, 1},
		{"EmptyPasswordDenied", testHash10, "", false, 0},
		{"Over72BytesDenied", hash72, over73, false, 0},
		{"Over10kBDenied", hash72, over10k, false, 0},
		{"NoStoredHashDeniesHash", "", testHash10, false, 0},
		{"NoStoredHashDeniesPlaintext", "", testPassword, false, 0},
		{"NoStoredHashDeniesEmpty", "", "", false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newTestPasswords()
			d := p.Verify("alice", "198.51.100.1", tt.stored, tt.presented)
			if d.Allow != tt.allow || statusOf(d) != wantStatus(tt.allow) {
				t.Errorf("Verify = allow %v status %d (%s), want allow %v status %d",
					d.Allow, statusOf(d), d.Reason, tt.allow, wantStatus(tt.allow))
			}
			if got := p.BcryptRuns(); got != tt.runs {
				t.Errorf("BcryptRuns = %d, want %d", got, tt.runs)
			}
			if strings.Contains(d.Reason, "$2") {
				t.Errorf("reason %q carries a hash", d.Reason)
			}
		})
	}
}

// step is one Verify call in a sequence whose steps depend on each other.
type step struct {
	name      string
	advance   time.Duration // moved on the clock before the call
	user, ip  string
	stored    string
	presented string
	status    int   // wanted Verdict.Status
	runs      int64 // wanted BcryptRuns after the call
}

func runSteps(t *testing.T, p *Passwords, clk *testutil.Clock, steps []step) {
	t.Helper()
	for _, s := range steps {
		clk.Add(s.advance)
		d := p.Verify(s.user, s.ip, s.stored, s.presented)
		if statusOf(d) != s.status || d.Allow != (s.status == http.StatusOK) {
			t.Errorf("%s: Verify = allow %v status %d (%s), want status %d", s.name, d.Allow, statusOf(d), d.Reason, s.status)
		}
		if got := p.BcryptRuns(); got != s.runs {
			t.Errorf("%s: BcryptRuns = %d, want %d", s.name, got, s.runs)
		}
	}
}

func TestVerifyPlaintextCache(t *testing.T) {
	p, clk := newTestPasswords()
	h1 := lowCostHash(t, testPassword)
	h2 := lowCostHash(t, testPassword) // re-salted: same password, new hash
	if h1 == h2 {
		t.Fatal("two hashes of the same password are equal")
	}
	const ip = "203.0.113.9"
	ok, no := http.StatusOK, http.StatusUnauthorized
	runSteps(t, p, clk, []step{
		{name: "FirstVerifiesWithBcrypt", user: "alice", ip: ip, stored: h1, presented: testPassword, status: ok, runs: 1},
		{name: "SecondServedFromCache", user: "alice", ip: ip, stored: h1, presented: testPassword, status: ok, runs: 1},
		{name: "OtherUserSameHashNotCached", user: "bob", ip: ip, stored: h1, presented: testPassword, status: ok, runs: 2},
		{name: "WrongPasswordRunsBcrypt", user: "alice", ip: ip, stored: h1, presented: "wrong", status: no, runs: 3},
		{name: "WrongPasswordNeverCached", user: "alice", ip: ip, stored: h1, presented: "wrong", status: no, runs: 4},
		{name: "ResaltedHashIgnoresCache", user: "alice", ip: ip, stored: h2, presented: testPassword, status: ok, runs: 5},
		{name: "OldHashAsPasswordDeniedAfterResalt", user: "alice", ip: ip, stored: h2, presented: h1, status: no, runs: 5},
		{name: "CachedJustBeforeTTL", advance: p.CacheTTL - time.Second, user: "alice", ip: ip, stored: h2, presented: testPassword, status: ok, runs: 5},
		{name: "ExpiredAfterTTL", advance: time.Second, user: "alice", ip: ip, stored: h2, presented: testPassword, status: ok, runs: 6},
		{name: "CachedAgain", user: "alice", ip: ip, stored: h2, presented: testPassword, status: ok, runs: 6},
	})
	if got := p.CacheHits(); got != 3 {
		t.Errorf("CacheHits = %d, want 3", got)
	}
}

func TestVerifyPerIPLimit(t *testing.T) {
	p, clk := newTestPasswords()
	h := lowCostHash(t, testPassword)
	const attacker, other = "198.51.100.1", "203.0.113.9"
	no := http.StatusUnauthorized
	var steps []step
	for i := range p.IPMaxFailures {
		steps = append(steps, step{name: fmt.Sprintf("WrongFromAttacker%d", i+1), user: "alice", ip: attacker, stored: h,
			presented: fmt.Sprintf("guess-%d", i), status: no, runs: int64(i + 1)})
	}
	n := int64(p.IPMaxFailures)
	steps = append(steps,
		step{name: "NextFromAttackerRefusedWithoutBcrypt", user: "alice", ip: attacker, stored: h, presented: "guess-x", status: no, runs: n},
		step{name: "CorrectFromAttackerRefusedWithoutBcrypt", user: "alice", ip: attacker, stored: h, presented: testPassword, status: no, runs: n},
		step{name: "OtherUserFromAttackerRefused", user: "bob", ip: attacker, stored: h, presented: testPassword, status: no, runs: n},
		step{name: "OtherIPStillVerifies", user: "alice", ip: other, stored: h, presented: "typo", status: no, runs: n + 1},
		step{name: "StillBlockedJustBeforeIPBlock", advance: p.IPBlock - time.Second, user: "alice", ip: attacker, stored: h, presented: "guess-y", status: no, runs: n + 1},
		step{name: "MayTryAgainAfterIPBlock", advance: time.Second, user: "alice", ip: attacker, stored: h, presented: "guess-z", status: no, runs: n + 2},
		step{name: "NewWindowCountsAfresh", user: "alice", ip: attacker, stored: h, presented: "guess-zz", status: no, runs: n + 3},
	)
	runSteps(t, p, clk, steps)
}

func TestVerifyPerIPWindow(t *testing.T) {
	p, clk := newTestPasswords()
	h := lowCostHash(t, testPassword)
	// Failures further apart than IPWindow never add up to a block. Distinct users keep
	// the per-user limit out of it.
	attempts := 3 * p.IPMaxFailures
	for i := range attempts {
		clk.Add(p.IPWindow + time.Second)
		if d := p.Verify(fmt.Sprintf("user%d", i), "198.51.100.1", h, "wrong"); statusOf(d) != http.StatusUnauthorized {
			t.Errorf("attempt %d: status %d, want 401", i, statusOf(d))
		}
	}
	if got := p.BcryptRuns(); got != int64(attempts) {
		t.Errorf("BcryptRuns = %d, want %d (every spaced-out failure verified)", got, attempts)
	}
}

func TestVerifyPerUserBackoff(t *testing.T) {
	p, clk := newTestPasswords()
	h := lowCostHash(t, testPassword)
	ipN := 0
	freshIP := func() string { ipN++; return fmt.Sprintf("10.%d.%d.%d", ipN>>16&255, ipN>>8&255, ipN&255) }
	verify := func(pw string) Verdict { return p.Verify("alice", freshIP(), h, pw) }

	// UserFreeFailures failures, each from its own address (well below the IP limit).
	for i := range p.UserFreeFailures {
		if d := verify(fmt.Sprintf("guess-%d", i)); statusOf(d) != http.StatusUnauthorized {
			t.Fatalf("free failure %d: status %d, want 401", i, statusOf(d))
		}
	}
	if got, want := p.BcryptRuns(), int64(p.UserFreeFailures); got != want {
		t.Fatalf("after the free failures BcryptRuns = %d, want %d", got, want)
	}
	// Each further failure doubles the refusal window, from 1 s up to UserMaxBackoff.
	window := time.Second
	for k := 1; window < p.UserMaxBackoff || k < 15; k++ {
		runs := p.BcryptRuns()
		if d := verify("guess"); statusOf(d) != http.StatusUnauthorized {
			t.Fatalf("failure %d over: status %d, want 401", k, statusOf(d))
		}
		if got := p.BcryptRuns(); got != runs+1 {
			t.Fatalf("failure %d over: BcryptRuns = %d, want %d (not yet blocked)", k, got, runs+1)
		}
		want := min(window, p.UserMaxBackoff)
		clk.Add(want - time.Millisecond)
		for _, pw := range []string{"guess", testPassword} {
			if d := verify(pw); statusOf(d) != http.StatusUnauthorized {
				t.Fatalf("failure %d over, %v later: status %d, want 401 (blocked)", k, want-time.Millisecond, statusOf(d))
			}
		}
		if got := p.BcryptRuns(); got != runs+1 {
			t.Fatalf("failure %d over: bcrypt ran while blocked (%d runs, want %d)", k, got, runs+1)
		}
		clk.Add(time.Millisecond)
		window *= 2
	}

	// A success (once the window is over) frees that address from the user's backoff,
	// but not the count: the next failure from a clean address is refused again.
	const home = "192.0.2.1"
	runs := p.BcryptRuns()
	if d := p.Verify("alice", home, h, testPassword); !d.Allow {
		t.Fatalf("correct password after the window: %+v, want allowed", d)
	}
	p.cache = map[[32]byte]cacheEntry{} // a cached success would answer for any address
	if d := verify("guess"); statusOf(d) != http.StatusUnauthorized {
		t.Fatalf("failure after a success: status %d", statusOf(d))
	}
	if d := verify(testPassword); d.Allow {
		t.Fatal("a clean address got in while the backoff of clean addresses runs")
	}
	if d := p.Verify("alice", home, h, testPassword); !d.Allow {
		t.Errorf("from the address that succeeded: %+v, want allowed (not held back)", d)
	}
	if got, want := p.BcryptRuns(), runs+3; got != want { // home twice, one guess
		t.Errorf("BcryptRuns = %d, want %d", got, want)
	}

	// UserQuiet without a failure restarts the counts: the next failures are free.
	clk.Add(p.UserQuiet + time.Second)
	runs = p.BcryptRuns()
	for i := range p.UserFreeFailures {
		if d := verify("guess"); statusOf(d) != http.StatusUnauthorized {
			t.Fatalf("failure %d after a quiet day: status %d", i, statusOf(d))
		}
	}
	if got, want := p.BcryptRuns(), runs+int64(p.UserFreeFailures); got != want {
		t.Errorf("after UserQuiet BcryptRuns = %d, want %d (counts restarted)", got, want)
	}
}

// TestVerifyOneAddressCannotLockOutOwner is issue 11 M2: one address guessing every
// 9 minutes (so never more than 4 in 10 minutes, never blocked as an address), 41
// requests over 6 hours with wrong hashes and wrong plaintexts alike, must not keep the
// owner out: her correct hash, or her correct password, every 10 s for the 10 minutes
// after the last guess, from her own address, is allowed every time.
func TestVerifyOneAddressCannotLockOutOwner(t *testing.T) {
	for _, tt := range []struct {
		name    string
		present func(h string) string
	}{
		{"Hash", func(h string) string { return h }},
		{"Plaintext", func(string) string { return testPassword }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, clk := newTestPasswords()
			h := lowCostHash(t, testPassword)
			const attacker, owner = "198.51.100.66", "203.0.113.20"
			for i := range 41 {
				pw := fmt.Sprintf("guess-%d", i)
				if i%2 == 0 {
					pw = changeChar(h, 10+i)
				}
				if d := p.Verify("alice", attacker, h, pw); d.Allow || d.Reason == reasonIPBlocked {
					t.Fatalf("guess %d: %+v, want a refusal that is not an address block", i, d)
				}
				if i < 40 {
					clk.Add(9 * time.Minute)
				}
			}
			allowed := 0
			for i := range 60 {
				clk.Add(10 * time.Second)
				d := p.Verify("alice", owner, h, tt.present(h))
				if d.Allow {
					allowed++
				} else if i < 3 {
					t.Logf("owner attempt %d refused: %s", i, d.Reason)
				}
			}
			if allowed != 60 {
				t.Errorf("owner allowed %d of 60 times, want 60", allowed)
			}
		})
	}
}

// TestVerifyGuesserSlowed: an address that stays under the address limit (one guess
// every 3 minutes for 6 hours) is still backed off per user, up to UserMaxBackoff, and
// while it is, even the right password from it is refused without bcrypt.
func TestVerifyGuesserSlowed(t *testing.T) {
	p, clk := newTestPasswords()
	h := lowCostHash(t, testPassword)
	const attacker = "198.51.100.66"
	const attempts = 6 * 20
	for i := range attempts {
		if d := p.Verify("alice", attacker, h, fmt.Sprintf("guess-%d", i)); d.Allow {
			t.Fatalf("guess %d allowed", i)
		}
		clk.Add(3 * time.Minute)
	}
	// 10 free, then windows of 1 s … 128 s (each over before the next guess), then one
	// guess per 256 s, 512 s and 15-minute window: about 30 of the 120.
	runs := p.BcryptRuns()
	if limit := int64(p.UserFreeFailures + 8 + 6*4 + 2); runs > limit {
		t.Errorf("BcryptRuns = %d of %d guesses, want ≤ %d", runs, attempts, limit)
	}
	// Right after a failure, the right password from that address waits too.
	clk.Add(p.UserMaxBackoff)
	if d := p.Verify("alice", attacker, h, "guess-last"); d.Allow {
		t.Fatal("guess allowed")
	}
	if d := p.Verify("alice", attacker, h, testPassword); d.Allow {
		t.Error("the guessing address got in during its backoff")
	}
	if got := p.BcryptRuns(); got != runs+1 {
		t.Errorf("BcryptRuns = %d, want %d (no bcrypt during the backoff)", got, runs+1)
	}
	// The owner, from her own address, is not held back.
	if d := p.Verify("alice", "203.0.113.20", h, testPassword); !d.Allow {
		t.Errorf("owner from a clean address: %+v, want allowed", d)
	}
}

// TestVerifyDistributedGuessing is T18: 1,000 addresses × 10 guesses on one user, one
// guess every 100 ms, with the default limits. Each address waits out the user's
// backoff once it has failed, and each new address the backoff of clean addresses, so
// the whole attack gets few verifications; the price is that a clean address of the
// owner's waits too, while an address she has succeeded from, her hash and her keys
// do not (SECURITY.md, T18).
func TestVerifyDistributedGuessing(t *testing.T) {
	clk := testutil.NewClock(time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC))
	p := NewPasswords()
	p.Now = clk.Now
	h := lowCostHash(t, testPassword)
	const home = "192.0.2.1"
	if d := p.Verify("benw", home, h, testPassword); !d.Allow {
		t.Fatalf("benw before the attack: %+v", d)
	}
	p.cache = map[[32]byte]cacheEntry{}
	runs := p.BcryptRuns()
	denied := 0
	for ip := range 1000 {
		for range 10 {
			if d := p.Verify("benw", fmt.Sprintf("10.1.%d.%d", ip>>8, ip&255), h, "guess"); statusOf(d) == http.StatusUnauthorized {
				denied++
			}
			clk.Add(100 * time.Millisecond)
		}
	}
	if denied != 10_000 {
		t.Errorf("denied with 401: %d of 10000", denied)
	}
	if got := p.BcryptRuns() - runs; got > 40 {
		t.Errorf("BcryptRuns = %d, want ≤ 40 (NIST: at most 100)", got)
	}
	if d := p.Verify("benw", "10.2.0.1", h, testPassword); d.Allow {
		t.Error("a clean address got in during the attack: the backoff of clean addresses is off")
	}
	if d := p.Verify("benw", "10.2.0.2", h, h); !d.Allow {
		t.Errorf("benw's hash from a clean address: %+v, want allowed", d)
	}
	if d := p.Verify("benw", home, h, testPassword); !d.Allow {
		t.Errorf("benw's password from where she succeeded before: %+v, want allowed", d)
	}
}

// TestVerifyBackoffCapped: however long the guessing, no refusal outlasts
// UserMaxBackoff (15 minutes, as the README says); there is no longer lock.
func TestVerifyBackoffCapped(t *testing.T) {
	p, clk := newTestPasswords()
	h := lowCostHash(t, testPassword)
	// 300 failures over a day, each from a new address, 5 minutes apart, and the same
	// from one address (under its address limit): far past the old hard cap of 100.
	for i := range 300 {
		p.Verify("alice", fmt.Sprintf("10.5.%d.%d", i>>8, i&255), h, "guess")
		p.Verify("alice", "198.51.100.66", h, "guess")
		clk.Add(5 * time.Minute)
	}
	clk.Add(p.UserMaxBackoff)
	for _, ip := range []string{"10.6.0.1", "198.51.100.66"} {
		if d := p.Verify("alice", ip, h, testPassword); !d.Allow {
			t.Errorf("correct password from %s UserMaxBackoff after the last failure: %+v, want allowed", ip, d)
		}
		p.cache = map[[32]byte]cacheEntry{}
	}
}

// TestVerifyClockJumps is T28: moving the clock back never lifts a block, and a jump
// forward is just time passing (the next attempts are limited again).
func TestVerifyClockJumps(t *testing.T) {
	for _, tt := range []struct {
		name string
		back time.Duration
	}{
		{"BackOneHour", time.Hour},
		{"BackOneDay", 24 * time.Hour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, clk := newTestPasswords()
			h := lowCostHash(t, testPassword)
			const attacker = "198.51.100.1"
			// Block the attacker's address and, from other addresses, user bob.
			for i := range p.IPMaxFailures {
				p.Verify("alice", attacker, h, fmt.Sprintf("guess-%d", i))
			}
			for i := range p.UserFreeFailures + 1 {
				p.Verify("bob", fmt.Sprintf("10.2.0.%d", i), h, "guess")
			}
			runs := p.BcryptRuns()
			if want := int64(p.IPMaxFailures + p.UserFreeFailures + 1); runs != want {
				t.Fatalf("setup BcryptRuns = %d, want %d", runs, want)
			}

			clk.Add(-tt.back)
			for _, r := range []struct{ user, ip string }{{"alice", attacker}, {"bob", "10.2.1.1"}} {
				for _, pw := range []string{"guess", testPassword} {
					if d := p.Verify(r.user, r.ip, h, pw); statusOf(d) != http.StatusUnauthorized {
						t.Errorf("%s from %s after the jump back: status %d, want 401", r.user, r.ip, statusOf(d))
					}
				}
			}
			if got := p.BcryptRuns(); got != runs {
				t.Errorf("BcryptRuns after the jump back = %d, want %d (blocks must hold)", got, runs)
			}

			// Back to where the clock was, plus IPBlock: a block of IPBlock is over.
			clk.Add(tt.back + p.IPBlock)
			const flood = 100
			for i := range flood {
				p.Verify("carol", attacker, h, fmt.Sprintf("flood-%d", i))
			}
			if got, want := p.BcryptRuns(), runs+int64(p.IPMaxFailures); got != want {
				t.Errorf("BcryptRuns after %d guesses once the block is over = %d, want %d", flood, got, want)
			}
		})
	}
}

// TestVerifyConcurrencyBudget is T19: bcrypt never runs on more than GOMAXPROCS
// goroutines, and the excess is refused with 503 at once instead of queueing.
func TestVerifyConcurrencyBudget(t *testing.T) {
	p, _ := newTestPasswords()
	procs := runtime.GOMAXPROCS(0)
	calls := max(50, procs+10)
	var cur, peak atomic.Int64
	entered := make(chan struct{}, calls)
	release := make(chan struct{})
	p.compare = func(hash, pw []byte) error {
		n := cur.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		entered <- struct{}{}
		<-release
		cur.Add(-1)
		return bcrypt.ErrMismatchedHashAndPassword
	}
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	results := make(chan Verdict, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			results <- p.Verify(fmt.Sprintf("user%d", i), fmt.Sprintf("10.3.0.%d", i), testHash10, fmt.Sprintf("password-%d", i))
		})
	}
	defer func() { releaseAll(); wg.Wait() }()

	// The first procs callers hold the semaphore until released; everyone else must
	// have an answer already.
	ctx := t.Context()
	for range procs {
		select {
		case <-entered:
		case <-ctx.Done():
			t.Fatal("bcrypt callers never entered compare")
		}
	}
	busy := 0
	for range calls - procs {
		select {
		case d := <-results:
			if statusOf(d) != http.StatusServiceUnavailable || d.Allow {
				t.Errorf("excess call: allow %v status %d (%s), want 503", d.Allow, statusOf(d), d.Reason)
			} else {
				busy++
			}
		case <-ctx.Done():
			t.Fatal("excess calls waited for bcrypt instead of failing fast")
		}
	}
	if busy != calls-procs {
		t.Errorf("503 answers while bcrypt was busy = %d, want %d", busy, calls-procs)
	}
	if got := peak.Load(); got > int64(procs) {
		t.Errorf("peak concurrent bcrypt = %d, want ≤ GOMAXPROCS %d", got, procs)
	}
	if got := p.BcryptRuns(); got != int64(procs) {
		t.Errorf("BcryptRuns = %d, want %d", got, procs)
	}
	releaseAll()
	for range procs {
		if d := <-results; statusOf(d) != http.StatusUnauthorized {
			t.Errorf("released call: status %d, want 401", statusOf(d))
		}
	}
}

func TestVerifyRateBucket(t *testing.T) {
	p, clk := newTestPasswords()
	p.RatePerSecond = 2
	var compares atomic.Int64
	p.compare = func(hash, pw []byte) error {
		compares.Add(1)
		return bcrypt.CompareHashAndPassword(hash, pw)
	}
	h := lowCostHash(t, testPassword)
	for _, tt := range []struct {
		name      string
		advance   time.Duration
		user, ip  string
		presented string
		status    int
		compares  int64
	}{
		{"FirstTokenAlice", 0, "alice", "10.4.0.1", testPassword, http.StatusOK, 1},
		{"SecondTokenBob", 0, "bob", "10.4.0.2", "bob-guess", http.StatusUnauthorized, 2},
		{"ThirdRefusedWithoutCompare", 0, "carol", "10.4.0.3", "carol-guess", http.StatusServiceUnavailable, 2},
		{"CachedSuccessNeedsNoToken", 0, "alice", "10.4.0.1", testPassword, http.StatusOK, 2},
		{"ExactHashNeedsNoToken", 0, "dave", "10.4.0.4", h, http.StatusOK, 2},
		{"HalfSecondRefillsOne", 500 * time.Millisecond, "carol", "10.4.0.3", "carol-guess", http.StatusUnauthorized, 3},
		{"EmptyAgain", 0, "erin", "10.4.0.5", "erin-guess", http.StatusServiceUnavailable, 3},
	} {
		clk.Add(tt.advance)
		d := p.Verify(tt.user, tt.ip, h, tt.presented)
		if statusOf(d) != tt.status {
			t.Errorf("%s: status %d (%s), want %d", tt.name, statusOf(d), d.Reason, tt.status)
		}
		if got := compares.Load(); got != tt.compares {
			t.Errorf("%s: compare calls = %d, want %d", tt.name, got, tt.compares)
		}
	}
}

// TestVerifyLoadOneIP is issue 3's requirement: 10,000 wrong passwords for alice from
// one address cost at most IPMaxFailures bcrypt runs, and alice still gets in from
// her own address. The hash is a real cost-10 one.
func TestVerifyLoadOneIP(t *testing.T) {
	t.Parallel()
	clk := testutil.NewClock(time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC))
	p := NewPasswords()
	p.Now = clk.Now
	status := map[int]int{}
	for i := range 10_000 {
		d := p.Verify("alice", "198.51.100.1", testHash10, fmt.Sprintf("guess-%05d", i))
		status[statusOf(d)]++
		if d.Allow {
			t.Fatalf("guess %d allowed", i)
		}
	}
	if status[http.StatusUnauthorized] != 10_000 {
		t.Errorf("statuses = %v, want 10000 × 401", status)
	}
	if got := p.BcryptRuns(); got > int64(p.IPMaxFailures) {
		t.Errorf("BcryptRuns = %d, want ≤ %d", got, p.IPMaxFailures)
	}
	runs := p.BcryptRuns()
	if d := p.Verify("alice", "203.0.113.9", testHash10, testPassword); !d.Allow || statusOf(d) != http.StatusOK {
		t.Errorf("alice's correct password from her address: %+v, want allowed", d)
	}
	if got := p.BcryptRuns(); got != runs+1 {
		t.Errorf("BcryptRuns = %d, want %d", got, runs+1)
	}
}

// TestVerifyHashGuessesLimited: wrong hashes count as failures like wrong passwords, and
// an address blocked for them cannot present even the right hash (threats §3.3 item 6).
func TestVerifyHashGuessesLimited(t *testing.T) {
	p, _ := newTestPasswords()
	h := lowCostHash(t, testPassword)
	wrong := h[:len(h)-1] + map[bool]string{true: "a", false: "b"}[h[len(h)-1] != 'a']
	for i := range p.IPMaxFailures {
		if d := p.Verify("alice", "198.51.100.1", h, wrong); d.Allow {
			t.Fatalf("wrong hash %d allowed", i)
		}
	}
	if d := p.Verify("alice", "198.51.100.1", h, h); d.Allow {
		t.Error("blocked address allowed with the right hash")
	}
	if d := p.Verify("alice", "203.0.113.9", h, h); !d.Allow {
		t.Errorf("right hash from another address: %+v, want allowed", d)
	}
	if got := p.BcryptRuns(); got != 0 {
		t.Errorf("BcryptRuns = %d, want 0: hashes never reach bcrypt", got)
	}
}

// statusOf is the HTTP status authserver answers a verdict with (authserver.Status),
// written here because policy imports no net/http outside its tests.
func statusOf(v Verdict) int {
	switch {
	case v.Allow:
		return http.StatusOK
	case v.Busy:
		return http.StatusServiceUnavailable
	case v.Fault:
		return http.StatusInternalServerError
	}
	return http.StatusUnauthorized
}

// TestVerifyFullTableKeepsBlocks is issue 11 L4: when the address table is full, making
// room never lifts a block (it used to clear the whole table). One address is blocked,
// then maxTracked other addresses each fail once (hashes: no bcrypt).
func TestVerifyFullTableKeepsBlocks(t *testing.T) {
	p, clk := newTestPasswords()
	h := lowCostHash(t, testPassword)
	wrong := changeChar(h, 59)
	const attacker = "198.51.100.66"
	for range p.IPMaxFailures {
		p.Verify("carol", attacker, h, wrong)
	}
	if d := p.Verify("bob", attacker, h, h); d.Allow {
		t.Fatal("precondition: the attacker's address is not blocked")
	}
	for i := range maxTracked + 10 {
		p.Verify(fmt.Sprintf("u%d", i), fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), h, wrong)
	}
	clk.Add(p.IPWindow + time.Second)
	if d := p.Verify("bob", attacker, h, h); d.Allow {
		t.Error("the blocked address got in after the table filled up: the block was lifted")
	}
	if got := len(p.ips.m); got > maxTracked {
		t.Errorf("address table holds %d entries, want ≤ %d", got, maxTracked)
	}
	// A table full of blocks tracks no new address, and keeps every block.
	p2, _ := newTestPasswords()
	p2.ips.max = 3
	for i := range 4 {
		for range p2.IPMaxFailures {
			p2.Verify("carol", fmt.Sprintf("10.7.0.%d", i), h, wrong)
		}
	}
	for i := range 3 {
		if d := p2.Verify("bob", fmt.Sprintf("10.7.0.%d", i), h, h); d.Allow {
			t.Errorf("10.7.0.%d: a block was lifted to make room", i)
		}
	}
	if d := p2.Verify("bob", "10.7.0.3", h, h); !d.Allow {
		t.Errorf("the address that found no room: %+v, want untracked (allowed)", d)
	}
}

// TestVerifyAddressKeys is issue 11 L4: IPv6 addresses count per /64, and an
// IPv4-mapped IPv6 address as its IPv4 address.
func TestVerifyAddressKeys(t *testing.T) {
	for _, tt := range []struct {
		name       string
		fail, next func(i int) string
		blocked    bool
	}{
		{"IPv6SameSlash64", func(i int) string { return fmt.Sprintf("2001:db8:1:2::%x", i+1) },
			func(int) string { return "2001:db8:1:2:ffff:ffff:ffff:ffff" }, true},
		{"IPv6WithZone", func(i int) string { return fmt.Sprintf("fe80::%x%%eth0", i+1) },
			func(int) string { return "fe80::abcd" }, true},
		{"IPv6OtherSlash64", func(i int) string { return fmt.Sprintf("2001:db8:1:2::%x", i+1) },
			func(int) string { return "2001:db8:1:3::1" }, false},
		{"IPv4Mapped", func(int) string { return "::ffff:198.51.100.1" },
			func(int) string { return "198.51.100.1" }, true},
		{"IPv4MappedBack", func(int) string { return "198.51.100.1" },
			func(int) string { return "::ffff:c633:6401" }, true},
		{"IPv4Neighbour", func(int) string { return "198.51.100.1" },
			func(int) string { return "198.51.100.2" }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newTestPasswords()
			h := lowCostHash(t, testPassword)
			for i := range p.IPMaxFailures {
				p.Verify("carol", tt.fail(i), h, changeChar(h, 59))
			}
			d := p.Verify("bob", tt.next(0), h, h)
			if got := !d.Allow; got != tt.blocked {
				t.Errorf("%s after %d failures elsewhere: blocked %v (%s), want %v", tt.next(0), p.IPMaxFailures, got, d.Reason, tt.blocked)
			}
		})
	}
}
