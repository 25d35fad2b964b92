package plugin_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testdb"
	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/mediamtx/mediamtxtest"
	"github.com/stagedoor/stagedoor/plugin"
	"github.com/stagedoor/stagedoor/store"
)

// node is one Stagedoor node of a cluster test: its own (fake) MediaMTX and manager, on
// the database every node shares.
type node struct {
	api *mediamtxtest.Server
	m   *plugin.Manager
}

// newNode is node id of a cluster test on db: a fake MediaMTX and a manager, with
// configure (if set) applied to the manager.
func newNode(t *testing.T, db *store.DB, id string, configure func(*plugin.Manager)) node {
	t.Helper()
	api, client := newFakeAPI(t)
	m := plugin.NewManager(testutil.Discard(), db, client, relay, standing(db))
	m.NodeID = id
	if configure != nil {
		configure(m)
	}
	return node{api: api, m: m}
}

// TestClusterOneLiveSessionPerName runs two managers (nodes a and b) with their own
// MediaMTX on one database, as cluster.md §3 wants: a stream key published again on
// another node moves the session there and the old node kicks its publisher (newest wins,
// taken only by the available event); a public name live on one node is refused on the
// other (first wins); and reconciles never take a name back.
func TestClusterOneLiveSessionPerName(t *testing.T) {
	testdb.Each(t, func(t *testing.T, b testdb.Backend) {
		db := b.Open(t)
		nu, err := db.CreateUser(t.Context(), "benw")
		if err != nil {
			t.Fatal(err)
		}
		a, bn := newNode(t, db, "a", nil), newNode(t, db, "b", nil)
		keyPath := "live/" + nu.StreamKey
		available := func(n node, path, src string) {
			t.Helper()
			n.api.SetSource(path, "rtmpConn", src)
			ev := plugin.Event{Kind: plugin.EventAvailable, Path: path, SourceID: src, SourceType: "rtmpConn"}
			if err := n.m.HandleEvent(t.Context(), ev); err != nil {
				t.Fatalf("available %s on %s: %v", src, path, err)
			}
		}
		reconcile := func(n node) {
			t.Helper()
			if err := n.m.Reconcile(t.Context()); err != nil {
				t.Fatalf("reconcile: %v", err)
			}
		}
		holder := func() string {
			t.Helper()
			states, err := db.LiveStates(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range states {
				if l.Name == "benw" {
					return l.NodeID + "/" + l.SourceID
				}
			}
			return ""
		}
		kicked := func(n node, src string) bool { return slices.Contains(n.api.Kicks(), "rtmpConn/"+src) }

		// The key on a, then the same key on b: b takes the name (newest wins).
		available(a, keyPath, "A1")
		if got := holder(); got != "a/A1" {
			t.Fatalf("after a's publish: holder %q, want a/A1", got)
		}
		available(bn, keyPath, "B1")
		if got := holder(); got != "b/B1" {
			t.Fatalf("after b's publish of the same key: holder %q, want b/B1", got)
		}
		// a's reconcile finds its publisher on a name b keeps: it kicks it, and takes
		// nothing back; b's reconcile keeps the name.
		reconcile(a)
		if !kicked(a, "A1") {
			t.Error("a did not kick its publisher of a name b took over")
		}
		reconcile(bn)
		reconcile(a)
		if got := holder(); got != "b/B1" {
			t.Errorf("after both reconciles: holder %q, want b/B1 (a reconcile must not take over)", got)
		}
		if kicked(bn, "B1") {
			t.Error("b kicked the publisher that took the name over")
		}

		// A publish on the public name without a key (a password, no-auth) is first wins:
		// b holds nothing now; a publishes live/benw, then b does too and is refused by the
		// claim and kicked on b.
		bn.api.SetSource(keyPath, "rtmpConn", "")
		if err := bn.m.HandleEvent(t.Context(), plugin.Event{Kind: plugin.EventUnavailable, Path: keyPath, SourceID: "B1", SourceType: "rtmpConn"}); err != nil {
			t.Fatal(err)
		}
		if got := holder(); got != "" {
			t.Fatalf("after b's publisher left: holder %q, want none", got)
		}
		publicOn := func(n node, src string, digest string) {
			t.Helper()
			n.api.SetSource("live/benw", "rtmpConn", src)
			if err := n.m.HandleEvent(t.Context(), plugin.Event{Kind: plugin.EventAvailable, Path: "live/benw", SourceID: src,
				SourceType: "rtmpConn", KeyDigest: digest}); err != nil {
				t.Fatal(err)
			}
		}
		publicOn(a, "A2", "")
		if got := holder(); got != "a/A2" {
			t.Fatalf("after a's publish on the public name: holder %q, want a/A2", got)
		}
		publicOn(bn, "B2", "")
		if got := holder(); got != "a/A2" {
			t.Errorf("a second publish of the public name on b took it: holder %q, want a/A2 (first wins)", got)
		}
		if !kicked(bn, "B2") {
			t.Error("b did not kick its publisher of a public name a holds")
		}
		if kicked(a, "A2") {
			t.Error("a's publisher, first on the public name, was kicked")
		}

		// A publish on the public name admitted by the stream key (the RTMP front's renamed
		// publish, ?key=) is newest wins, as on the key path: the encoder reconnecting
		// through b gets back on, and a kicks its old session.
		a.api.SetSource("live/benw", "rtmpConn", "")
		if err := a.m.HandleEvent(t.Context(), plugin.Event{Kind: plugin.EventUnavailable, Path: "live/benw", SourceID: "A2", SourceType: "rtmpConn"}); err != nil {
			t.Fatal(err)
		}
		d := hexDigest(stagedoor.KeyDigest(nu.StreamKey))
		publicOn(a, "A3", d)
		publicOn(bn, "B3", d)
		if got := holder(); got != "b/B3" {
			t.Fatalf("the key's publish on b: holder %q, want b/B3 (newest wins for a key)", got)
		}
		reconcile(a)
		if !kicked(a, "A3") {
			t.Error("a did not kick its key publisher of a name b took over")
		}
		if got := holder(); got != "b/B3" {
			t.Errorf("after a's reconcile: holder %q, want b/B3", got)
		}
	})
}

// TestClusterKeysFirstWins: with KeysFirstWins (--cluster-key-takeover=false) the same key
// published on b while live on a does not take the name: b kicks its own publisher.
func TestClusterKeysFirstWins(t *testing.T) {
	db := testdb.MustOpen(t)
	nu, err := db.CreateUser(t.Context(), "benw")
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]node{}
	for _, id := range []string{"a", "b"} {
		nodes[id] = newNode(t, db, id, func(m *plugin.Manager) { m.KeysFirstWins = true })
	}
	keyPath := "live/" + nu.StreamKey
	for _, step := range []struct{ node, src string }{{"a", "A1"}, {"b", "B1"}} {
		n := nodes[step.node]
		n.api.SetSource(keyPath, "rtmpConn", step.src)
		if err := n.m.HandleEvent(t.Context(), plugin.Event{Kind: plugin.EventAvailable, Path: keyPath, SourceID: step.src, SourceType: "rtmpConn"}); err != nil {
			t.Fatal(err)
		}
	}
	states, err := db.LiveStates(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 1 || states[0].NodeID != "a" || states[0].SourceID != "A1" {
		t.Errorf("live = %+v, want benw on a/A1 (first wins)", states)
	}
	if !slices.Contains(nodes["b"].api.Kicks(), "rtmpConn/B1") {
		t.Error("b did not kick its publisher of a key a holds")
	}
}

// TestClusterPeerAliases: a node serves the names other live nodes hold through peer
// aliases (on-demand pulls of the holder's public path with the cluster secret), moves
// them when the name moves, drops one for a local publish that takes the name over
// (MakeRoom), and removes them when the name goes offline or its holder's lease runs out.
func TestClusterPeerAliases(t *testing.T) {
	testdb.Each(t, func(t *testing.T, b testdb.Backend) {
		db := b.Open(t)
		nu, err := db.CreateUser(t.Context(), "benw")
		if err != nil {
			t.Fatal(err)
		}
		peer := plugin.Peer{Password: "cluster-secret-123"}
		rtsp := map[string]string{"a": "10.0.0.1:8554", "b": "10.0.0.2:8554"}
		peerNode := func(id string) node {
			if err := db.RegisterNode(t.Context(), id, rtsp[id]); err != nil {
				t.Fatal(err)
			}
			return newNode(t, db, id, func(m *plugin.Manager) { m.Peer = peer })
		}
		a, bn := peerNode("a"), peerNode("b")
		keyPath := "live/" + nu.StreamKey
		peerURL := func(holder string) string {
			return "rtsp://" + plugin.PeerUser + ":" + peer.Password + "@" + rtsp[holder] + "/live/benw"
		}
		available := func(n node, src string) {
			t.Helper()
			n.api.SetSource(keyPath, "rtmpConn", src)
			if err := n.m.HandleEvent(t.Context(), plugin.Event{Kind: plugin.EventAvailable, Path: keyPath, SourceID: src, SourceType: "rtmpConn"}); err != nil {
				t.Fatal(err)
			}
		}
		reconcile := func(n node) {
			t.Helper()
			if err := n.m.Reconcile(t.Context()); err != nil {
				t.Fatalf("reconcile: %v", err)
			}
		}
		conf := func(n node) string {
			src, _ := n.api.Config("live/benw")
			return src
		}

		// a's own publish was admitted through MakeRoom too (every admitted publish on a
		// public name is): its hold ends when a's publish gets on, so that a serves the
		// name from b at once once b takes it over (below).
		a.m.MakeRoom(t.Context(), "benw", true)
		available(a, "A1")
		reconcile(bn)
		if got := conf(bn); got != peerURL("a") {
			t.Fatalf("b's live/benw = %q, want the peer alias %q", got, peerURL("a"))
		}
		if got := conf(a); got == "" || got == peerURL("a") || strings.Contains(got, plugin.PeerUser) {
			t.Fatalf("a's live/benw = %q, want its own relay alias", got)
		}
		before := len(bn.api.Calls())
		reconcile(bn) // nothing changes on a second pass: a rewrite would cut b's viewers
		for _, c := range bn.api.Calls()[before:] {
			if !strings.HasPrefix(c, "GET ") {
				t.Errorf("b's second reconcile wrote %q, want only reads", c)
			}
		}
		if got := conf(bn); got != peerURL("a") {
			t.Fatalf("b's live/benw after a second reconcile = %q", got)
		}

		// The encoder reconnects through b: b's auth admits it (MakeRoom), the peer alias
		// goes at once and stays away until b's publisher is on; then a's reconcile kicks
		// a's publisher and points a at b.
		bn.m.MakeRoom(t.Context(), "benw", false)
		eventually(t, 5*time.Second, "peer alias removed for b's own publish", func() bool { return conf(bn) == "" })
		reconcile(bn)
		if got := conf(bn); got != "" {
			t.Fatalf("b's reconcile put the peer alias back while b's publisher gets on: %q", got)
		}
		available(bn, "B1")
		reconcile(a)
		if !slices.Contains(a.api.Kicks(), "rtmpConn/A1") {
			t.Error("a did not kick its publisher of a name b took over")
		}
		reconcile(a)
		if got := conf(a); got != peerURL("b") {
			t.Fatalf("a's live/benw after the move = %q, want the peer alias %q", got, peerURL("b"))
		}
		if got := conf(bn); got == "" || strings.Contains(got, plugin.PeerUser) {
			t.Fatalf("b's live/benw = %q, want its relay alias", got)
		}
		// The RTMP front waits for the removal, applied by MediaMTX, before it forwards the
		// publish.
		n0 := len(a.api.Calls())
		a.m.MakeRoom(t.Context(), "benw", true)
		if got := conf(a); got != "" {
			t.Fatalf("a's live/benw after MakeRoom with wait = %q, want none", got)
		}
		if calls := a.api.Calls()[n0:]; len(calls) == 0 || calls[len(calls)-1] != "PATCH /v3/config/global/patch" {
			t.Errorf("MakeRoom's calls = %v, want the removal followed by Applied's empty patch", calls)
		}

		// b's publisher leaves: a's peer alias goes with the live row.
		bn.api.SetSource(keyPath, "rtmpConn", "")
		if err := bn.m.HandleEvent(t.Context(), plugin.Event{Kind: plugin.EventUnavailable, Path: keyPath, SourceID: "B1", SourceType: "rtmpConn"}); err != nil {
			t.Fatal(err)
		}
		reconcile(a)
		if got := conf(a); got != "" {
			t.Errorf("a's live/benw after b's stream ended = %q, want none", got)
		}

		// A holder whose lease ran out gets no peer alias (its row waits for the sweep).
		available(a, "A2")
		reconcile(bn)
		if got := conf(bn); got != peerURL("a") {
			t.Fatalf("b's live/benw while a's lease runs = %q, want the peer alias", got)
		}
		// a registered an hour ago and renewed nothing since (a restart re-registers).
		db.Now = func() time.Time { return time.Now().Add(-time.Hour) }
		err = db.RegisterNode(t.Context(), "a", rtsp["a"])
		db.Now = time.Now
		if err != nil {
			t.Fatal(err)
		}
		reconcile(bn)
		if got := conf(bn); got != "" {
			t.Errorf("b's live/benw for a dead holder = %q, want none", got)
		}
	})
}

// TestClusterNoPeerSecretNoPeerAliases: without the cluster secret a node sets no peer
// alias, and removes one an earlier run left.
func TestClusterNoPeerSecretNoPeerAliases(t *testing.T) {
	db := testdb.MustOpen(t)
	nu, err := db.CreateUser(t.Context(), "benw")
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]node{}
	for _, id := range []string{"a", "b"} {
		if err := db.RegisterNode(t.Context(), id, "127.0.0.1:8554"); err != nil {
			t.Fatal(err)
		}
		nodes[id] = newNode(t, db, id, nil)
	}
	keyPath := "live/" + nu.StreamKey
	nodes["a"].api.SetSource(keyPath, "rtmpConn", "A1")
	if err := nodes["a"].m.HandleEvent(t.Context(), plugin.Event{Kind: plugin.EventAvailable, Path: keyPath, SourceID: "A1", SourceType: "rtmpConn"}); err != nil {
		t.Fatal(err)
	}
	b := nodes["b"]
	b.api.SetConfig("live/benw", "rtsp://"+plugin.PeerUser+":old-secret@127.0.0.1:8554/live/benw")
	if err := b.m.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if src, ok := b.api.Config("live/benw"); ok {
		t.Errorf("b's live/benw = %q without a cluster secret, want none", src)
	}
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(timeout); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
	}
}
