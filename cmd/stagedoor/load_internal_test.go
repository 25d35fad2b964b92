package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/mediamtx"
	"github.com/stagedoor/stagedoor/mediamtx/mediamtxtest"
	"github.com/stagedoor/stagedoor/plugin"
)

// Load tests T20, T21 and T29 of docs/threats.md against the real service, in process
// (startService, as `serve` runs it), with a SQLite file. They assert behaviour under load (every answer right, no 5xx, no
// transport error, no SQLITE_BUSY), never speed: latencies are only logged, because
// the benchmarks own the targets and this runs under -race on 2 cores, perhaps busy
// with other work (TestRaidBurst, an overload by design, also allows fail-closed 503s).

// logPool logs the database pool's statistics: MaxIdleClosed counts connections opened
// for a burst and closed again, each of which ran the DSN's pragmas on open.
func (s *testService) logPool(t *testing.T) {
	t.Helper()
	st := s.svc.db.Stats()
	t.Logf("database pool: %d open (%d in use, %d idle), %d closed for exceeding the idle limit, %d waits for a connection",
		st.OpenConnections, st.InUse, st.Idle, st.MaxIdleClosed, st.WaitCount)
}

// checkLogs fails the test on any SQLite lock error or ERROR line in the service log
// (an ERROR line is a 5xx, a lost audit batch, a failed hook, a sick database ...).
func (s *testService) checkLogs(t *testing.T) {
	t.Helper()
	s.checkLogsExcept(t, nil)
}

// checkLogsExcept is checkLogs, but ERROR lines for which allowed reports true are
// counted by kind instead of failing the test. Lock errors always fail it.
func (s *testService) checkLogsExcept(t *testing.T, allowed func(line string) (kind string, ok bool)) map[string]int {
	t.Helper()
	var bad []string
	kinds := make(map[string]int)
	for line := range strings.SplitSeq(s.logs.String(), "\n") {
		if strings.Contains(line, "SQLITE_BUSY") || strings.Contains(line, "database is locked") {
			bad = append(bad, line)
			continue
		}
		if !strings.Contains(line, `"level":"ERROR"`) {
			continue
		}
		if allowed != nil {
			if kind, ok := allowed(line); ok {
				kinds[kind]++
				continue
			}
		}
		bad = append(bad, line)
	}
	if len(bad) > 0 {
		t.Errorf("service log has %d lock errors or ERROR lines, want 0; first:\n%s", len(bad),
			strings.Join(bad[:min(len(bad), 10)], "\n"))
	}
	return kinds
}

// Kinds of overloadLine.
const (
	shedDeadline  = "auth 503: deadline exceeded"
	shedUnhealthy = "auth 503: database unhealthy"
	shedProbe     = "health: probe outlasted its budget"
)

// overloadLine reports whether an ERROR line of the service log is a fail-closed answer
// to CPU overload rather than a fault: an auth denied with 503 because its decision
// outlived its 2 s budget, or because the health probe outlived its own (one of the
// service's writes held the write turn past 2 s, store.stuckWrite: on a starved CPU an
// audit batch can take that long; or the probe missed its 3 s deadline) and every auth
// was denied until a probe succeeded again. In these tests nothing else touches the
// database, so a slow write or probe is the CPU's doing. A real fault reads otherwise
// (SQLITE_BUSY, read-only, disk I/O, a deleted -wal) and still fails the test.
// MediaMTX reads a 503 as a deny and the encoder or player tries again.
func overloadLine(line string) (string, bool) {
	var e struct{ Level, Msg, Component, Reason, Err string }
	if json.Unmarshal([]byte(line), &e) != nil || e.Level != "ERROR" {
		return "", false
	}
	switch {
	case e.Msg == "auth" && e.Reason == "deadline exceeded":
		return shedDeadline, true
	case e.Msg == "auth" && e.Reason == "database unhealthy":
		return shedUnhealthy, true
	case e.Component == "health" && (strings.HasPrefix(e.Err, "probe database: a write has waited") ||
		e.Err == context.DeadlineExceeded.Error()):
		return shedProbe, true
	}
	return "", false
}

// loadUser is a streamer created through the admin API.
type loadUser struct {
	name, key, fp string
}

// adminDo calls the admin API with the test token and returns the status and body.
func (s *testService) adminDo(ctx context.Context, client *http.Client, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+s.public+"/api/v1/admin"+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, b, err
}

// createUsers makes n users named prefix00, prefix01, ... and returns their first keys.
func (s *testService) createUsers(t *testing.T, prefix string, n int) []loadUser {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	users := make([]loadUser, 0, n)
	for i := range n {
		name := fmt.Sprintf("%s%02d", prefix, i)
		status, body, err := s.adminDo(t.Context(), client, http.MethodPost, "/users", map[string]string{"name": name})
		if err != nil || status != http.StatusCreated {
			t.Fatalf("POST /users %s = %d %s, %v; want 201", name, status, body, err)
		}
		var out struct {
			StreamKey   string `json:"stream_key"`
			Fingerprint string `json:"fingerprint"`
		}
		if err := json.Unmarshal(body, &out); err != nil || !stagedoor.IsKey(out.StreamKey) {
			t.Fatalf("POST /users %s: body %s, err %v; want a stream key", name, body, err)
		}
		users = append(users, loadUser{name: name, key: out.StreamKey, fp: out.Fingerprint})
	}
	return users
}

func loadUUID(a, b int) *string {
	id := fmt.Sprintf("%08x-0000-4000-8000-%012x", a, b)
	return &id
}

func keyPublish(key string, n int) authserver.Request {
	return authserver.Request{IP: "198.51.100.7", Action: "publish", Path: "live/" + key, Protocol: "rtmp",
		ID: loadUUID(1, n), UserAgent: "FMLE/3.0 (compatible; Lavf59.27.100)"}
}

func publicRead(name string, n int) authserver.Request {
	return authserver.Request{IP: fmt.Sprintf("203.0.113.%d", n%250+1), Action: "read", Path: "live/" + name,
		Protocol: "hls", ID: loadUUID(2, n), UserAgent: "hls.js"}
}

// mediaMTXClient makes a new TCP connection per request, as MediaMTX does (a fresh
// transport per call), with its default readTimeout of 10 s as the client timeout.
func mediaMTXClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

// postAuth posts one auth body and returns the status and how long the answer took.
func (s *testService) postAuth(client *http.Client, r authserver.Request) (int, time.Duration, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	res, err := client.Post("http://"+s.internal+"/mediamtx/auth", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, time.Since(start), err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
	res.Body.Close()
	return res.StatusCode, time.Since(start), nil
}

// Statuses the auth handler answers (authserver: 204 is its only 2xx; every denial of
// an unknown key is 401 with the body "denied").
const (
	authAllowed = http.StatusNoContent
	authDenied  = http.StatusUnauthorized
)

// latencies collects durations from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// summary is "n=…, p50=…, p99=…, max=…".
func (l *latencies) summary() string {
	l.mu.Lock()
	d := slices.Clone(l.d)
	l.mu.Unlock()
	if len(d) == 0 {
		return "n=0"
	}
	slices.Sort(d)
	p := func(q float64) time.Duration { return d[max(0, int(math.Ceil(q*float64(len(d))))-1)] }
	return fmt.Sprintf("n=%d p50=%v p99=%v max=%v", len(d), p(0.50), p(0.99), d[len(d)-1])
}

// failures keeps the first few failure messages from many goroutines and counts all.
type failures struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (f *failures) addf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if len(f.first) < 20 {
		f.first = append(f.first, fmt.Sprintf(format, args...))
	}
}

func (f *failures) report(t *testing.T, what string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n > 0 {
		t.Errorf("%d %s, want 0; first:\n%s", f.n, what, strings.Join(f.first, "\n"))
	}
}

// ensureFiles raises the soft RLIMIT_NOFILE to need, or skips if the hard limit is lower.
func ensureFiles(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("Getrlimit: %v", err)
	}
	if lim.Cur >= need {
		return
	}
	if lim.Max < need {
		t.Skipf("needs %d open files, hard limit is %d: raise it (ulimit -Hn)", need, lim.Max)
	}
	lim.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("needs %d open files, soft limit is below and Setrlimit failed: %v", need, err)
	}
}

// slowConn is what one slowloris client saw.
type slowConn struct {
	opened, closed time.Time // closed is zero if the server never closed it
	sent           int       // header bytes written
	err            error     // the read or write error that showed the close
}

// slowloris sends a partial request header, then one byte a second, until the server
// closes the connection or giveUp passes, and records what it saw in r. ready is
// signalled once r.opened is set (zero if the dial failed) and the header started.
func slowloris(r *slowConn, addr string, giveUp time.Duration, ready func()) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		r.err = err
		ready()
		return
	}
	defer c.Close()
	r.opened = time.Now()
	head := "POST /mediamtx/auth HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: "
	n, err := io.WriteString(c, head)
	r.sent = n
	ready()
	buf := make([]byte, 512)
	for time.Since(r.opened) < giveUp {
		if err != nil {
			r.closed, r.err = time.Now(), err
			return
		}
		// Waiting one second in Read both paces the trickle and sees the close at once.
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		var got int
		got, err = c.Read(buf)
		if got > 0 {
			// The server answered something instead of only closing (net/http closes a
			// header timeout silently): what matters is the close, so read on to it.
			continue
		}
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			_, err = c.Write([]byte{'a'})
			if err == nil {
				r.sent++
			}
		}
	}
	r.err = errors.New("still open when the client gave up")
}

// TestSlowlorisDoesNotStarveAuth is T20: while 1,000 connections trickle a request
// header at 1 B/s, MediaMTX-style auth requests (a new connection each) all get the
// right answer before MediaMTX would give up, and the server closes every slow
// connection itself, after ReadHeaderTimeout.
//
// The bounds are outcomes that hold on a loaded 2-core machine under -race, where this
// test once failed with the server doing its job: answerBound is MediaMTX's readTimeout
// (it was 2 s; the slowest answer under load took 1.85 s), and closeSlack only has to
// tell "closed by the server's timeout" from "held open until the client gave up" (it
// was 3 s; under load the closes came up to 4 s late, when the accept backlog and the
// scheduler reached them). The figures are logged.
func TestSlowlorisDoesNotStarveAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: 1,000 slow connections for about 6 s; skipped under -short")
	}
	const (
		slowConns   = 1000
		legitimate  = 200
		answerBound = 10 * time.Second // functional bound: MediaMTX waits 10 s, then denies
		closeSlack  = 15 * time.Second // accept backlog and -race scheduling on busy cores
	)
	ensureFiles(t, 2*slowConns+1000) // both ends of every slow connection, plus the rest
	headerTimeout := newServer(http.NotFoundHandler()).ReadHeaderTimeout
	giveUp := headerTimeout + closeSlack + 5*time.Second

	svc := startTestService(t)
	u := svc.createUsers(t, "slow", 1)[0]
	wrongKey := stagedoor.NewKey()

	results := make([]slowConn, slowConns)
	var ready, done sync.WaitGroup
	ready.Add(slowConns)
	for i := range slowConns {
		done.Go(func() { slowloris(&results[i], svc.internal, giveUp, ready.Done) })
	}
	ready.Wait()
	trickleStart := time.Now()
	for i := range results {
		if results[i].opened.IsZero() { // only opened: the other fields are still being written
			done.Wait()
			t.Fatalf("slow connection %d: dial: %v", i, results[i].err)
		}
	}

	// MediaMTX asks one auth at a time (its path manager is one goroutine), so these run
	// in sequence, alternating a valid and an unknown key.
	client := mediaMTXClient()
	var lat latencies
	var bad failures
	answered := make([]time.Time, 0, legitimate)
	for i := range legitimate {
		key, want := u.key, authAllowed
		if i%2 == 1 {
			key, want = wrongKey, authDenied
		}
		status, took, err := svc.postAuth(client, keyPublish(key, i))
		lat.add(took)
		answered = append(answered, time.Now())
		switch {
		case err != nil:
			bad.addf("request %d: %v after %v", i, err, took)
		case status != want:
			bad.addf("request %d: status %d, want %d", i, status, want)
		case took > answerBound:
			bad.addf("request %d: answered after %v, want within %v", i, took, answerBound)
		}
	}
	legitEnd := time.Now()
	bad.report(t, "legitimate auth requests failed, were wrong or slow")
	t.Logf("legitimate auth during slowloris: %s (phase took %v)", lat.summary(), legitEnd.Sub(trickleStart))

	done.Wait()
	var (
		earlyClosed int
		firstClose  time.Time
		slow        failures
		held        latencies
		bytesSent   int
	)
	for i, r := range results {
		bytesSent += r.sent
		if r.closed.IsZero() {
			slow.addf("slow connection %d: %v (sent %d bytes)", i, r.err, r.sent)
			continue
		}
		if r.closed.Before(legitEnd) {
			earlyClosed++
		}
		if firstClose.IsZero() || r.closed.Before(firstClose) {
			firstClose = r.closed
		}
		if !errors.Is(r.err, io.EOF) && !errors.Is(r.err, syscall.ECONNRESET) && !errors.Is(r.err, syscall.EPIPE) {
			slow.addf("slow connection %d: ended with %v, want EOF or reset", i, r.err)
		}
		held.add(r.closed.Sub(r.opened))
		if d := r.closed.Sub(r.opened); d > headerTimeout+closeSlack {
			slow.addf("slow connection %d: closed after %v, want within %v + %v", i, d, headerTimeout, closeSlack)
		}
	}
	slow.report(t, "slow connections not closed by the server in time")
	// The legitimate requests must have run under the attack. On a quiet machine all 200
	// are answered before the first slow connection reaches ReadHeaderTimeout; on a busy
	// one the later ones may not be (the server then closing slow connections is right),
	// so how many were is logged, and the test only fails if none was: then it proved
	// nothing.
	underFullAttack := 0
	for _, at := range answered {
		if firstClose.IsZero() || at.Before(firstClose) {
			underFullAttack++
		}
	}
	t.Logf("%d of %d legitimate requests answered while all %d slow connections were open; %d slow connections closed before the last was answered",
		underFullAttack, legitimate, slowConns, earlyClosed)
	if underFullAttack == 0 {
		t.Errorf("no legitimate request was answered while all slow connections were open; the test did not overlap them")
	}
	t.Logf("slow connections: %d, held open by the server %s; %d header bytes trickled in total",
		slowConns, held.summary(), bytesSent)
	svc.logPool(t)
	svc.stop()
	svc.checkLogs(t)
}

// TestRaidBurst is T21: 200 key publishes and 1,000 public reads at once, each on a new
// connection. Every request is answered, and every answer is right or a fail-closed 503
// that the log shows was an overload denial; no other 5xx, no lock error. Latency and
// the number of 503s are only logged.
//
// Why 503s are allowed: 1,220 connections at once are an overload on 2 cores under
// -race, more so when other processes keep the cores busy. On a quiet machine there are
// none; on one kept busy by two CPU hogs a request then takes 2-8 s from dial to answer,
// public reads included, which touch neither the database nor any lock, and the service
// sheds what outlives its budgets exactly as designed: a decision still waiting for its
// one key lookup after 2 s is denied with 503 (a MediaMTX-side timeout would deny after
// 10 s with the auth path blocked meanwhile), and a health probe starved past its budget
// denies everything until a probe succeeds again (see overloadLine). How many are shed
// depends on the machine, not the code, so it is not asserted; what would be a defect is
// asserted: a wrong answer, an answer missing, an error the log does not explain as
// overload, or nothing allowed at all. The one real defect this test found under load,
// every request of a burst running its own SQLite read of the same key after the cache
// was dropped (72 valid publishes refused in the run that found it), is fixed in CachedCredentials
// and tested deterministically in policy (TestCachedCredentialsSharedLookup).
func TestRaidBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: 1,220 concurrent connections; skipped under -short")
	}
	const (
		users     = 20
		publishes = 200
		unknowns  = 20 // denial controls among the publishes: an unknown key is a 401
		reads     = 1000
	)
	ensureFiles(t, 2*(publishes+unknowns+reads)+1000)
	svc := startTestService(t)
	us := svc.createUsers(t, "raid", users)

	// kind is one sort of request: its answers by status.
	type kind struct {
		name     string
		lat      latencies
		shed, ok atomic.Int64 // answered 503 (overload), answered right
	}
	pub, deny, read := &kind{name: "key publishes"}, &kind{name: "unknown-key publishes"}, &kind{name: "public reads"}
	type job struct {
		req  authserver.Request
		want int
		k    *kind
	}
	jobs := make([]job, 0, publishes+unknowns+reads)
	for i := range publishes {
		jobs = append(jobs, job{keyPublish(us[i%users].key, i), authAllowed, pub})
	}
	for i := range unknowns {
		jobs = append(jobs, job{keyPublish(stagedoor.NewKey(), publishes+i), authDenied, deny})
	}
	for i := range reads {
		jobs = append(jobs, job{publicRead(us[i%users].name, i), authAllowed, read})
	}

	client := mediaMTXClient()
	var bad failures
	var fiveXX atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			<-start
			status, took, err := svc.postAuth(client, j.req)
			j.k.lat.add(took)
			switch {
			case err != nil:
				bad.addf("job %d (%s %s): %v after %v", i, j.req.Action, j.req.Protocol, err, took)
			case status == http.StatusServiceUnavailable:
				j.k.shed.Add(1) // fail closed under overload; matched against the log below
			case status >= 500:
				fiveXX.Add(1)
				bad.addf("job %d (%s %s): status %d", i, j.req.Action, j.req.Protocol, status)
			case status != j.want:
				bad.addf("job %d (%s %s): status %d, want %d", i, j.req.Action, j.req.Protocol, status, j.want)
			default:
				j.k.ok.Add(1)
			}
		})
	}
	begin := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(begin)
	bad.report(t, "raid requests failed or were answered wrongly")
	if n := fiveXX.Load(); n > 0 {
		t.Errorf("%d answers were a 5xx other than 503, want 0", n)
	}
	t.Logf("raid of %d requests took %v", len(jobs), took)
	t.Logf("key publish (allowed): %s", pub.lat.summary())
	t.Logf("unknown key publish (denied): %s", deny.lat.summary())
	t.Logf("public read (allowed): %s", read.lat.summary())
	svc.logPool(t)
	svc.stop()

	shed := pub.shed.Load() + deny.shed.Load() + read.shed.Load()
	kinds := svc.checkLogsExcept(t, overloadLine)
	t.Logf("answered 503 under overload (fail closed): %d of %d key publishes, %d of %d unknown-key publishes, %d of %d public reads; log: %v",
		pub.shed.Load(), publishes, deny.shed.Load(), unknowns, read.shed.Load(), reads, kinds)
	if logged := int64(kinds[shedDeadline] + kinds[shedUnhealthy]); logged != shed {
		t.Errorf("%d answers were 503 but the log has %d overload denials: every 503 must be one", shed, logged)
	}
	if kinds[shedUnhealthy] > 0 && kinds[shedProbe] == 0 {
		t.Errorf("auths denied as database unhealthy, but the log does not show the health probe outliving its budget")
	}
	for _, k := range []*kind{pub, deny, read} {
		if k.ok.Load() == 0 {
			t.Errorf("none of the %s was answered right: that is an outage, not overload", k.name)
		}
	}
}

// checkFake fails the test unless the plugin set aliases (so hooks were confirmed and
// wrote), kicked nobody (no soak stream lost its credential) and called nothing else.
func checkFake(t *testing.T, f *mediamtxtest.Server) {
	t.Helper()
	t.Logf("fake MediaMTX: %d alias replaces, %d alias deletes, %d kicks, %d unexpected requests",
		f.Replaced.Load(), f.Deleted.Load(), f.Kicked.Load(), f.Unexpected.Load())
	if f.Replaced.Load() == 0 {
		t.Errorf("no alias was ever set: no available hook was confirmed, so the soak wrote nothing through hooks")
	}
	if n := f.Kicked.Load(); n > 0 {
		t.Errorf("%d kicks, want 0: no soak stream uses a revoked key or a banned user", n)
	}
	if n := f.Unexpected.Load(); n > 0 {
		t.Errorf("%d requests to routes the plugin does not use, want 0", n)
	}
}

// postHook posts ev to the hook endpoint as plugin.Notify does and returns the status.
func (s *testService) postHook(client *http.Client, ev plugin.Event) (int, time.Duration, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return 0, 0, err
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+s.internal+"/internal/hook", bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(plugin.HookSecretHeader, testHookSecret)
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return 0, time.Since(start), err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
	res.Body.Close()
	return res.StatusCode, time.Since(start), nil
}

// TestHTTPSoakWithHooks is T29 through HTTP. For 30 s, 200 goroutines share the service:
// 150 ask key-publish auths, each once a second (a valid key, then an unknown one); 30
// post available / unavailable hook pairs for their own user as fast as they are
// answered; 10 rotate their own user's key through the admin API twice a second (20
// rotations/s in all); one lists users. No 5xx, no transport error, no SQLite lock error
// or ERROR line in the log, and every decision is right.
//
// The auths are paced, not a closed loop: MediaMTX asks publish auth one call at a time
// from its path manager, so one MediaMTX offers at most about 200/s, and 150/s is near
// that. A closed loop of 150 goroutines on 2 cores under -race offers whatever the CPU
// allows and measures overload instead, where a deny with 503 after the 2 s decision
// timeout is the designed, fail-closed answer.
//
// Hooks need MediaMTX: Manager.HandleEvent confirms an available event with
// /v3/paths/get/<path> and answers 500 when that call fails (a missing confirmation is
// an error, not "not live"), then sets the alias with /v3/config/paths/replace. Pointing
// --mediamtx-api at a dead port would make every available hook a 500 and test nothing
// but that error path; answering 404 would make every hook a no-op 204 with no write.
// So a small stateful fake stands in for MediaMTX: a hook goroutine marks its key path
// available with a fresh source id before posting the event, as MediaMTX does, and
// unavailable before posting that. The reconciler sees the same state. Each hook must
// therefore answer 204 and write (live state, key touch, then alias or offline).
//
// Rotated keys are checked too, not only the stable ones: each key belongs to one
// rotating goroutine, which asks only after its admin call returned, and the admin API
// drops the auth cache before it answers, so a new key must be allowed at once and a
// revoked one denied at once.
func TestHTTPSoakWithHooks(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test: 30 s of mixed load; skipped under -short")
	}
	const (
		duration   = 30 * time.Second
		authers    = 150
		hookers    = 30
		rotators   = 10
		stableN    = 20
		authEach   = time.Second            // 150 auths/s in all; see below
		rotateEach = 500 * time.Millisecond // 10 rotators × 2/s = T29's 20 rotations/s
		listEvery  = 100 * time.Millisecond
	)
	ensureFiles(t, 4000)
	fake := mediamtxtest.New(t, adminUser, "")
	svc := startTestService(t, "--mediamtx-api", fake.URL)
	stable := svc.createUsers(t, "stable", stableN)
	hookUsers := svc.createUsers(t, "hook", hookers)
	rotUsers := svc.createUsers(t, "rot", rotators)
	totalUsers := stableN + hookers + rotators

	var (
		stop                             atomic.Bool
		wg                               sync.WaitGroup
		authLat, hookLat, rotLat, adminL latencies
		transport, fiveXX, wrong         failures
		nAuth, nHook, nRot, nList        atomic.Int64
	)
	// check sorts one answer into the failure kinds; it reports whether it was right.
	check := func(what string, status int, err error, want int) bool {
		switch {
		case err != nil:
			transport.addf("%s: %v", what, err)
		case status >= 500:
			fiveXX.addf("%s: status %d", what, status)
		case status != want:
			wrong.addf("%s: status %d, want %d", what, status, want)
		default:
			return true
		}
		return false
	}

	for g := range authers {
		wg.Go(func() {
			client := mediaMTXClient()
			u, unknown := stable[g%stableN], stagedoor.NewKey()
			time.Sleep(authEach * time.Duration(g) / authers) // spread the goroutines over the period
			tick := time.NewTicker(authEach)
			defer tick.Stop()
			for i := 0; !stop.Load(); i++ {
				<-tick.C
				key, want := u.key, authAllowed
				if i%2 == 1 {
					key, want = unknown, authDenied
				}
				status, took, err := svc.postAuth(client, keyPublish(key, g<<20|i))
				authLat.add(took)
				nAuth.Add(1)
				check(fmt.Sprintf("auth g%d #%d user %s", g, i, u.name), status, err, want)
			}
		})
	}
	for g := range hookers {
		wg.Go(func() {
			client := mediaMTXClient() // hook processes are short-lived: a new connection each
			u := hookUsers[g]
			path := "live/" + u.key
			for i := 0; !stop.Load(); i++ {
				src := &mediamtx.PathSource{Type: "rtmpConn", ID: *loadUUID(3<<16|g, i)}
				fake.SetSource(path, src.Type, src.ID)
				for _, kind := range []string{plugin.EventAvailable, plugin.EventUnavailable} {
					if kind == plugin.EventUnavailable {
						fake.SetSource(path, "", "")
					}
					status, took, err := svc.postHook(client, plugin.Event{Kind: kind, Path: path, SourceID: src.ID, SourceType: src.Type})
					hookLat.add(took)
					nHook.Add(1)
					check(fmt.Sprintf("hook %s g%d #%d user %s", kind, g, i, u.name), status, err, http.StatusNoContent)
				}
			}
		})
	}
	for g := range rotators {
		wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			auth := mediaMTXClient()
			u := rotUsers[g]
			tick := time.NewTicker(rotateEach)
			defer tick.Stop()
			for i := 0; !stop.Load(); i++ {
				<-tick.C
				what := fmt.Sprintf("rotation g%d #%d user %s", g, i, u.name)
				start := time.Now()
				status, body, err := svc.adminDo(context.Background(), client, http.MethodPost, "/users/"+u.name+"/keys",
					map[string]string{"label": "rotation " + strconv.Itoa(i)})
				rotLat.add(time.Since(start))
				if !check(what+": add key", status, err, http.StatusCreated) {
					continue
				}
				var added struct {
					StreamKey   string `json:"stream_key"`
					Fingerprint string `json:"fingerprint"`
				}
				if err := json.Unmarshal(body, &added); err != nil || !stagedoor.IsKey(added.StreamKey) {
					wrong.addf("%s: add key body %s: %v", what, body, err)
					continue
				}
				status, _, err = svc.postAuth(auth, keyPublish(added.StreamKey, g<<20|i))
				check(what+": publish with the new key", status, err, authAllowed)

				start = time.Now()
				status, _, err = svc.adminDo(context.Background(), client, http.MethodDelete, "/users/"+u.name+"/keys/"+u.fp, nil)
				rotLat.add(time.Since(start))
				if !check(what+": revoke old key", status, err, http.StatusOK) {
					continue
				}
				status, _, err = svc.postAuth(auth, keyPublish(u.key, g<<20|i))
				check(what+": publish with the revoked key", status, err, authDenied)
				u = loadUser{name: u.name, key: added.StreamKey, fp: added.Fingerprint}
				nRot.Add(1)
			}
		})
	}
	wg.Go(func() {
		client := &http.Client{Timeout: 10 * time.Second}
		for !stop.Load() {
			start := time.Now()
			status, body, err := svc.adminDo(context.Background(), client, http.MethodGet, "/users", nil)
			adminL.add(time.Since(start))
			nList.Add(1)
			if check("list users", status, err, http.StatusOK) {
				var list []json.RawMessage
				if err := json.Unmarshal(body, &list); err != nil || len(list) != totalUsers {
					wrong.addf("list users: %d users (err %v), want %d", len(list), err, totalUsers)
				}
			}
			time.Sleep(listEvery)
		}
	})

	time.Sleep(duration)
	stop.Store(true)
	wg.Wait()
	svc.logPool(t)
	svc.stop()

	transport.report(t, "transport errors")
	fiveXX.report(t, "5xx answers")
	wrong.report(t, "wrong answers")
	svc.checkLogs(t)
	checkFake(t, fake)
	t.Logf("%v soak: %d auths, %d hook posts, %d key rotations, %d user listings",
		duration, nAuth.Load(), nHook.Load(), nRot.Load(), nList.Load())
	t.Logf("auth: %s", authLat.summary())
	t.Logf("hook: %s", hookLat.summary())
	t.Logf("admin key add/revoke: %s", rotLat.summary())
	t.Logf("admin list users: %s", adminL.summary())
	if nRot.Load() == 0 || nHook.Load() == 0 {
		t.Errorf("no rotation or no hook completed: the soak did not mix its load")
	}
}
