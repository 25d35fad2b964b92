package plugin_test

import (
	"slices"
	"testing"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testdb"
	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/mediamtx/mediamtxtest"
	"github.com/stagedoor/stagedoor/plugin"
)

// node is one Stagedoor node of a cluster test: its own (fake) MediaMTX and manager, on
// the database every node shares.
type node struct {
	api *mediamtxtest.Server
	m   *plugin.Manager
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
		newNode := func(id string) node {
			api, client := newFakeAPI(t)
			m := plugin.NewManager(testutil.Discard(), db, client, relay, standing(db))
			m.NodeID = id
			return node{api: api, m: m}
		}
		a, bn := newNode("a"), newNode("b")
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
		api, client := newFakeAPI(t)
		m := plugin.NewManager(testutil.Discard(), db, client, relay, standing(db))
		m.NodeID, m.KeysFirstWins = id, true
		nodes[id] = node{api: api, m: m}
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
