package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testutil"
)

// base is where every case's clock starts: a whole second, since stores may keep seconds.
var base = time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)

// testHash is bcrypt cost 10 of "correct horse battery staple". A constant spares a
// generation (60 ms, about 750 ms under -race); SetPasswordHash does not verify it.
const testHash = "$2a$10$7jiKhObtcPR5dNsER6VO5eedT/DWJc0NhjAwbetwvM9yfoF2iKCTq"

// withCost returns testHash with its cost field replaced: still hash-shaped.
func withCost(cost string) string { return "$2a$" + cost + "$" + testHash[7:] }

// allEvents is a limit above any number of events a case queues.
const allEvents = 1 << 20

// store opens a fresh store whose clock starts at base.
func (s suite) store(t *testing.T) (Store, *testutil.Clock) {
	t.Helper()
	return s.storeAt(t, base)
}

// storeAt opens a fresh store whose clock starts at start.
func (s suite) storeAt(t *testing.T, start time.Time) (Store, *testutil.Clock) {
	t.Helper()
	c := testutil.NewClock(start)
	return s.open(t, c.Now), c
}

func mustCreate(t *testing.T, st Store, name string) stagedoor.NewUser {
	t.Helper()
	nu, err := st.CreateUser(t.Context(), name)
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", name, err)
	}
	return nu
}

func mustAddKey(t *testing.T, st Store, name, label string) stagedoor.IssuedKey {
	t.Helper()
	k, err := st.AddKey(t.Context(), name, label)
	if err != nil {
		t.Fatalf("AddKey(%q, %q): %v", name, label, err)
	}
	return k
}

func mustStream(t *testing.T, st Store, name, owner string, auth bool) stagedoor.Stream {
	t.Helper()
	s, err := st.CreateStream(t.Context(), name, owner, auth)
	if err != nil {
		t.Fatalf("CreateStream(%q, %q): %v", name, owner, err)
	}
	return s
}

// node is the node the single-node cases run as.
const node = "node-a"

// local is l published on node as a direct publish, unless l says otherwise.
func local(l stagedoor.LiveState) stagedoor.LiveState {
	if l.NodeID == "" {
		l.NodeID = node
	}
	if l.Kind == "" {
		l.Kind = stagedoor.LiveDirect
	}
	return l
}

func mustSetLive(t *testing.T, st Store, l stagedoor.LiveState) {
	t.Helper()
	if err := st.SetLive(t.Context(), local(l)); err != nil {
		t.Fatalf("SetLive(%s on %s): %v", l.Name, l.SourceID, err)
	}
}

// mustOwner returns the owner of key, failing if the key does not verify.
func mustOwner(t *testing.T, st Store, key string) stagedoor.KeyOwner {
	t.Helper()
	o, err := st.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(key))
	if err != nil {
		t.Fatalf("UserByKeyDigest(key %s): %v, want found", stagedoor.Fingerprint(key), err)
	}
	return o
}

// keyGone fails unless key no longer verifies.
func keyGone(t *testing.T, st Store, key string) {
	t.Helper()
	if _, err := st.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(key)); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("UserByKeyDigest(revoked key %s) error = %v, want ErrNotFound", stagedoor.Fingerprint(key), err)
	}
}

// notRevoked fails unless key was never revoked.
func notRevoked(t *testing.T, st Store, key string) {
	t.Helper()
	if _, err := st.RevokedKey(t.Context(), stagedoor.KeyDigest(key)); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("RevokedKey(key %s) error = %v, want ErrNotFound", stagedoor.Fingerprint(key), err)
	}
}

func policyGen(t *testing.T, st Store) int64 {
	t.Helper()
	g, err := st.PolicyGeneration(t.Context())
	if err != nil {
		t.Fatalf("PolicyGeneration: %v", err)
	}
	return g
}

func mustUsers(t *testing.T, st Store) []stagedoor.User {
	t.Helper()
	users, err := st.Users(t.Context())
	if err != nil {
		t.Fatalf("Users: %v", err)
	}
	return users
}

func mustKeys(t *testing.T, st Store, name string) []stagedoor.KeyInfo {
	t.Helper()
	keys, err := st.Keys(t.Context(), name)
	if err != nil {
		t.Fatalf("Keys(%q): %v", name, err)
	}
	return keys
}

// keyCount is how many keys all users hold together.
func keyCount(t *testing.T, st Store) int {
	t.Helper()
	n := 0
	for _, u := range mustUsers(t, st) {
		n += len(mustKeys(t, st, u.Name))
	}
	return n
}

func streamNames(t *testing.T, st Store, owner string) []string {
	t.Helper()
	ss, err := st.Streams(t.Context(), owner)
	if err != nil {
		t.Fatalf("Streams(%q): %v", owner, err)
	}
	var names []string
	for _, s := range ss {
		names = append(names, s.Name)
	}
	return names
}

func mustLiveStates(t *testing.T, st Store) []stagedoor.LiveState {
	t.Helper()
	ls, err := st.LiveStates(t.Context())
	if err != nil {
		t.Fatalf("LiveStates: %v", err)
	}
	return ls
}

func mustDue(t *testing.T, st Store, limit int) []stagedoor.OutboxEvent {
	t.Helper()
	evs, err := st.DueEvents(t.Context(), limit)
	if err != nil {
		t.Fatalf("DueEvents(%d): %v", limit, err)
	}
	return evs
}

// event is a queued webhook event without its id, time and attempts.
type event struct {
	Event, User, Channel string
}

// events returns every queued event, oldest first. It reads DueEvents, so it sees the
// whole outbox only while no event was finished or retried; the cases that use it do
// neither.
func events(t *testing.T, st Store) []event {
	t.Helper()
	var out []event
	for _, e := range mustDue(t, st, allEvents) {
		out = append(out, event{e.Event, e.User, e.Channel})
	}
	return out
}

// state is everything a caller can read back of a store but the audit trail (which no
// store method but AppendAudit writes); equal states mean a call changed nothing.
type state struct {
	Users   []stagedoor.User
	Keys    map[string][]stagedoor.KeyInfo
	Streams []stagedoor.Stream
	Live    []stagedoor.LiveState
	Due     []stagedoor.OutboxEvent
	Gen     int64
	// Owners and Revoked are UserByKeyDigest and RevokedKey of the keys given to
	// stateOf, as results or error texts.
	Owners, Revoked []string
}

// stateOf reads the whole state of st, looking up keys by digest.
func stateOf(t *testing.T, st Store, keys ...string) state {
	t.Helper()
	ctx := t.Context()
	s := state{Users: mustUsers(t, st), Keys: map[string][]stagedoor.KeyInfo{}, Live: mustLiveStates(t, st),
		Due: mustDue(t, st, allEvents), Gen: policyGen(t, st)}
	for _, u := range s.Users {
		s.Keys[u.Name] = mustKeys(t, st, u.Name)
	}
	var err error
	if s.Streams, err = st.Streams(ctx, ""); err != nil {
		t.Fatalf("Streams: %v", err)
	}
	for _, k := range keys {
		o, err := st.UserByKeyDigest(ctx, stagedoor.KeyDigest(k))
		s.Owners = append(s.Owners, describe(o, err))
		r, err := st.RevokedKey(ctx, stagedoor.KeyDigest(k))
		s.Revoked = append(s.Revoked, describe(r, err))
	}
	return s
}

// describe renders a lookup's result for state: the value, or the error.
func describe(v any, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("%+v", v)
}

// unchanged fails when st no longer has the state before.
func unchanged(t *testing.T, st Store, before state, keys ...string) {
	t.Helper()
	if after := stateOf(t, st, keys...); !reflect.DeepEqual(after, before) {
		t.Errorf("state changed:\n got  %+v\n want %+v", after, before)
	}
}
