package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/store"
	"github.com/stagedoor/stagedoor/webhook"
)

// TestSweepFreesDeadNodesNames: a live name held under another node id whose lease ran
// out (the host was renamed, so --node-id's default changed) is taken offline by the
// service, with one stream.stopped webhook, although no step of this node's own would
// ever touch it.
func TestSweepFreesDeadNodesNames(t *testing.T) {
	dbFile := liveUnderExpiredNode(t, "oldhost")
	hooks := startEventRecorder(t)

	s := startTestServiceEnv(t, webhookEnv, "--db", dbFile, "--node-id", "newhost", "--reconcile-interval", "1s",
		"--webhook-url", hooks.url)
	deadline := time.Now().Add(30 * time.Second)
	for {
		states, err := s.svc.db.LiveStates(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(states) == 0 && len(hooks.stopped()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("live states %+v, stream.stopped deliveries %q after 30 s, want none live and one for benw",
				states, hooks.stopped())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2500 * time.Millisecond) // two more sweeps, which must not queue it again
	if stopped := hooks.stopped(); len(stopped) != 1 || stopped[0] != "benw" {
		t.Errorf("stream.stopped deliveries = %q, want one for benw", stopped)
	}
}

// TestSweepKeepsOwnNamesAfterRestart: a service restarted after its own lease ran out
// (stopped longer than the TTL while MediaMTX kept streaming) keeps its names live: the
// sweep runs after the health probe has renewed the lease, so no stream.stopped is sent.
func TestSweepKeepsOwnNamesAfterRestart(t *testing.T) {
	dbFile := liveUnderExpiredNode(t, "thishost")
	hooks := startEventRecorder(t)

	s := startTestServiceEnv(t, webhookEnv, "--db", dbFile, "--node-id", "thishost", "--reconcile-interval", "1s",
		"--webhook-url", hooks.url)
	time.Sleep(3500 * time.Millisecond) // three sweeps, and a dispatcher round after them
	if stopped := hooks.stopped(); len(stopped) > 0 {
		t.Errorf("stream.stopped deliveries for %q: the service swept its own name", stopped)
	}
	states, err := s.svc.db.LiveStates(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 1 || states[0].Name != "benw" {
		t.Errorf("live states = %+v, want benw still live", states)
	}
}

const testWebhookSecret = "webhook-secret-0123456789abcdef"

// webhookEnv is serveEnv with a webhook signing secret.
func webhookEnv(key string) string {
	if key == "STAGEDOOR_WEBHOOK_SECRET" {
		return testWebhookSecret
	}
	return serveEnv(key)
}

// eventRecorder is a webhook receiver that keeps the events delivered to it.
type eventRecorder struct {
	url    string
	mu     sync.Mutex
	events []webhook.Payload
}

func startEventRecorder(t *testing.T) *eventRecorder {
	t.Helper()
	r := &eventRecorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var p webhook.Payload
		if err := json.NewDecoder(req.Body).Decode(&p); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		r.mu.Lock()
		r.events = append(r.events, p)
		r.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// stopped returns the channels of the stream.stopped events delivered so far.
func (r *eventRecorder) stopped() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.Event == stagedoor.EventStreamStopped {
			out = append(out, e.Channel)
		}
	}
	return out
}

// liveUnderExpiredNode returns a database file where benw is live under node, whose lease
// has run out.
func liveUnderExpiredNode(t *testing.T, node string) string {
	t.Helper()
	dbFile := filepath.Join(t.TempDir(), "stagedoor.db")
	db, err := store.Open(t.Context(), dbFile)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.LeaseTTL = time.Millisecond
	nu, err := db.CreateUser(t.Context(), "benw")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetLive(t.Context(), stagedoor.LiveState{NodeID: node, Kind: stagedoor.LiveDirect, Name: "benw",
		UserID: nu.ID, UserName: "benw", SourceID: "S", SourceType: "rtmpConn"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // the 1 ms lease has run out
	return dbFile
}

// TestNodeRegisteredWithAdvertisedRTSP: serve records its node id with the RTSP address
// peers are to pull from and a lease of --lease-ttl; bad values are usage errors.
func TestNodeRegisteredWithAdvertisedRTSP(t *testing.T) {
	for _, args := range [][]string{{"--lease-ttl", "1s"}, {"--lease-ttl", "6m"}, {"--advertise-rtsp", "nohost"},
		{"--advertise-rtsp", ":8554"}, {"--advertise-rtsp", "10.0.0.5:99999"}} {
		err := run(t.Context(), append([]string{"stagedoor", "serve", "--db", filepath.Join(t.TempDir(), "x.db"),
			"--internal-addr", "127.0.0.1:0", "--public-addr", "127.0.0.1:0"}, args...), serveEnv, strings.NewReader(""), io.Discard, io.Discard)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("serve %q: %v (exit %d), want a usage error", args, err, exitCode(err))
		}
	}
	dbFile := filepath.Join(t.TempDir(), "stagedoor.db")
	start := time.Now()
	startTestService(t, "--db", dbFile, "--node-id", "n1", "--advertise-rtsp", "10.0.0.5:8554", "--lease-ttl", "40s")
	db, err := store.Open(t.Context(), dbFile)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	nodes, err := db.Nodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].ID != "n1" || nodes[0].RTSPAddr != "10.0.0.5:8554" {
		t.Fatalf("nodes = %+v, want n1 at 10.0.0.5:8554", nodes)
	}
	if lease := nodes[0].LeaseUntil.Sub(start); lease < 30*time.Second {
		t.Errorf("lease runs %v past the start, want about --lease-ttl 40s", lease)
	}
}

// TestFirstWinsAtAuth: while another live node holds a no-auth stream's name, the auth
// call refuses a publish on it at once, from memory; once that node lets it go, the
// publish is allowed again after the next refresh.
func TestFirstWinsAtAuth(t *testing.T) {
	dbFile := filepath.Join(t.TempDir(), "stagedoor.db")
	other, err := store.Open(t.Context(), dbFile)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.LeaseTTL = 5 * time.Minute
	nu, err := other.CreateUser(t.Context(), "benw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.CreateStream(t.Context(), "open", "benw", false); err != nil {
		t.Fatal(err)
	}
	if err := other.SetLive(t.Context(), stagedoor.LiveState{NodeID: "b", Kind: stagedoor.LiveDirect, Name: "open",
		UserID: nu.ID, UserName: "benw", SourceID: "S", SourceType: "rtmpConn"}); err != nil {
		t.Fatal(err)
	}
	s := startTestService(t, "--db", dbFile, "--node-id", "a", "--reconcile-interval", "1s")
	auth := func() int {
		t.Helper()
		res, err := http.Post("http://"+s.internal+"/mediamtx/auth", "application/json",
			strings.NewReader(testutil.MediaMTXAuthBody("publish", "live/open", "rtmp")))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := auth(); code < 400 {
		t.Fatalf("publish of a name node b holds answered %d, want a refusal", code)
	}
	if !strings.Contains(s.logs.String(), "live on node b") {
		t.Errorf("the refusal's reason is not in the log: %s", s.logs.String())
	}
	if _, err := other.SetOffline(t.Context(), "open", "b", ""); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for auth() >= 300 {
		if time.Now().After(deadline) {
			t.Fatal("the publish is still refused after node b let the name go")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
