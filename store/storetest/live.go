package storetest

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testutil"
)

// liveFixture is a store with one user, benw, its key id and the store's clock.
type liveFixture struct {
	st    Store
	clock *testutil.Clock
	user  stagedoor.NewUser
	keyID int64
}

func (s suite) liveFixture(t *testing.T) liveFixture {
	t.Helper()
	st, clock := s.store(t)
	nu := mustCreate(t, st, "benw")
	return liveFixture{st: st, clock: clock, user: nu, keyID: mustOwner(t, st, nu.StreamKey).KeyID}
}

// live returns the only live name, or nil when nothing is live.
func (f liveFixture) live(t *testing.T) *stagedoor.LiveState {
	t.Helper()
	ls := mustLiveStates(t, f.st)
	switch len(ls) {
	case 0:
		return nil
	case 1:
		return &ls[0]
	}
	t.Fatalf("LiveStates returned %d rows, want at most 1", len(ls))
	return nil
}

// setLive puts benw's own channel live on source with benw's key.
func (f liveFixture) setLive(t *testing.T, source string) {
	t.Helper()
	mustSetLive(t, f.st, stagedoor.LiveState{Name: f.user.Name, UserID: f.user.ID, KeyID: f.keyID, SourceID: source, SourceType: "rtmpConn"})
}

func testSetLive(t *testing.T, s suite) {
	t.Run("AdmissionDigestsKept", func(t *testing.T) {
		// What admitted a stream is what a later revocation or password change is checked
		// against, across restarts of the service: the store keeps it with the live state,
		// and the same source may get it later (the reconciler attaches what the hook missed).
		f := s.liveFixture(t)
		key, hash := stagedoor.KeyDigest(f.user.StreamKey), stagedoor.HashDigest(testHash)
		l := stagedoor.LiveState{Name: "benw", UserID: f.user.ID, SourceID: "src-a", SourceType: "srtConn"}
		mustSetLive(t, f.st, l)
		if got := f.live(t); got == nil || got.KeyDigest != nil || got.PasswordDigest != nil {
			t.Fatalf("live state = %+v, want benw with no digests", got)
		}
		for _, want := range []stagedoor.LiveState{
			{Name: "benw", UserID: f.user.ID, SourceID: "src-a", SourceType: "srtConn", KeyDigest: &key},
			{Name: "benw", UserID: f.user.ID, SourceID: "src-a", SourceType: "srtConn", PasswordDigest: &hash},
		} {
			mustSetLive(t, f.st, want)
			got, err := f.st.LiveByName(t.Context(), "benw")
			if err != nil {
				t.Fatalf("LiveByName: %v", err)
			}
			if !reflect.DeepEqual(got.KeyDigest, want.KeyDigest) || !reflect.DeepEqual(got.PasswordDigest, want.PasswordDigest) {
				t.Errorf("digests = key %v password %v, want key %v password %v", got.KeyDigest, got.PasswordDigest, want.KeyDigest, want.PasswordDigest)
			}
		}
	})

	t.Run("SameSourceKeepsSince", func(t *testing.T) {
		f := s.liveFixture(t)
		start := f.clock.Now()
		f.setLive(t, "src-a")
		f.clock.Add(10 * time.Minute)
		f.setLive(t, "src-a") // a duplicate available hook

		l := f.live(t)
		if l == nil {
			t.Fatal("not live after SetLive")
		}
		if !l.Since.Equal(start) {
			t.Errorf("Since = %v, want %v (unchanged by the same source)", l.Since, start)
		}
		if l.Name != "benw" || l.UserID != f.user.ID || l.UserName != "benw" || l.KeyID != f.keyID || l.SourceID != "src-a" || l.SourceType != "rtmpConn" {
			t.Errorf("live state = %+v, want benw on src-a with key %d", *l, f.keyID)
		}
		u, err := f.st.UserByName(t.Context(), "benw")
		if err != nil {
			t.Fatalf("UserByName: %v", err)
		}
		if u.Live == nil || u.Live.SourceID != "src-a" || !u.Live.Since.Equal(start) {
			t.Errorf("UserByName live = %+v, want src-a since %v", u.Live, start)
		}
		if ch, err := f.st.ChannelByName(t.Context(), "benw"); err != nil || ch.Live == nil || ch.Live.SourceID != "src-a" {
			t.Errorf("ChannelByName(benw).Live = %+v, %v; want src-a", ch.Live, err)
		}
	})

	t.Run("NewSourceReplacesWithNewSince", func(t *testing.T) {
		f := s.liveFixture(t)
		f.setLive(t, "src-a")
		f.clock.Add(10 * time.Minute)
		later := f.clock.Now()
		f.setLive(t, "src-b") // the encoder reconnected

		l := f.live(t)
		if l == nil {
			t.Fatal("not live after SetLive")
		}
		if l.SourceID != "src-b" {
			t.Errorf("SourceID = %q, want src-b", l.SourceID)
		}
		if !l.Since.Equal(later) {
			t.Errorf("Since = %v, want %v", l.Since, later)
		}
	})

	t.Run("StreamLiveNotItsOwnersChannel", func(t *testing.T) {
		st, clock := s.store(t)
		alice := mustCreate(t, st, "alice")
		mustStream(t, st, "concert", "alice", true)
		ctx := t.Context()

		if _, err := st.LiveByName(ctx, "concert"); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("LiveByName before SetLive = %v, want ErrNotFound", err)
		}
		mustSetLive(t, st, stagedoor.LiveState{Name: "concert", UserID: alice.ID, SourceID: "conn-1", SourceType: "rtmpConn"})
		l, err := st.LiveByName(ctx, "concert")
		if err != nil || l.Name != "concert" || l.UserName != "alice" || l.SourceID != "conn-1" || l.KeyID != 0 || !l.Since.Equal(clock.Now()) {
			t.Errorf("LiveByName(concert) = %+v, %v", l, err)
		}
		if s, err := st.StreamByName(ctx, "concert"); err != nil || s.Live == nil || s.Live.SourceID != "conn-1" {
			t.Errorf("StreamByName(concert).Live = %+v, %v", s.Live, err)
		}
		if ch, err := st.ChannelByName(ctx, "concert"); err != nil || ch.Live == nil {
			t.Errorf("ChannelByName(concert).Live = %+v, %v", ch.Live, err)
		}
		// The stream is live, alice's own channel is not.
		if u, err := st.UserByName(ctx, "alice"); err != nil || u.Live != nil {
			t.Errorf("UserByName(alice).Live = %+v, %v; want nil", u.Live, err)
		}
		if _, err := st.LiveByName(ctx, "alice"); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("LiveByName(alice) = %v, want ErrNotFound", err)
		}

		for _, tt := range []struct {
			name        string
			source      string
			wantChanged bool
			wantLive    bool
		}{
			{"OldSourceKeepsLive", "conn-0", false, true},
			{"CurrentSourceGoesOffline", "conn-1", true, false},
			{"AgainChangesNothing", "conn-1", false, false},
		} {
			changed, err := st.SetOffline(ctx, "concert", node, tt.source)
			if err != nil || changed != tt.wantChanged {
				t.Errorf("%s: SetOffline(concert, %s) = %v, %v; want %v", tt.name, tt.source, changed, err, tt.wantChanged)
			}
			_, err = st.LiveByName(ctx, "concert")
			if live := err == nil; live != tt.wantLive {
				t.Errorf("%s: live = %v (%v), want %v", tt.name, live, err, tt.wantLive)
			}
		}
	})

	t.Run("KeyDigestSurvivesRevocation", func(t *testing.T) {
		st, _ := s.store(t)
		ctx := t.Context()
		alice := mustCreate(t, st, "alice")
		mustStream(t, st, "alices_show", "alice", true)
		o := mustOwner(t, st, alice.StreamKey)
		d := stagedoor.KeyDigest(alice.StreamKey)
		for _, l := range []stagedoor.LiveState{
			{Name: "alice", UserID: alice.ID, UserName: "alice", KeyID: o.KeyID, KeyDigest: &d, SourceID: "s1", SourceType: "rtmpConn"},
			{Name: "alices_show", UserID: alice.ID, UserName: "alice", SourceID: "s2", SourceType: "rtmpConn"},
		} {
			mustSetLive(t, st, l)
		}
		check := func(when string, wantKeyID int64) {
			t.Helper()
			ls := mustLiveStates(t, st)
			if len(ls) != 2 {
				t.Fatalf("%s: LiveStates = %d, want 2", when, len(ls))
			}
			if ls[0].Name != "alice" || ls[0].KeyDigest == nil || *ls[0].KeyDigest != d || ls[0].KeyID != wantKeyID {
				t.Errorf("%s: alice = %+v, want key id %d and the key's digest", when, ls[0], wantKeyID)
			}
			if ls[1].Name != "alices_show" || ls[1].KeyDigest != nil || ls[1].KeyID != 0 {
				t.Errorf("%s: alices_show = %+v, want no key", when, ls[1])
			}
			l, err := st.LiveByName(ctx, "alice")
			if err != nil {
				t.Fatalf("LiveByName: %v", err)
			}
			if l.KeyDigest == nil || *l.KeyDigest != d {
				t.Errorf("%s: LiveByName(alice).KeyDigest = %v, want the key's digest", when, l.KeyDigest)
			}
		}
		check("live", o.KeyID)
		if err := st.RevokeKey(ctx, "alice", alice.Fingerprint, stagedoor.Revocation{}); err != nil {
			t.Fatalf("RevokeKey: %v", err)
		}
		// The key is gone (no key id) but the digest still names the stream, to kick it.
		check("after revocation", 0)
	})
}

func testSetOffline(t *testing.T, s suite) {
	for _, tt := range []struct {
		name      string
		source    string
		wantDone  bool
		wantStill bool
	}{
		{"OtherSourceKeepsLive", "src-old", false, true},
		{"MatchingSourceGoesOffline", "src-a", true, false},
		{"EmptySourceAlwaysGoesOffline", "", true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := s.liveFixture(t)
			f.setLive(t, "src-a")
			done, err := f.st.SetOffline(t.Context(), f.user.Name, node, tt.source)
			if err != nil {
				t.Fatalf("SetOffline: %v", err)
			}
			if done != tt.wantDone {
				t.Errorf("SetOffline changed = %v, want %v", done, tt.wantDone)
			}
			if l := f.live(t); (l != nil) != tt.wantStill {
				t.Errorf("live after SetOffline = %v, want %v", l != nil, tt.wantStill)
			}
		})
	}

	t.Run("NeverLiveUnchanged", func(t *testing.T) {
		f := s.liveFixture(t)
		before := stateOf(t, f.st)
		done, err := f.st.SetOffline(t.Context(), f.user.Name, node, "src-a")
		if err != nil {
			t.Fatalf("SetOffline: %v", err)
		}
		if done {
			t.Error("SetOffline for a user who was never live reported a change")
		}
		unchanged(t, f.st, before)
	})

	t.Run("LateUnavailableKeepsNewSource", func(t *testing.T) {
		f := s.liveFixture(t)
		f.setLive(t, "src-a")
		f.clock.Add(time.Minute)
		f.setLive(t, "src-b")
		done, err := f.st.SetOffline(t.Context(), f.user.Name, node, "src-a") // A's late unavailable
		if err != nil {
			t.Fatalf("SetOffline: %v", err)
		}
		if done {
			t.Error("late unavailable of source A reported a change")
		}
		l := f.live(t)
		if l == nil {
			t.Fatal("offline after A's late unavailable, want live on B")
		}
		if l.SourceID != "src-b" {
			t.Errorf("SourceID = %q, want src-b", l.SourceID)
		}
	})
}

func testLiveStates(t *testing.T, s suite) {
	t.Run("OrderedByNameThenClearLive", func(t *testing.T) {
		f := s.liveFixture(t)
		ctx := t.Context()
		zed := mustCreate(t, f.st, "zed")
		alice := mustCreate(t, f.st, "alice")
		for _, u := range []stagedoor.User{zed.User, f.user.User, alice.User} {
			mustSetLive(t, f.st, stagedoor.LiveState{Name: u.Name, UserID: u.ID, SourceID: "src", SourceType: "rtmpConn"})
		}
		ls := mustLiveStates(t, f.st)
		var names []string
		for _, l := range ls {
			names = append(names, l.UserName)
		}
		if got, want := strings.Join(names, ","), "alice,benw,zed"; got != want {
			t.Fatalf("LiveStates names = %s, want %s", got, want)
		}
		if ls[0].KeyID != 0 || ls[0].KeyDigest != nil {
			t.Errorf("KeyID, KeyDigest = %d, %v for SetLive without a key, want 0, nil", ls[0].KeyID, ls[0].KeyDigest)
		}

		if err := f.st.ClearLive(ctx, node); err != nil {
			t.Fatalf("ClearLive: %v", err)
		}
		if l := f.live(t); l != nil {
			t.Errorf("live after ClearLive: %+v, want nobody", *l)
		}
	})

	t.Run("ClearLiveQueuesStoppedPerName", func(t *testing.T) {
		st, _ := s.store(t)
		ctx := t.Context()
		alice := mustCreate(t, st, "alice")
		bob := mustCreate(t, st, "bobby")
		mustStream(t, st, "alices_show", "alice", true)
		for _, l := range []stagedoor.LiveState{
			{Name: "alice", UserID: alice.ID, UserName: "alice", SourceID: "s1", SourceType: "rtmpConn"},
			{Name: "alices_show", UserID: alice.ID, UserName: "alice", SourceID: "s2", SourceType: "rtmpConn"},
			{Name: "bobby", UserID: bob.ID, UserName: "bobby", SourceID: "s3", SourceType: "webRTCSession"},
		} {
			mustSetLive(t, st, l)
		}
		before := len(events(t, st))

		if err := st.ClearLive(ctx, node); err != nil {
			t.Fatalf("ClearLive: %v", err)
		}
		if ls := mustLiveStates(t, st); len(ls) != 0 {
			t.Errorf("LiveStates after ClearLive = %d, want 0", len(ls))
		}
		got := map[event]int{}
		for _, e := range events(t, st)[before:] {
			got[e]++
		}
		want := map[event]int{
			{stagedoor.EventStreamStopped, "alice", "alice"}:       1,
			{stagedoor.EventStreamStopped, "alice", "alices_show"}: 1,
			{stagedoor.EventStreamStopped, "bobby", "bobby"}:       1,
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("events after ClearLive = %v, want %v", got, want)
		}

		if err := st.ClearLive(ctx, node); err != nil {
			t.Fatalf("ClearLive again: %v", err)
		}
		if got := len(events(t, st)); got != before+3 {
			t.Errorf("outbox after a second ClearLive = %d events, want %d (nothing was live)", got, before+3)
		}
	})
}

func testLiveEvents(t *testing.T, s suite) {
	st, _ := s.store(t)
	ctx := t.Context()
	alice := mustCreate(t, st, "alice")
	mustStream(t, st, "alices_show", "alice", true)
	live := func(t *testing.T, name, source string) {
		t.Helper()
		mustSetLive(t, st, stagedoor.LiveState{Name: name, UserID: alice.ID, UserName: "alice", SourceID: source, SourceType: "rtmpConn"})
	}
	offline := func(t *testing.T, name, source string, want bool) {
		t.Helper()
		changed, err := st.SetOffline(ctx, name, node, source)
		if err != nil {
			t.Fatalf("SetOffline(%s, %q): %v", name, source, err)
		}
		if changed != want {
			t.Errorf("SetOffline(%s, %q) = %v, want %v", name, source, changed, want)
		}
	}
	started := event{stagedoor.EventStreamStarted, "alice", "alice"}
	stopped := event{stagedoor.EventStreamStopped, "alice", "alice"}

	for _, step := range []struct {
		name string
		do   func(t *testing.T)
		want []event // the whole outbox after the step
	}{
		{"GoingLiveQueuesStarted", func(t *testing.T) { live(t, "alice", "src-a") }, []event{started}},
		{"SameSourceAgainQueuesNothing", func(t *testing.T) { live(t, "alice", "src-a") }, []event{started}},
		{"ReconnectQueuesNothing", func(t *testing.T) { live(t, "alice", "src-b") }, []event{started}},
		{"StaleSourceOfflineQueuesNothing", func(t *testing.T) { offline(t, "alice", "src-a", false) }, []event{started}},
		{"OfflineQueuesStopped", func(t *testing.T) { offline(t, "alice", "src-b", true) }, []event{started, stopped}},
		{"OfflineAgainQueuesNothing", func(t *testing.T) { offline(t, "alice", "", false) }, []event{started, stopped}},
		{"LiveAgainQueuesStarted", func(t *testing.T) { live(t, "alice", "src-c") }, []event{started, stopped, started}},
	} {
		t.Run(step.name, func(t *testing.T) {
			step.do(t)
			if got := events(t, st); !reflect.DeepEqual(got, step.want) {
				t.Errorf("outbox = %+v, want %+v", got, step.want)
			}
		})
	}
}
