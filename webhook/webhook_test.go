package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testdb"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/store"
	"github.com/stagedoor/stagedoor/webhook"
)

const secret = "whsec-test-0123456789"

// newDB opens a fresh database whose clock the test moves (the dispatcher goroutine
// reads it meanwhile; testutil.Clock is safe for that).
func newDB(t *testing.T) (*store.DB, *testutil.Clock) {
	t.Helper()
	db := testdb.MustOpen(t)
	c := testutil.NewClock(time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC))
	db.Now = c.Now
	return db, c
}

// delivery is one request a receiver got.
type delivery struct {
	header http.Header
	body   []byte
}

// receiver is a webhook endpoint answering with a settable status.
type receiver struct {
	srv    *httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	got    []delivery
}

func newReceiver(t *testing.T, status int) *receiver {
	t.Helper()
	r := &receiver{}
	r.status.Store(int32(status))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, delivery{header: req.Header.Clone(), body: body})
		r.mu.Unlock()
		w.WriteHeader(int(r.status.Load()))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// start runs d until the returned stop is called (or the test ends); stop waits for Run
// to return, so that the test may then move the clock without racing a delivery.
func start(t *testing.T, d *webhook.Dispatcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds, failing after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within 5 s", what)
		}
		<-tick.C
	}
}

// queue adds an event and returns its id. It finds the event as the newest due one, so
// call it only while no dispatcher runs.
func queue(t *testing.T, db *store.DB, event, user, channel string) int64 {
	t.Helper()
	if err := db.AddEvent(t.Context(), event, user, channel); err != nil {
		t.Fatalf("AddEvent: %v", err)
	}
	evs := due(t, db)
	if len(evs) == 0 {
		t.Fatal("no event due right after AddEvent")
	}
	e := evs[len(evs)-1]
	if e.Event != event || e.User != user || e.Channel != channel || e.Attempts != 0 {
		t.Fatalf("newest due event = %+v, want the %s just queued", e, event)
	}
	return e.ID
}

// attempt is the Reason the dispatcher audits for the n-th attempt at event id: the
// count comes from the outbox (DueEvents' Attempts + 1), so it shows what RetryEvent
// stored.
func attempt(event string, id int64, n int) string {
	return fmt.Sprintf("%s #%d attempt %d", event, id, n)
}

func webhookAudit(t *testing.T, db *store.DB) []stagedoor.AuditEntry {
	t.Helper()
	es, err := db.Audit(t.Context(), stagedoor.AuditFilter{})
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	var out []stagedoor.AuditEntry
	for _, e := range es {
		if e.Kind == "webhook" {
			out = append(out, e)
		}
	}
	return out
}

func due(t *testing.T, db *store.DB) []stagedoor.OutboxEvent {
	t.Helper()
	evs, err := db.DueEvents(t.Context(), 100)
	if err != nil {
		t.Fatalf("DueEvents: %v", err)
	}
	return evs
}

func dueCount(t *testing.T, db *store.DB) int {
	t.Helper()
	return len(due(t, db))
}

// results counts OnDelivery calls.
type results struct{ ok, failed atomic.Int64 }

func (r *results) record(_ string, ok bool) {
	if ok {
		r.ok.Add(1)
	} else {
		r.failed.Add(1)
	}
}

func TestDeliverSignedEvent(t *testing.T) {
	db, clk := newDB(t)
	nu, err := db.CreateUser(t.Context(), "alice")
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	rcv := newReceiver(t, http.StatusNoContent)
	id := queue(t, db, stagedoor.EventStreamStarted, "alice", "alices_show")
	at := clk.Now()

	var res results
	d := webhook.NewDispatcher(db, testutil.Discard(), []string{rcv.srv.URL + "/hook"}, secret)
	d.OnDelivery = res.record
	start(t, d)
	waitFor(t, "event delivered and audited", func() bool { return len(webhookAudit(t, db)) == 1 })

	got := rcv.deliveries()
	if len(got) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(got))
	}
	h, body := got[0].header, got[0].body
	for _, tt := range []struct {
		name, header, want string
	}{
		{"EventNamed", webhook.HeaderEvent, stagedoor.EventStreamStarted},
		{"DeliveryIsOutboxID", webhook.HeaderDelivery, strconv.FormatInt(id, 10)},
		{"JSONBody", "Content-Type", "application/json"},
	} {
		if v := h.Get(tt.header); v != tt.want {
			t.Errorf("%s: %s = %q, want %q", tt.name, tt.header, v, tt.want)
		}
	}
	ts, err := strconv.ParseInt(h.Get(webhook.HeaderTimestamp), 10, 64)
	if err != nil {
		t.Fatalf("%s = %q: %v", webhook.HeaderTimestamp, h.Get(webhook.HeaderTimestamp), err)
	}
	if got, want := h.Get(webhook.HeaderSignature), webhook.Sign(secret, ts, body); got != want {
		t.Errorf("%s = %q, want Sign(secret, ts, body) = %q", webhook.HeaderSignature, got, want)
	}

	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	want := map[string]any{"id": float64(id), "event": stagedoor.EventStreamStarted, "user": "alice",
		"channel": "alices_show", "at": at.Format(time.RFC3339)}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("body = %v, want %v", fields, want)
	}
	for _, secretish := range []string{nu.StreamKey, stagedoor.KeyPrefix, nu.Fingerprint} {
		if strings.Contains(string(body), secretish) || strings.Contains(fmt.Sprint(h), secretish) {
			t.Errorf("delivery carries %q: %s", secretish, body)
		}
	}

	// One attempt, and finished: not due now, nor a day later (retries wait 5 min at most).
	if e := webhookAudit(t, db)[0]; e.Decision != "delivered" || e.User != "alice" || e.Reason != attempt(stagedoor.EventStreamStarted, id, 1) {
		t.Errorf("audit entry = %+v, want decision delivered for alice, reason %q", e, attempt(stagedoor.EventStreamStarted, id, 1))
	}
	if n := dueCount(t, db); n != 0 {
		t.Errorf("due events right after delivery = %d, want 0", n)
	}
	clk.Add(24 * time.Hour)
	if n := dueCount(t, db); n != 0 {
		t.Errorf("due events a day later = %d, want 0", n)
	}

	// A second event proves the first is not sent again: the receiver counts per id.
	if err := db.AddEvent(t.Context(), stagedoor.EventUserBanned, "alice", "alice"); err != nil {
		t.Fatalf("AddEvent: %v", err)
	}
	d.Wake()
	waitFor(t, "second event delivered and audited", func() bool { return len(webhookAudit(t, db)) == 2 })
	perID := map[string]int{}
	var id2 int64
	for _, g := range rcv.deliveries() {
		h := g.header.Get(webhook.HeaderDelivery)
		perID[h]++
		if n, err := strconv.ParseInt(h, 10, 64); err == nil && n != id {
			id2 = n
		}
	}
	if wantPer := map[string]int{strconv.FormatInt(id, 10): 1, strconv.FormatInt(id2, 10): 1}; id2 <= id || !reflect.DeepEqual(perID, wantPer) {
		t.Errorf("deliveries per id = %v, want one for %d and one for a newer id", perID, id)
	}
	if e := webhookAudit(t, db)[0]; e.Decision != "delivered" || e.Reason != attempt(stagedoor.EventUserBanned, id2, 1) {
		t.Errorf("second audit entry = %+v, want delivered, reason %q", e, attempt(stagedoor.EventUserBanned, id2, 1))
	}
	if n := dueCount(t, db); n != 0 {
		t.Errorf("due events after the second delivery = %d, want 0", n)
	}
	waitFor(t, "OnDelivery told twice", func() bool { return res.ok.Load() == 2 })
	if n := res.failed.Load(); n != 0 {
		t.Errorf("OnDelivery failures = %d, want 0", n)
	}
}

func TestDeliverStoreEvents(t *testing.T) {
	db := testdb.MustOpen(t)
	ctx := t.Context()
	if _, err := db.CreateUser(ctx, "alice"); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if err := db.SetActive(ctx, "alice", false); err != nil {
		t.Fatalf("ban: %v", err)
	}
	if _, err := db.ResetKeysWith(ctx, "alice", stagedoor.Revocation{}); err != nil {
		t.Fatalf("reset: %v", err)
	}
	rcv := newReceiver(t, http.StatusOK)
	start(t, webhook.NewDispatcher(db, testutil.Discard(), []string{rcv.srv.URL}, secret))
	waitFor(t, "both events delivered", func() bool { return len(rcv.deliveries()) == 2 && dueCount(t, db) == 0 })

	var got []string
	for _, g := range rcv.deliveries() {
		got = append(got, g.header.Get(webhook.HeaderEvent))
		if strings.Contains(string(g.body), stagedoor.KeyPrefix) {
			t.Errorf("body carries a key: %s", g.body)
		}
	}
	if want := []string{stagedoor.EventUserBanned, stagedoor.EventKeyRotated}; !reflect.DeepEqual(got, want) {
		t.Errorf("events delivered = %v, want %v (oldest first)", got, want)
	}
}

func TestRetryThenGiveUp(t *testing.T) {
	db, clk := newDB(t)
	rcv := newReceiver(t, http.StatusInternalServerError)
	id := queue(t, db, stagedoor.EventStreamStopped, "alice", "alice")

	var res results
	d := webhook.NewDispatcher(db, testutil.Discard(), []string{rcv.srv.URL}, secret)
	d.MaxAttempts = 3
	d.OnDelivery = res.record
	stop := start(t, d)

	// Each attempt's audited number comes from the attempts the outbox stored for the
	// previous ones; that each retry came at all shows the event stayed pending, and the
	// end shows it finished.
	for _, step := range []struct {
		name         string
		advance      time.Duration // the clock moves by this, then Wake
		wantAttempts int
		wantDecision string
		notDueUntil  time.Duration // after this attempt: still not due this long after it
	}{
		{"FirstFailureRetried", 0, 1, "retry", time.Second - time.Nanosecond},
		{"SecondFailureBacksOffLonger", time.Second, 2, "retry", 2*time.Second - time.Nanosecond},
		{"ThirdFailureGivesUp", 2 * time.Second, 3, "failed", 0},
	} {
		clk.Add(step.advance)
		d.Wake()
		waitFor(t, step.name, func() bool { return len(webhookAudit(t, db)) == step.wantAttempts })

		e := webhookAudit(t, db)[0]
		if e.Decision != step.wantDecision || e.User != "alice" || !strings.Contains(e.Reason, "status 500") ||
			!strings.HasPrefix(e.Reason, attempt(stagedoor.EventStreamStopped, id, step.wantAttempts)+":") {
			t.Errorf("%s: audit = %+v, want decision %q for attempt %d naming status 500", step.name, e, step.wantDecision, step.wantAttempts)
		}
		if n := len(rcv.deliveries()); n != step.wantAttempts {
			t.Errorf("%s: receiver got %d requests, want %d", step.name, n, step.wantAttempts)
		}
		if n := dueCount(t, db); n != 0 {
			t.Errorf("%s: due right after the attempt = %d, want 0", step.name, n)
		}
		if step.notDueUntil > 0 {
			clk.Add(step.notDueUntil)
			if n := dueCount(t, db); n != 0 {
				t.Errorf("%s: due %v later = %d, want 0 (backoff)", step.name, step.notDueUntil, n)
			}
			clk.Add(-step.notDueUntil)
		}
	}
	stop() // a delivery now could hide an event that is still due
	clk.Add(time.Hour)
	if n := dueCount(t, db); n != 0 {
		t.Errorf("due after giving up = %d, want 0", n)
	}
	waitFor(t, "OnDelivery told three times", func() bool { return res.failed.Load() == 3 })
	if n := res.ok.Load(); n != 0 {
		t.Errorf("OnDelivery successes = %d, want 0", n)
	}
}

func TestOneFailingURLRetries(t *testing.T) {
	db, clk := newDB(t)
	good := newReceiver(t, http.StatusOK)
	bad := newReceiver(t, http.StatusBadGateway)
	id := queue(t, db, stagedoor.EventUserUnbanned, "alice", "alice")
	stop := start(t, webhook.NewDispatcher(db, testutil.Discard(), []string{good.srv.URL, bad.srv.URL}, secret))
	waitFor(t, "attempt audited", func() bool { return len(webhookAudit(t, db)) == 1 })
	stop() // nothing delivers while the test moves the clock

	if e := webhookAudit(t, db)[0]; e.Decision != "retry" || !strings.Contains(e.Reason, "status 502") {
		t.Errorf("audit = %+v, want a retry naming status 502", e)
	}
	if g, b := len(good.deliveries()), len(bad.deliveries()); g != 1 || b != 1 {
		t.Errorf("deliveries good/bad = %d/%d, want 1/1", g, b)
	}
	if n := dueCount(t, db); n != 0 {
		t.Errorf("due right after the failure = %d, want 0", n)
	}
	// Pending with one attempt: due again after the backoff.
	clk.Add(time.Second)
	if evs := due(t, db); len(evs) != 1 || evs[0].ID != id || evs[0].Attempts != 1 {
		t.Errorf("due after the backoff = %+v, want event %d with 1 attempt", evs, id)
	}
}

func TestUnreachableURLNotLeaked(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL + "/hook?token=leaky-token"
	dead.Close()
	for _, tt := range []struct {
		name, url, wantReason string
	}{
		{"UnreachableNamesHostOnly", url, "unreachable"},
		{"BadURLNamesNothing", "http://[::1/hook?token=leaky-token", "bad webhook url"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db, clk := newDB(t)
			id := queue(t, db, stagedoor.EventStreamStarted, "alice", "alice")
			stop := start(t, webhook.NewDispatcher(db, testutil.Discard(), []string{tt.url}, secret))
			waitFor(t, "attempt audited", func() bool { return len(webhookAudit(t, db)) == 1 })
			stop()
			e := webhookAudit(t, db)[0]
			if e.Decision != "retry" || !strings.Contains(e.Reason, tt.wantReason) {
				t.Errorf("audit = %+v, want a retry naming %q", e, tt.wantReason)
			}
			if strings.Contains(e.Reason, "leaky-token") {
				t.Errorf("audit reason %q carries the URL's query", e.Reason)
			}
			// Pending with one attempt: due again after the backoff.
			clk.Add(time.Second)
			if evs := due(t, db); len(evs) != 1 || evs[0].ID != id || evs[0].Attempts != 1 {
				t.Errorf("due after the backoff = %+v, want event %d with 1 attempt", evs, id)
			}
		})
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestNoURLsFinishesWithoutHTTP(t *testing.T) {
	db, clk := newDB(t)
	for _, ev := range []string{stagedoor.EventStreamStarted, stagedoor.EventStreamStopped, stagedoor.EventKeyRotated} {
		queue(t, db, ev, "alice", "alice")
	}
	var calls atomic.Int64
	d := webhook.NewDispatcher(db, testutil.Discard(), nil, "")
	d.Client = &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
		calls.Add(1)
		return nil, fmt.Errorf("no request expected")
	})}
	stop := start(t, d)
	waitFor(t, "events finished", func() bool { return dueCount(t, db) == 0 })
	stop()

	// Finished, not retried: none is due a day later (retries wait 5 min at most).
	clk.Add(24 * time.Hour)
	if evs := due(t, db); len(evs) != 0 {
		t.Errorf("due a day later = %+v, want none", evs)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("HTTP requests = %d, want 0", n)
	}
	if es := webhookAudit(t, db); len(es) != 0 {
		t.Errorf("webhook audit entries = %+v, want none", es)
	}
}

func TestWakeNeverBlocks(t *testing.T) {
	db := testdb.MustOpen(t)
	d := webhook.NewDispatcher(db, testutil.Discard(), nil, "")
	for range 3 {
		d.Wake() // Run is not started: the second and third wakes must be dropped
	}
	if d.Store != webhook.Store(db) || d.URLs != nil || d.Secret != "" {
		t.Errorf("NewDispatcher fields = %+v, want the store and no URLs", d)
	}
}

func TestSign(t *testing.T) {
	reference := func(secret string, ts int64, body string) string {
		m := hmac.New(sha256.New, []byte(secret))
		fmt.Fprintf(m, "%d.%s", ts, body)
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	const ts = 1772395200
	body := `{"id":1,"event":"stream.started"}`
	base := webhook.Sign(secret, ts, []byte(body))
	if again := webhook.Sign(secret, ts, []byte(body)); again != base {
		t.Errorf("Sign is not deterministic: %q then %q", base, again)
	}
	if want := reference(secret, ts, body); base != want {
		t.Errorf("Sign = %q, want HMAC-SHA256(secret, ts.body) = %q", base, want)
	}
	for _, tt := range []struct {
		name   string
		secret string
		ts     int64
		body   string
	}{
		{"OtherSecretDiffers", secret + "x", ts, body},
		{"OtherTimestampDiffers", secret, ts + 1, body},
		{"OtherBodyDiffers", secret, ts, body + " "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := webhook.Sign(tt.secret, tt.ts, []byte(tt.body))
			if got == base {
				t.Errorf("Sign(%q, %d, %q) = base signature, want a different one", tt.secret, tt.ts, tt.body)
			}
			if want := reference(tt.secret, tt.ts, tt.body); got != want {
				t.Errorf("Sign = %q, want %q", got, want)
			}
		})
	}
}

// TestTwoDispatchersDeliverEachEventOnce: two services on one database (two handles on
// one SQLite file, as two processes), each with its dispatcher, deliver every event once
// between them, none lost.
func TestTwoDispatchersDeliverEachEventOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "stagedoor.db")
	open := func() *store.DB {
		db, err := store.Open(t.Context(), file)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	a, b := open(), open()
	const n = 30
	for i := range n {
		name := fmt.Sprintf("user%02d", i)
		if _, err := a.CreateUser(t.Context(), name); err != nil {
			t.Fatal(err)
		}
		if err := a.SetActive(t.Context(), name, false); err != nil { // user.banned
			t.Fatal(err)
		}
	}
	due, err := a.DueEvents(t.Context(), 1000)
	if err != nil || len(due) == 0 {
		t.Fatalf("queued events: %d (%v)", len(due), err)
	}
	r := newReceiver(t, http.StatusOK)
	for owner, db := range map[string]*store.DB{"a": a, "b": b} {
		d := webhook.NewDispatcher(db, testutil.Discard(), []string{r.srv.URL}, secret)
		d.Owner = owner
		start(t, d)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		left, err := a.DueEvents(t.Context(), 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events still undelivered", len(left))
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen := map[string]int{}
	for _, d := range r.deliveries() {
		seen[d.header.Get(webhook.HeaderDelivery)]++
	}
	if len(seen) != len(due) {
		t.Errorf("%d distinct events delivered, want %d", len(seen), len(due))
	}
	for id, times := range seen {
		if times != 1 {
			t.Errorf("event %s delivered %d times", id, times)
		}
	}
}
