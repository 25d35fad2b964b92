package plugin_test

import (
	"testing"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testdb"
	"github.com/stagedoor/stagedoor/plugin"
)

// TestClusterKickRequested: an operator's kick on node b of a name live on node a is
// asked of a (a kick request) and reported as done; b's MediaMTX is not asked to kick a's
// source id (which it does not carry, or carries for an unrelated session). a's next
// reconcile kicks its publisher, once; a request for a source that has ended meanwhile
// kicks nothing.
func TestClusterKickRequested(t *testing.T) {
	testdb.Each(t, func(t *testing.T, b testdb.Backend) {
		db := b.Open(t)
		nu, err := db.CreateUser(t.Context(), "benw")
		if err != nil {
			t.Fatal(err)
		}
		nodes := map[string]node{}
		for _, id := range []string{"a", "b"} {
			nodes[id] = newNode(t, db, id, nil)
		}
		a, bn := nodes["a"], nodes["b"]
		keyPath := "live/" + nu.StreamKey
		a.api.SetSource(keyPath, "rtmpConn", "S1")
		bn.api.SetSource("live/other", "rtmpConn", "S1") // the same id, another session
		ev := plugin.Event{Kind: plugin.EventAvailable, Path: keyPath, SourceID: "S1", SourceType: "rtmpConn"}
		if err := a.m.HandleEvent(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
		if was, err := bn.m.Kick(t.Context(), "benw"); err != nil || !was {
			t.Fatalf("Kick on b of a name live on a = %v, %v; want true, nil", was, err)
		}
		if k := bn.api.Kicks(); len(k) != 0 {
			t.Errorf("b's MediaMTX kicked %v, want nothing", k)
		}
		if k := a.api.Kicks(); len(k) != 0 {
			t.Errorf("a kicked %v before taking the request", k)
		}
		if err := a.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		if k := a.api.Kicks(); len(k) != 1 || k[0] != "rtmpConn/S1" {
			t.Errorf("a's kicks after its reconcile = %v, want [rtmpConn/S1]", k)
		}
		if k := bn.api.Kicks(); len(k) != 0 {
			t.Errorf("b's MediaMTX kicked %v, want nothing", k)
		}

		// A request for a source that ended meanwhile: a new publish of the key on a is
		// not kicked by it.
		a.api.SetSource(keyPath, "rtmpConn", "S2")
		if err := a.m.HandleEvent(t.Context(), plugin.Event{Kind: plugin.EventAvailable, Path: keyPath, SourceID: "S2", SourceType: "rtmpConn"}); err != nil {
			t.Fatal(err)
		}
		if _, err := plugin.RequestKick(t.Context(), db, "b", stagedoor.LiveState{Name: "benw", NodeID: "a", SourceID: "S1"}); err != nil {
			t.Fatal(err)
		}
		if err := a.m.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		if k := a.api.Kicks(); len(k) != 1 {
			t.Errorf("a's kicks after a stale request = %v, want only the first", k)
		}
	})
}
