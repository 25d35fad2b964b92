package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testutil"
)

// The cluster cases (cluster.md §3, §4): several nodes share one store. Each node's lease
// lasts the store's default TTL (10 s) after each renewal; the cases move the clock past
// it by hand.

// lease is past the default lease TTL.
const lease = 11 * time.Second

type clusterFixture struct {
	st    Store
	clock *testutil.Clock
	alice stagedoor.NewUser
}

func (s suite) clusterFixture(t *testing.T) clusterFixture {
	t.Helper()
	st, clock := s.store(t)
	f := clusterFixture{st: st, clock: clock, alice: mustCreate(t, st, "alice")}
	for _, n := range []string{"a", "b"} {
		if err := st.RegisterNode(t.Context(), n, "127.0.0.1:855"+n); err != nil {
			t.Fatalf("RegisterNode(%s): %v", n, err)
		}
	}
	return f
}

// on is alice's name published on node, as kind, on source.
func (f clusterFixture) on(name, node, kind, source string) stagedoor.LiveState {
	return stagedoor.LiveState{Name: name, UserID: f.alice.ID, UserName: "alice", SourceID: source, SourceType: "rtmpConn",
		NodeID: node, Kind: kind}
}

func (f clusterFixture) claim(t *testing.T, l stagedoor.LiveState, takeover bool) stagedoor.Claim {
	t.Helper()
	c, err := f.st.Claim(t.Context(), l, takeover)
	if err != nil {
		t.Fatalf("Claim(%s by %s, %s): %v", l.Name, l.NodeID, l.Kind, err)
	}
	return c
}

func (f clusterFixture) holder(t *testing.T, name string) stagedoor.LiveState {
	t.Helper()
	l, err := f.st.LiveByName(t.Context(), name)
	if err != nil {
		t.Fatalf("LiveByName(%s): %v", name, err)
	}
	return l
}

func testCluster(t *testing.T, s suite) {
	// The seven cases of the claim, each from node a against a row of node a or b.
	t.Run("ClaimMatrix", func(t *testing.T) {
		for _, tt := range []struct {
			name     string
			held     *stagedoor.LiveState // the row before a's claim (nil: none)
			expire   bool                 // b's lease runs out before a's claim
			kind     string               // a's publish
			source   string
			takeover bool
			want     stagedoor.Claim
			since    string // "kept" or "new" when a wins over a row
		}{
			{name: "NoRowWins", kind: stagedoor.LiveDirect, source: "a1", takeover: false,
				want: stagedoor.Claim{Won: true, Holder: "a", Epoch: 1}},
			{name: "SameNodeSameSourceKeepsSince", held: &stagedoor.LiveState{NodeID: "a", Kind: stagedoor.LiveDirect, SourceID: "a1"},
				kind: stagedoor.LiveDirect, source: "a1", want: stagedoor.Claim{Won: true, Holder: "a", Epoch: 2}, since: "kept"},
			{name: "SameNodeNewSourceReplaces", held: &stagedoor.LiveState{NodeID: "a", Kind: stagedoor.LiveDirect, SourceID: "a1"},
				kind: stagedoor.LiveKey, source: "a2", want: stagedoor.Claim{Won: true, Holder: "a", Epoch: 2}, since: "new"},
			{name: "KeyTakeoverNewestWins", held: &stagedoor.LiveState{NodeID: "b", Kind: stagedoor.LiveKey, SourceID: "b1"},
				kind: stagedoor.LiveKey, source: "a1", takeover: true, want: stagedoor.Claim{Won: true, Holder: "a", Epoch: 2}, since: "new"},
			{name: "KeyWithoutTakeoverRefused", held: &stagedoor.LiveState{NodeID: "b", Kind: stagedoor.LiveKey, SourceID: "b1"},
				kind: stagedoor.LiveKey, source: "a1", takeover: false, want: stagedoor.Claim{Holder: "b", Epoch: 1}},
			{name: "DirectFirstWins", held: &stagedoor.LiveState{NodeID: "b", Kind: stagedoor.LiveDirect, SourceID: "b1"},
				kind: stagedoor.LiveDirect, source: "a1", takeover: true, want: stagedoor.Claim{Holder: "b", Epoch: 1}},
			{name: "KeyNeverTakesDirect", held: &stagedoor.LiveState{NodeID: "b", Kind: stagedoor.LiveDirect, SourceID: "b1"},
				kind: stagedoor.LiveKey, source: "a1", takeover: true, want: stagedoor.Claim{Holder: "b", Epoch: 1}},
			{name: "DirectNeverTakesKey", held: &stagedoor.LiveState{NodeID: "b", Kind: stagedoor.LiveKey, SourceID: "b1"},
				kind: stagedoor.LiveDirect, source: "a1", takeover: true, want: stagedoor.Claim{Holder: "b", Epoch: 1}},
			{name: "DeadHolderLoses", held: &stagedoor.LiveState{NodeID: "b", Kind: stagedoor.LiveDirect, SourceID: "b1"},
				expire: true, kind: stagedoor.LiveDirect, source: "a1", want: stagedoor.Claim{Won: true, Holder: "a", Epoch: 2}, since: "new"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				f := s.clusterFixture(t)
				start := f.clock.Now()
				if tt.held != nil {
					f.claim(t, f.on("show", tt.held.NodeID, tt.held.Kind, tt.held.SourceID), true)
				}
				f.clock.Add(time.Minute / 2)
				if tt.expire {
					f.clock.Add(lease)
				} else if err := f.st.ProbeWrite(t.Context(), "b"); err != nil {
					t.Fatalf("ProbeWrite(b): %v", err)
				}
				startedBefore := countEvents(t, f.st, stagedoor.EventStreamStarted, "show")
				got := f.claim(t, f.on("show", "a", tt.kind, tt.source), tt.takeover)
				if got != tt.want {
					t.Errorf("Claim = %+v, want %+v", got, tt.want)
				}
				l := f.holder(t, "show")
				if l.NodeID != tt.want.Holder || l.Epoch != tt.want.Epoch {
					t.Errorf("row = node %s epoch %d, want node %s epoch %d", l.NodeID, l.Epoch, tt.want.Holder, tt.want.Epoch)
				}
				if !got.Won {
					if l.SourceID != tt.held.SourceID || l.Kind != tt.held.Kind || !l.Since.Equal(start) {
						t.Errorf("refused claim changed the row: %+v", l)
					}
					return
				}
				if l.SourceID != tt.source || l.Kind != tt.kind {
					t.Errorf("row = source %s kind %s, want %s %s", l.SourceID, l.Kind, tt.source, tt.kind)
				}
				if wantSince := map[string]time.Time{"kept": start, "new": f.clock.Now(), "": f.clock.Now()}[tt.since]; !l.Since.Equal(wantSince) {
					t.Errorf("Since = %v, want %v (%s)", l.Since, wantSince, tt.since)
				}
				wantStarted := startedBefore
				if tt.held == nil {
					wantStarted++
				}
				if n := countEvents(t, f.st, stagedoor.EventStreamStarted, "show"); n != wantStarted {
					t.Errorf("stream.started events = %d, want %d (only going live from offline queues one)", n, wantStarted)
				}
			})
		}
	})

	// Two nodes claim one public name at the same moment, again and again: exactly one
	// wins each round, and the loser is told who holds it.
	t.Run("ClaimRaceOneWinner", func(t *testing.T) {
		f := s.clusterFixture(t)
		for round := range 20 {
			name := fmt.Sprintf("race_%02d", round)
			var (
				wg     sync.WaitGroup
				claims [2]stagedoor.Claim
				errs   [2]error
			)
			for i, n := range []string{"a", "b"} {
				wg.Go(func() {
					claims[i], errs[i] = f.st.Claim(t.Context(), f.on(name, n, stagedoor.LiveDirect, n+"-src"), true)
				})
			}
			wg.Wait()
			if errs[0] != nil || errs[1] != nil {
				t.Fatalf("round %d: Claim errors %v, %v", round, errs[0], errs[1])
			}
			if claims[0].Won == claims[1].Won {
				t.Fatalf("round %d: claims %+v, want exactly one winner", round, claims)
			}
			winner := "a"
			if claims[1].Won {
				winner = "b"
			}
			if claims[0].Holder != winner || claims[1].Holder != winner || f.holder(t, name).NodeID != winner {
				t.Errorf("round %d: claims %+v and row %s, want every holder %s", round, claims, f.holder(t, name).NodeID, winner)
			}
		}
	})

	// The probe renews the node's lease and leaves its address and start alone; a probe
	// of a node never registered creates it.
	t.Run("LeaseRenewedByProbe", func(t *testing.T) {
		f := s.clusterFixture(t)
		start := f.clock.Now()
		f.clock.Add(5 * time.Second)
		for _, n := range []string{"a", "c"} {
			if err := f.st.ProbeWrite(t.Context(), n); err != nil {
				t.Fatalf("ProbeWrite(%s): %v", n, err)
			}
		}
		nodes, err := f.st.Nodes(t.Context())
		if err != nil {
			t.Fatalf("Nodes: %v", err)
		}
		renewed := f.clock.Now().Add(10 * time.Second)
		want := []stagedoor.Node{
			{ID: "a", RTSPAddr: "127.0.0.1:855a", StartedAt: start, LeaseUntil: renewed},
			{ID: "b", RTSPAddr: "127.0.0.1:855b", StartedAt: start, LeaseUntil: start.Add(10 * time.Second)},
			{ID: "c", RTSPAddr: "", StartedAt: f.clock.Now(), LeaseUntil: renewed},
		}
		if len(nodes) != len(want) {
			t.Fatalf("Nodes = %+v, want %+v", nodes, want)
		}
		for i := range want {
			g, w := nodes[i], want[i]
			if g.ID != w.ID || g.RTSPAddr != w.RTSPAddr || !g.StartedAt.Equal(w.StartedAt) || !g.LeaseUntil.Equal(w.LeaseUntil) {
				t.Errorf("node %d = %+v, want %+v", i, g, w)
			}
		}
		if err := f.st.RegisterNode(t.Context(), "bad id", ""); !isInvalid(err) {
			t.Errorf("RegisterNode(bad id) = %v, want an *InvalidError", err)
		}
		if _, err := f.st.Claim(t.Context(), f.on("show", "", stagedoor.LiveKey, "x"), true); !isInvalid(err) {
			t.Errorf("Claim without a node = %v, want an *InvalidError", err)
		}
		if _, err := f.st.Claim(t.Context(), f.on("show", "a", "", "x"), true); !isInvalid(err) {
			t.Errorf("Claim without a kind = %v, want an *InvalidError", err)
		}
	})

	// A node stops renewing: a sweep frees its names with exactly one stream.stopped
	// each, in one step; the live node's names stay; a second sweep finds nothing; a node
	// dead for a day that holds nothing is forgotten.
	t.Run("SweepFreesDeadNodesOnce", func(t *testing.T) {
		f := s.clusterFixture(t)
		mustStream(t, f.st, "show2", "alice", true)
		f.claim(t, f.on("alice", "a", stagedoor.LiveKey, "a1"), true)
		f.claim(t, f.on("show2", "a", stagedoor.LiveDirect, "a2"), true)
		f.claim(t, f.on("show3", "b", stagedoor.LiveDirect, "b1"), true)
		f.clock.Add(lease)
		if err := f.st.ProbeWrite(t.Context(), "b"); err != nil {
			t.Fatalf("ProbeWrite(b): %v", err)
		}
		for i, want := range []int64{2, 0} {
			n, err := f.st.SweepExpired(t.Context())
			if err != nil || n != want {
				t.Fatalf("sweep %d: SweepExpired = %d, %v; want %d", i+1, n, err, want)
			}
		}
		ls := mustLiveStates(t, f.st)
		if len(ls) != 1 || ls[0].Name != "show3" || ls[0].NodeID != "b" {
			t.Errorf("live after the sweeps = %+v, want show3 on b only", ls)
		}
		for _, name := range []string{"alice", "show2"} {
			if n := countEvents(t, f.st, stagedoor.EventStreamStopped, name); n != 1 {
				t.Errorf("stream.stopped events for %s = %d, want exactly 1", name, n)
			}
		}
		if n := countEvents(t, f.st, stagedoor.EventStreamStopped, "show3"); n != 0 {
			t.Errorf("stream.stopped events for show3 = %d, want 0 (b is alive)", n)
		}
		// A taken-over name is the new holder's: a's late sweep is none of its business.
		if c := f.claim(t, f.on("alice", "a", stagedoor.LiveKey, "a3"), false); !c.Won {
			t.Errorf("Claim(alice) by a after the sweep = %+v, want won (the name was free)", c)
		}
		f.clock.Add(25 * time.Hour)
		if err := f.st.ProbeWrite(t.Context(), "b"); err != nil {
			t.Fatalf("ProbeWrite(b): %v", err)
		}
		if _, err := f.st.SweepExpired(t.Context()); err != nil {
			t.Fatalf("SweepExpired: %v", err)
		}
		nodes, err := f.st.Nodes(t.Context())
		if err != nil || len(nodes) != 1 || nodes[0].ID != "b" {
			t.Errorf("Nodes after a day = %+v, %v; want b only (a dead and freed)", nodes, err)
		}
	})

	// SetOffline and ClearLive touch the calling node's names only.
	t.Run("NodeScopedOffline", func(t *testing.T) {
		f := s.clusterFixture(t)
		f.claim(t, f.on("alice", "a", stagedoor.LiveKey, "a1"), true)
		f.claim(t, f.on("show", "b", stagedoor.LiveDirect, "b1"), true)
		for _, tt := range []struct{ name, node, source string }{
			{"alice", "b", ""}, {"alice", "b", "a1"}, {"show", "a", ""}, {"show", "a", "b1"},
		} {
			if changed, err := f.st.SetOffline(t.Context(), tt.name, tt.node, tt.source); err != nil || changed {
				t.Errorf("SetOffline(%s, node %s, %q) = %v, %v; want false: another node's name", tt.name, tt.node, tt.source, changed, err)
			}
		}
		if err := f.st.ClearLive(t.Context(), "b"); err != nil {
			t.Fatalf("ClearLive(b): %v", err)
		}
		ls := mustLiveStates(t, f.st)
		if len(ls) != 1 || ls[0].Name != "alice" || ls[0].NodeID != "a" {
			t.Errorf("live after ClearLive(b) = %+v, want alice on a only", ls)
		}
		if n := countEvents(t, f.st, stagedoor.EventStreamStopped, "show"); n != 1 {
			t.Errorf("stream.stopped for show = %d, want 1", n)
		}
		if changed, err := f.st.SetOffline(t.Context(), "alice", "a", ""); err != nil || !changed {
			t.Errorf("SetOffline(alice, node a) = %v, %v; want true", changed, err)
		}
	})

	// A kick asked elsewhere reaches only the node named, once, in order; a request its
	// node has not taken within a minute is dropped.
	t.Run("KickRequests", func(t *testing.T) {
		f := s.clusterFixture(t)
		ctx := t.Context()
		if got, err := f.st.TakeKickRequests(ctx, "a"); err != nil || len(got) != 0 {
			t.Fatalf("TakeKickRequests(a) with none = %+v, %v", got, err)
		}
		stale := stagedoor.KickRequest{Name: "old", Node: "a", SourceID: "s0", By: "boss"}
		if err := f.st.RequestKick(ctx, stale); err != nil {
			t.Fatal(err)
		}
		f.clock.Add(61 * time.Second)
		gen := policyGen(t, f.st)
		for _, r := range []stagedoor.KickRequest{
			{Name: "alice", Node: "a", SourceID: "s1", By: "boss via b"},
			{Name: "show", Node: "b", SourceID: "s2", By: "api via a"},
			{Name: "alice", Node: "a", SourceID: "s3", By: "boss via c"},
		} {
			if err := f.st.RequestKick(ctx, r); err != nil {
				t.Fatalf("RequestKick(%+v): %v", r, err)
			}
		}
		// Every service reconciles at once on a request (the holder takes it then).
		if after := policyGen(t, f.st); after == gen {
			t.Errorf("policy generation unchanged by kick requests, want it moved")
		}
		got, err := f.st.TakeKickRequests(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range got {
			ids = append(ids, r.Node+"/"+r.Name+"/"+r.SourceID+"/"+r.By)
			if r.At.IsZero() {
				t.Errorf("request %+v has no time", r)
			}
		}
		if want := []string{"a/alice/s1/boss via b", "a/alice/s3/boss via c"}; !slices.Equal(ids, want) {
			t.Errorf("TakeKickRequests(a) = %v, want %v (the stale one dropped)", ids, want)
		}
		if again, err := f.st.TakeKickRequests(ctx, "a"); err != nil || len(again) != 0 {
			t.Errorf("TakeKickRequests(a) again = %+v, %v; want none", again, err)
		}
		if b, err := f.st.TakeKickRequests(ctx, "b"); err != nil || len(b) != 1 || b[0].SourceID != "s2" {
			t.Errorf("TakeKickRequests(b) = %+v, %v; want show's", b, err)
		}
	})

	// Two dispatchers claim the due events at once: they split them, none twice; claimed
	// events are not claimed again until the hold runs out, a retry or the finish.
	t.Run("ClaimEventsSplit", func(t *testing.T) {
		f := s.clusterFixture(t)
		ctx := t.Context()
		before := len(mustDue(t, f.st, allEvents))
		for i := range 10 {
			if err := f.st.AddEvent(ctx, stagedoor.EventStreamStarted, "alice", fmt.Sprintf("ch%d", i)); err != nil {
				t.Fatalf("AddEvent: %v", err)
			}
		}
		total := before + 10
		var (
			wg   sync.WaitGroup
			got  [2][]stagedoor.OutboxEvent
			errs [2]error
		)
		for i := range 2 {
			wg.Go(func() { got[i], errs[i] = f.st.ClaimEvents(ctx, fmt.Sprintf("r%d", i), total-2, time.Minute) })
		}
		wg.Wait()
		var ids []int64
		for i := range 2 {
			if errs[i] != nil {
				t.Fatalf("ClaimEvents(r%d): %v", i, errs[i])
			}
			if !slices.IsSortedFunc(got[i], func(a, b stagedoor.OutboxEvent) int { return int(a.ID - b.ID) }) {
				t.Errorf("ClaimEvents(r%d) not oldest first: %+v", i, got[i])
			}
			for _, e := range got[i] {
				ids = append(ids, e.ID)
			}
		}
		slices.Sort(ids)
		if len(ids) != total || len(slices.Compact(slices.Clone(ids))) != total {
			t.Fatalf("claimed ids %v (%d and %d), want %d distinct events, none twice", ids, len(got[0]), len(got[1]), total)
		}
		if again, err := f.st.ClaimEvents(ctx, "r2", allEvents, time.Minute); err != nil || len(again) != 0 {
			t.Errorf("ClaimEvents while all are held = %+v, %v; want none", again, err)
		}
		if err := f.st.FinishEvent(ctx, ids[0]); err != nil {
			t.Fatal(err)
		}
		if err := f.st.RetryEvent(ctx, ids[1], 0); err != nil {
			t.Fatal(err)
		}
		again, err := f.st.ClaimEvents(ctx, "r2", allEvents, time.Minute)
		if err != nil || len(again) != 1 || again[0].ID != ids[1] || again[0].Attempts != 1 {
			t.Errorf("ClaimEvents after a retry = %+v, %v; want only the retried event, attempts 1", again, err)
		}
		f.clock.Add(time.Minute + time.Second)
		again, err = f.st.ClaimEvents(ctx, "r3", allEvents, time.Minute)
		if err != nil || len(again) != total-1 {
			t.Errorf("ClaimEvents after the hold = %d events, %v; want %d (all but the finished one)", len(again), err, total-1)
		}
	})
}
