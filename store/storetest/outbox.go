package storetest

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
)

func dueIDs(t *testing.T, st Store, limit int) []int64 {
	t.Helper()
	ids := []int64{}
	for _, e := range mustDue(t, st, limit) {
		ids = append(ids, e.ID)
	}
	return ids
}

func testOutbox(t *testing.T, s suite) {
	st, clock := s.store(t)
	ctx := t.Context()
	start := clock.Now()
	for _, e := range [][2]string{{"alice", "alice"}, {"alice", "alices_show"}, {"bobby", "bobby"}} {
		if err := st.AddEvent(ctx, stagedoor.EventStreamStarted, e[0], e[1]); err != nil {
			t.Fatalf("AddEvent: %v", err)
		}
	}
	evs := mustDue(t, st, 10)
	if len(evs) != 3 {
		t.Fatalf("DueEvents = %d, want 3", len(evs))
	}
	a, b, c := evs[0].ID, evs[1].ID, evs[2].ID

	t.Run("AddEventDueAtOnce", func(t *testing.T) {
		want := stagedoor.OutboxEvent{ID: b, At: start, Event: stagedoor.EventStreamStarted, User: "alice", Channel: "alices_show"}
		if evs[1] != want {
			t.Errorf("DueEvents[1] = %+v, want %+v", evs[1], want)
		}
	})
	t.Run("OldestFirst", func(t *testing.T) {
		if a >= b || b >= c {
			t.Errorf("DueEvents ids = %d, %d, %d, want oldest first", a, b, c)
		}
	})
	t.Run("LimitOldestFirst", func(t *testing.T) {
		if got := dueIDs(t, st, 2); !reflect.DeepEqual(got, []int64{a, b}) {
			t.Errorf("DueEvents(limit 2) = %v, want %v", got, []int64{a, b})
		}
	})

	if err := st.FinishEvent(ctx, a); err != nil {
		t.Fatalf("FinishEvent: %v", err)
	}
	if err := st.RetryEvent(ctx, b, 30*time.Second); err != nil {
		t.Fatalf("RetryEvent: %v", err)
	}
	for _, step := range []struct {
		name    string
		advance time.Duration
		want    []int64
	}{
		{"RetriedNotDueAtOnce", 0, []int64{c}},
		{"RetriedNotDueBeforeDelay", 29 * time.Second, []int64{c}},
		{"RetriedDueAfterDelay", time.Second, []int64{b, c}},
		{"FinishedNeverDue", 24 * time.Hour, []int64{b, c}},
	} {
		t.Run(step.name, func(t *testing.T) {
			clock.Add(step.advance)
			if got := dueIDs(t, st, 10); !reflect.DeepEqual(got, step.want) {
				t.Errorf("due = %v, want %v", got, step.want)
			}
		})
	}
	t.Run("RetryCountsAttempt", func(t *testing.T) {
		evs := mustDue(t, st, 10)
		if len(evs) != 2 || evs[0].ID != b || evs[0].Attempts != 1 || evs[1].Attempts != 0 {
			t.Errorf("due = %+v, want b with 1 attempt (retried), then c with 0 (fresh)", evs)
		}
	})

	t.Run("PruneEventsKeepsPending", func(t *testing.T) {
		// b is pending and older than the cut; c is finished and older; d is finished and
		// newer. Only b can show, and it must.
		if err := st.FinishEvent(ctx, c); err != nil {
			t.Fatalf("FinishEvent: %v", err)
		}
		if err := st.AddEvent(ctx, stagedoor.EventUserBanned, "bobby", "bobby"); err != nil { // at start+24h30s
			t.Fatalf("AddEvent: %v", err)
		}
		due := dueIDs(t, st, 10)
		if len(due) != 2 || due[0] != b {
			t.Fatalf("due = %v, want b and the new event", due)
		}
		if err := st.FinishEvent(ctx, due[1]); err != nil {
			t.Fatalf("FinishEvent: %v", err)
		}
		if err := st.PruneEvents(ctx, start.Add(time.Hour)); err != nil {
			t.Fatalf("PruneEvents: %v", err)
		}
		evs := mustDue(t, st, 10)
		if len(evs) != 1 || evs[0].ID != b || evs[0].Attempts != 1 || !evs[0].At.Equal(start) {
			t.Errorf("due after PruneEvents = %+v, want b (queued at %v, 1 attempt) only", evs, start)
		}
	})

	t.Run("FinishAfterRetryNeverDue", func(t *testing.T) {
		if err := st.FinishEvent(ctx, b); err != nil {
			t.Fatalf("FinishEvent: %v", err)
		}
		clock.Add(7 * 24 * time.Hour)
		if got := dueIDs(t, st, 10); len(got) != 0 {
			t.Errorf("due a week after finishing everything = %v, want none", got)
		}
	})

	t.Run("RetrySubSecondNeverShortened", func(t *testing.T) {
		st, clock := s.store(t)
		if err := st.AddEvent(ctx, stagedoor.EventKeyRotated, "alice", "alice"); err != nil {
			t.Fatalf("AddEvent: %v", err)
		}
		id := dueIDs(t, st, 10)[0]
		if err := st.RetryEvent(ctx, id, 1500*time.Millisecond); err != nil {
			t.Fatalf("RetryEvent: %v", err)
		}
		clock.Add(time.Second)
		if got := dueIDs(t, st, 10); len(got) != 0 {
			t.Errorf("due 1 s into a 1.5 s delay = %v, want none", got)
		}
		clock.Add(time.Second)
		if got := dueIDs(t, st, 10); !reflect.DeepEqual(got, []int64{id}) {
			t.Errorf("due 2 s into a 1.5 s delay = %v, want [%d]", got, id)
		}
	})
}

func testAudit(t *testing.T, s suite) {
	st, _ := s.store(t)
	ctx := t.Context()
	entries := []stagedoor.AuditEntry{
		{At: base, Kind: "publish", User: "alice", KeyFP: "aaaa0001", IP: "10.0.0.1", Protocol: "rtmp", Decision: "allow", Reason: "a0"},
		{At: base.Add(time.Minute), Kind: "publish", User: "bobby", Decision: "deny", Reason: "b1"},
		{At: base.Add(2 * time.Minute), Kind: "kick", User: "alice", Decision: "ok", Reason: "a2"},
		{At: base.Add(2 * time.Minute), Kind: "admin", User: "alice", Decision: "ok", Reason: "a2bis"},
		{At: base.Add(3 * time.Minute), Kind: "webhook", User: "bobby", Decision: "retry", Reason: "b3"},
	}
	if err := st.AppendAudit(ctx, entries); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	t.Run("AppendNothingOK", func(t *testing.T) {
		if err := st.AppendAudit(ctx, nil); err != nil {
			t.Errorf("AppendAudit(nil) = %v, want nil", err)
		}
	})

	for _, tt := range []struct {
		name string
		f    stagedoor.AuditFilter
		want []string // reasons, newest first
	}{
		{"AllNewestFirst", stagedoor.AuditFilter{}, []string{"b3", "a2bis", "a2", "b1", "a0"}},
		{"ByUser", stagedoor.AuditFilter{User: "alice"}, []string{"a2bis", "a2", "a0"}},
		{"UnknownUserEmpty", stagedoor.AuditFilter{User: "nobody"}, []string{}},
		{"SinceInclusive", stagedoor.AuditFilter{Since: base.Add(2 * time.Minute)}, []string{"b3", "a2bis", "a2"}},
		{"SinceFutureEmpty", stagedoor.AuditFilter{Since: base.Add(time.Hour)}, []string{}},
		{"Limit", stagedoor.AuditFilter{Limit: 2}, []string{"b3", "a2bis"}},
		{"UserSinceLimit", stagedoor.AuditFilter{User: "alice", Since: base.Add(time.Second), Limit: 1}, []string{"a2bis"}},
		{"ByKind", stagedoor.AuditFilter{Kind: "publish"}, []string{"b1", "a0"}},
		{"UserAndKind", stagedoor.AuditFilter{User: "alice", Kind: "kick"}, []string{"a2"}},
		{"UntilExclusive", stagedoor.AuditFilter{Until: base.Add(2 * time.Minute)}, []string{"b1", "a0"}},
		{"SinceUntil", stagedoor.AuditFilter{Since: base.Add(time.Minute), Until: base.Add(3 * time.Minute)}, []string{"a2bis", "a2", "b1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			es, err := st.Audit(ctx, tt.f)
			if err != nil {
				t.Fatalf("Audit: %v", err)
			}
			if es == nil {
				t.Error("Audit returned nil, want an empty slice (the admin API sends it as a JSON array)")
			}
			got := []string{}
			for _, e := range es {
				got = append(got, e.Reason)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Audit(%+v) = %v, want %v", tt.f, got, tt.want)
			}
		})
	}

	t.Run("EveryFieldRoundTrips", func(t *testing.T) {
		es, err := st.Audit(ctx, stagedoor.AuditFilter{User: "alice", Limit: 100})
		if err != nil {
			t.Fatalf("Audit: %v", err)
		}
		if got, want := es[len(es)-1], entries[0]; got != want {
			t.Errorf("oldest entry = %+v, want %+v", got, want)
		}
	})
}

func testPruneAudit(t *testing.T, s suite) {
	st, _ := s.store(t)
	ctx := t.Context()
	cut := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var entries []stagedoor.AuditEntry
	for i, at := range []time.Time{cut.Add(-48 * time.Hour), cut.Add(-time.Second), cut, cut.Add(time.Hour)} {
		entries = append(entries, stagedoor.AuditEntry{At: at, Kind: "publish", Reason: fmt.Sprint(i)})
	}
	if err := st.AppendAudit(ctx, entries); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	t.Run("OlderThanCutDeleted", func(t *testing.T) {
		n, err := st.PruneAudit(ctx, cut)
		if err != nil {
			t.Fatalf("PruneAudit: %v", err)
		}
		if n != 2 {
			t.Errorf("PruneAudit = %d, want 2", n)
		}
		es, err := st.Audit(ctx, stagedoor.AuditFilter{})
		if err != nil {
			t.Fatalf("Audit: %v", err)
		}
		var got []string
		for _, e := range es {
			got = append(got, e.Reason)
		}
		if want := []string{"3", "2"}; !reflect.DeepEqual(got, want) {
			t.Errorf("entries left = %v, want %v (at or after the cut)", got, want)
		}
	})
	t.Run("AgainDeletesNothing", func(t *testing.T) {
		if n, err := st.PruneAudit(ctx, cut); err != nil || n != 0 {
			t.Errorf("PruneAudit again = %d, %v, want 0, nil", n, err)
		}
	})
}

func testHealth(t *testing.T, s suite) {
	st, _ := s.store(t)
	nu := mustCreate(t, st, "alice")
	t.Run("PingOK", func(t *testing.T) {
		if err := st.Ping(t.Context()); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})
	t.Run("ProbeWriteOKChangesNothing", func(t *testing.T) {
		before := stateOf(t, st, nu.StreamKey)
		// Every probe of a healthy store succeeds, again and again and per owner.
		for _, owner := range []string{"host-a", "host-a", "host-b"} {
			if err := st.ProbeWrite(t.Context(), owner); err != nil {
				t.Errorf("ProbeWrite(%s): %v", owner, err)
			}
		}
		unchanged(t, st, before, nu.StreamKey)
		if es, err := st.Audit(t.Context(), stagedoor.AuditFilter{}); err != nil || len(es) != 0 {
			t.Errorf("audit after probes = %+v, %v; want empty", es, err)
		}
	})
}
