package storetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
)

// errList collects the errors of many goroutines.
type errList struct {
	mu   sync.Mutex
	errs []error
}

func (l *errList) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

// report fails t with the first ten errors.
func (l *errList) report(t *testing.T) {
	t.Helper()
	for i, err := range l.errs {
		if i == 10 {
			t.Errorf("… and %d more", len(l.errs)-10)
			break
		}
		t.Errorf("worker error: %v", err)
	}
}

// countEvents counts the queued events of kind on channel.
func countEvents(t *testing.T, st Store, kind, channel string) int {
	t.Helper()
	n := 0
	for _, e := range events(t, st) {
		if e.Event == kind && e.Channel == channel {
			n++
		}
	}
	return n
}

func testConcurrency(t *testing.T, s suite) {
	// Hooks of one channel arrive at once from several MediaMTX workers: each goroutine
	// goes live on its own source, then offline on it. Whatever the interleaving, the
	// last source to go live is taken down by its own offline, so the channel ends
	// offline, every SetOffline that reported a change queued one stream.stopped, and
	// every stream.started has its stream.stopped.
	t.Run("SetLiveSetOfflineRaceEndsOffline", func(t *testing.T) {
		st, _ := s.store(t)
		ctx := t.Context()
		nu := mustCreate(t, st, "benw")
		const workers, rounds = 8, 15
		var (
			errs    errList
			changed atomic.Int64
			wg      sync.WaitGroup
		)
		for w := range workers {
			wg.Go(func() {
				for i := range rounds {
					src := fmt.Sprintf("conn-%d-%d", w, i)
					if err := st.SetLive(ctx, local(stagedoor.LiveState{Name: "benw", UserID: nu.ID, UserName: "benw", SourceID: src, SourceType: "rtmpConn"})); err != nil {
						errs.add(fmt.Errorf("SetLive(%s): %w", src, err))
						return
					}
					ok, err := st.SetOffline(ctx, "benw", node, src)
					if err != nil {
						errs.add(fmt.Errorf("SetOffline(%s): %w", src, err))
						return
					}
					if ok {
						changed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		errs.report(t)

		if ls := mustLiveStates(t, st); len(ls) != 0 {
			t.Errorf("LiveStates = %+v, want nothing live", ls)
		}
		if l, err := st.LiveByName(ctx, "benw"); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("LiveByName = %+v, %v; want ErrNotFound", l, err)
		}
		if u, err := st.UserByName(ctx, "benw"); err != nil || u.Live != nil {
			t.Errorf("UserByName.Live = %+v, %v; want nil", u.Live, err)
		}
		started := countEvents(t, st, stagedoor.EventStreamStarted, "benw")
		stopped := countEvents(t, st, stagedoor.EventStreamStopped, "benw")
		if started == 0 || started != stopped || int64(stopped) != changed.Load() {
			t.Errorf("started %d, stopped %d, SetOffline changes %d; want all equal and > 0", started, stopped, changed.Load())
		}
	})

	// The same with unconditional offlines ("" from a kick or a reconciler) mixed in: the
	// end state may be live or not, but every read agrees with it and the events add up.
	t.Run("SetLiveUnconditionalOfflineRaceConsistent", func(t *testing.T) {
		st, _ := s.store(t)
		ctx := t.Context()
		nu := mustCreate(t, st, "benw")
		const workers, rounds = 8, 15
		var (
			errs errList
			wg   sync.WaitGroup
		)
		for w := range workers {
			wg.Go(func() {
				for i := range rounds {
					if (w+i)%2 == 0 {
						if _, err := st.SetOffline(ctx, "benw", node, ""); err != nil {
							errs.add(fmt.Errorf("SetOffline: %w", err))
							return
						}
						continue
					}
					src := fmt.Sprintf("conn-%d-%d", w, i)
					if err := st.SetLive(ctx, local(stagedoor.LiveState{Name: "benw", UserID: nu.ID, UserName: "benw", SourceID: src, SourceType: "rtmpConn"})); err != nil {
						errs.add(fmt.Errorf("SetLive(%s): %w", src, err))
						return
					}
				}
			})
		}
		wg.Wait()
		errs.report(t)

		ls := mustLiveStates(t, st)
		started := countEvents(t, st, stagedoor.EventStreamStarted, "benw")
		stopped := countEvents(t, st, stagedoor.EventStreamStopped, "benw")
		if started-stopped != len(ls) {
			t.Errorf("started %d - stopped %d != %d live, want the difference to be what is live", started, stopped, len(ls))
		}
		l, err := st.LiveByName(ctx, "benw")
		u, uerr := st.UserByName(ctx, "benw")
		if uerr != nil {
			t.Fatalf("UserByName: %v", uerr)
		}
		switch len(ls) {
		case 0:
			if !errors.Is(err, stagedoor.ErrNotFound) || u.Live != nil {
				t.Errorf("nothing live, but LiveByName = %+v, %v and UserByName.Live = %+v", l, err, u.Live)
			}
		case 1:
			if err != nil || l != ls[0] || u.Live == nil || u.Live.SourceID != l.SourceID {
				t.Errorf("LiveStates = %+v, but LiveByName = %+v, %v and UserByName.Live = %+v", ls[0], l, err, u.Live)
			}
		default:
			t.Errorf("LiveStates = %+v, want at most one row for one name", ls)
		}
	})

	// Two admins create the same user at once: exactly one wins, the others get
	// ErrConflict, and one user with one key is left.
	t.Run("CreateUserSameNameOneWins", func(t *testing.T) {
		st, _ := s.store(t)
		const workers = 8
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []stagedoor.NewUser
			errs    errList
		)
		for range workers {
			wg.Go(func() {
				nu, err := st.CreateUser(t.Context(), "benw")
				switch {
				case err == nil:
					mu.Lock()
					winners = append(winners, nu)
					mu.Unlock()
				case !errors.Is(err, stagedoor.ErrConflict):
					errs.add(fmt.Errorf("CreateUser: %w, want nil or ErrConflict", err))
				}
			})
		}
		wg.Wait()
		errs.report(t)
		if len(winners) != 1 {
			t.Fatalf("%d CreateUser calls succeeded, want exactly 1", len(winners))
		}
		if users := mustUsers(t, st); len(users) != 1 || users[0].ID != winners[0].ID {
			t.Errorf("Users = %+v, want only the winner", users)
		}
		if keys := mustKeys(t, st, "benw"); len(keys) != 1 || keys[0].Fingerprint != winners[0].Fingerprint {
			t.Errorf("Keys = %+v, want only the winner's key", keys)
		}
		mustOwner(t, st, winners[0].StreamKey)
	})

	// A user and a stream claim the same public name at once: exactly one gets it.
	t.Run("CreateUserAndStreamSameNameOneWins", func(t *testing.T) {
		st, _ := s.store(t)
		mustCreate(t, st, "alice")
		const workers = 8
		var (
			wg          sync.WaitGroup
			users, strs atomic.Int64
			errs        errList
		)
		for w := range workers {
			wg.Go(func() {
				var err error
				if w%2 == 0 {
					if _, err = st.CreateUser(t.Context(), "gig"); err == nil {
						users.Add(1)
					}
				} else if _, err = st.CreateStream(t.Context(), "gig", "alice", true); err == nil {
					strs.Add(1)
				}
				if err != nil && !errors.Is(err, stagedoor.ErrConflict) {
					errs.add(fmt.Errorf("worker %d: %w, want nil or ErrConflict", w, err))
				}
			})
		}
		wg.Wait()
		errs.report(t)
		if users.Load()+strs.Load() != 1 {
			t.Fatalf("%d users and %d streams named gig created, want exactly one of them", users.Load(), strs.Load())
		}
		ch, err := st.ChannelByName(t.Context(), "gig")
		if err != nil {
			t.Fatalf("ChannelByName(gig): %v", err)
		}
		_, uerr := st.UserByName(t.Context(), "gig")
		_, serr := st.StreamByName(t.Context(), "gig")
		if users.Load() == 1 && (ch.UserName != "gig" || uerr != nil || !errors.Is(serr, stagedoor.ErrNotFound)) {
			t.Errorf("user gig won, but channel owner %q, UserByName %v, StreamByName %v", ch.UserName, uerr, serr)
		}
		if strs.Load() == 1 && (ch.UserName != "alice" || serr != nil || !errors.Is(uerr, stagedoor.ErrNotFound)) {
			t.Errorf("stream gig won, but channel owner %q, StreamByName %v, UserByName %v", ch.UserName, serr, uerr)
		}
	})

	t.Run("MixedLoadNoErrors", func(t *testing.T) { mixedLoad(t, s) })
}

// mixedLoad is T29's soak in miniature (docs/threats.md §5.5): 200 goroutines share one
// store for about 3 s, reading keys and streams, flipping live state, rotating keys and
// appending audit. No call may fail (SQLite, for one, must never answer "database is
// locked"), and afterwards every write is there.
func mixedLoad(t *testing.T, s suite) {
	if testing.Short() {
		t.Skip("T29 soak: skipped under -short")
	}
	st, _ := s.store(t)
	ctx := t.Context()

	const (
		workers = 200
		kinds   = 5
		perKind = workers / kinds
	)
	benw := mustCreate(t, st, "benw")
	mustStream(t, st, "studio", "benw", true)
	benwDigest := stagedoor.KeyDigest(benw.StreamKey)
	// Distinct users per live and rotation worker, so no two workers race on one row.
	liveUsers := make([]stagedoor.NewUser, perKind)
	rotUsers := make([]stagedoor.NewUser, perKind)
	for i := range perKind {
		liveUsers[i] = mustCreate(t, st, fmt.Sprintf("live_%03d", i))
		rotUsers[i] = mustCreate(t, st, fmt.Sprintf("rot_%03d", i))
	}

	var (
		stop                                 atomic.Bool
		keyReads, streamReads, lives, audits atomic.Int64
		errs                                 errList
		rotMu                                sync.Mutex
		rotated                              []string // the keys added and then revoked
	)
	timer := time.AfterFunc(3*time.Second, func() { stop.Store(true) })
	defer timer.Stop()

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			slot := w / kinds
			for n := 0; !stop.Load() && ctx.Err() == nil; n++ {
				switch w % kinds {
				case 0:
					if _, err := st.UserByKeyDigest(ctx, benwDigest); err != nil {
						errs.add(fmt.Errorf("UserByKeyDigest: %w", err))
						return
					}
					keyReads.Add(1)
				case 1:
					if _, err := st.StreamByName(ctx, "studio"); err != nil {
						errs.add(fmt.Errorf("StreamByName: %w", err))
						return
					}
					streamReads.Add(1)
				case 2:
					u := liveUsers[slot]
					src := fmt.Sprintf("conn-%d-%d", w, n)
					if err := st.SetLive(ctx, local(stagedoor.LiveState{Name: u.Name, UserID: u.ID, UserName: u.Name, SourceID: src, SourceType: "rtmpConn"})); err != nil {
						errs.add(fmt.Errorf("SetLive(%s): %w", u.Name, err))
						return
					}
					changed, err := st.SetOffline(ctx, u.Name, node, src)
					if err != nil {
						errs.add(fmt.Errorf("SetOffline(%s): %w", u.Name, err))
						return
					}
					if !changed {
						errs.add(fmt.Errorf("SetOffline(%s, %s) changed nothing, want the live row cleared", u.Name, src))
						return
					}
					lives.Add(1)
				case 3:
					u := rotUsers[slot]
					k, err := st.AddKey(ctx, u.Name, "rotated")
					if err != nil {
						errs.add(fmt.Errorf("AddKey(%s): %w", u.Name, err))
						return
					}
					if err := st.RevokeKey(ctx, u.Name, k.Fingerprint, stagedoor.Revocation{}); err != nil {
						errs.add(fmt.Errorf("RevokeKey(%s): %w", u.Name, err))
						return
					}
					rotMu.Lock()
					rotated = append(rotated, k.StreamKey)
					rotMu.Unlock()
				case 4:
					e := stagedoor.AuditEntry{At: base, Kind: "publish", User: "benw", IP: "127.0.0.1", Protocol: "rtmp", Decision: "deny", Reason: "soak"}
					if err := st.AppendAudit(ctx, []stagedoor.AuditEntry{e, e}); err != nil {
						errs.add(fmt.Errorf("AppendAudit: %w", err))
						return
					}
					audits.Add(1)
				}
			}
		})
	}
	wg.Wait()
	errs.report(t)
	for _, c := range []struct {
		name string
		n    int64
	}{
		{"UserByKeyDigest", keyReads.Load()},
		{"StreamByName", streamReads.Load()},
		{"SetLive/SetOffline", lives.Load()},
		{"AddKey/RevokeKey", int64(len(rotated))},
		{"AppendAudit", audits.Load()},
	} {
		if c.n == 0 {
			t.Errorf("%s ran 0 times, want > 0", c.name)
		}
		t.Logf("%s: %d", c.name, c.n)
	}

	// Every rotated key is revoked and no longer verifies; each rotation queued one
	// key.rotated; each rotation user holds only its first key.
	for _, k := range rotated {
		if r, err := st.RevokedKey(ctx, stagedoor.KeyDigest(k)); err != nil || r.KeepLive {
			t.Fatalf("RevokedKey(rotated key %s) = %+v, %v; want revoked without keep-live", stagedoor.Fingerprint(k), r, err)
		}
		if _, err := st.UserByKeyDigest(ctx, stagedoor.KeyDigest(k)); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Fatalf("UserByKeyDigest(rotated key %s) = %v, want ErrNotFound", stagedoor.Fingerprint(k), err)
		}
	}
	rotations := 0
	for _, e := range events(t, st) {
		if e.Event == stagedoor.EventKeyRotated {
			rotations++
		}
	}
	if rotations != len(rotated) {
		t.Errorf("key.rotated events = %d, want %d (one per rotation)", rotations, len(rotated))
	}
	for _, u := range rotUsers {
		if keys := mustKeys(t, st, u.Name); len(keys) != 1 || keys[0].Fingerprint != u.Fingerprint {
			t.Errorf("Keys(%s) = %+v, want only its first key", u.Name, keys)
		}
	}
	// Each audit call wrote two entries; every live user is offline again.
	es, err := st.Audit(ctx, stagedoor.AuditFilter{Limit: int(2*audits.Load()) + 10})
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	if int64(len(es)) != 2*audits.Load() {
		t.Errorf("audit entries = %d, want %d", len(es), 2*audits.Load())
	}
	if ls := mustLiveStates(t, st); len(ls) != 0 {
		t.Errorf("LiveStates = %d names, want none (every SetLive was followed by its SetOffline)", len(ls))
	}
}
