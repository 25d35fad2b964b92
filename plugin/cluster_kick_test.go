package plugin_test

import (
	"errors"
	"testing"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testdb"
	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/plugin"
)

// TestClusterKickLiveElsewhere: an operator's kick on node b of a name live on node a is
// a *stagedoor.LiveElsewhereError naming a; b's MediaMTX is not asked to kick a's source
// id (which it does not carry, or carries for an unrelated session), nor is a's.
func TestClusterKickLiveElsewhere(t *testing.T) {
	testdb.Each(t, func(t *testing.T, b testdb.Backend) {
		db := b.Open(t)
		nu, err := db.CreateUser(t.Context(), "benw")
		if err != nil {
			t.Fatal(err)
		}
		nodes := map[string]node{}
		for _, id := range []string{"a", "b"} {
			api, client := newFakeAPI(t)
			m := plugin.NewManager(testutil.Discard(), db, client, relay, standing(db))
			m.NodeID = id
			nodes[id] = node{api: api, m: m}
		}
		keyPath := "live/" + nu.StreamKey
		nodes["a"].api.SetSource(keyPath, "rtmpConn", "S1")
		nodes["b"].api.SetSource("live/other", "rtmpConn", "S1") // the same id, another session
		ev := plugin.Event{Kind: plugin.EventAvailable, Path: keyPath, SourceID: "S1", SourceType: "rtmpConn"}
		if err := nodes["a"].m.HandleEvent(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
		was, err := nodes["b"].m.Kick(t.Context(), "benw")
		le, ok := errors.AsType[*stagedoor.LiveElsewhereError](err)
		if was || !ok || le.Node != "a" || le.Name != "benw" {
			t.Fatalf("Kick on b = %v, %v; want false and a LiveElsewhereError naming node a", was, err)
		}
		if got, want := err.Error(), "live on node a: kick it there"; got != want {
			t.Errorf("error = %q, want %q", got, want)
		}
		for id, n := range nodes {
			if k := n.api.Kicks(); len(k) != 0 {
				t.Errorf("node %s's MediaMTX kicked %v, want nothing", id, k)
			}
		}
		if was, err := nodes["a"].m.Kick(t.Context(), "benw"); err != nil || !was {
			t.Errorf("Kick on a, the holder = %v, %v; want true, nil", was, err)
		}
	})
}
