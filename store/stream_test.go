package store_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/store"
)

// testHash is bcrypt cost 10 of "correct horse battery staple". A constant spares a
// generation (60 ms, about 750 ms under -race); SetPasswordHash does not verify it.
const testHash = "$2a$10$7jiKhObtcPR5dNsER6VO5eedT/DWJc0NhjAwbetwvM9yfoF2iKCTq"

// withCost returns testHash with its cost field replaced: still hash-shaped.
func withCost(cost string) string { return "$2a$" + cost + "$" + testHash[7:] }

func mustStream(t *testing.T, db *store.DB, name, owner string, auth bool) stagedoor.Stream {
	t.Helper()
	s, err := db.CreateStream(t.Context(), name, owner, auth)
	if err != nil {
		t.Fatalf("CreateStream(%q, %q): %v", name, owner, err)
	}
	return s
}

func streamNames(t *testing.T, db *store.DB, owner string) []string {
	t.Helper()
	ss, err := db.Streams(t.Context(), owner)
	if err != nil {
		t.Fatalf("Streams(%q): %v", owner, err)
	}
	var names []string
	for _, s := range ss {
		names = append(names, s.Name)
	}
	return names
}

// noHashIn fails when err's text carries testHash or any 12-character piece of it.
func noHashIn(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for i := 0; i+12 <= len(testHash); i++ {
		if strings.Contains(msg, testHash[i:i+12]) {
			t.Errorf("error %q carries part of the password hash", msg)
			return
		}
	}
}

func TestCreateStream(t *testing.T) {
	db := mustOpen(t)
	alice := mustCreate(t, db, "alice")
	for _, tt := range []struct {
		name string
		auth bool
	}{{"concert", true}, {"lobbycam", false}} {
		s := mustStream(t, db, tt.name, "alice", tt.auth)
		if s.Name != tt.name || s.UserName != "alice" || s.UserID != alice.ID || !s.Active || s.AuthRequired != tt.auth ||
			s.PasswordHash != "" || s.Live != nil || s.ID == 0 || s.CreatedAt.IsZero() {
			t.Errorf("CreateStream(%s) = %+v", tt.name, s)
		}
		got, err := db.StreamByName(t.Context(), tt.name)
		if err != nil || got != s {
			t.Errorf("StreamByName(%s) = %+v, %v; want %+v", tt.name, got, err, s)
		}
	}
}

func TestCreateStreamRefusalsChangeNothing(t *testing.T) {
	db := mustOpen(t)
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	mustStream(t, db, "concert", "alice", true)
	users, keys := userCount(t, db), keyCount(t, db)
	for _, tt := range []struct {
		name, stream, owner string
		want                error // nil: an *stagedoor.InvalidError
	}{
		{"NameOfAnotherUserConflicts", "bob", "alice", stagedoor.ErrConflict},
		{"NameOfAnotherUsersStreamConflicts", "concert", "bob", stagedoor.ErrConflict},
		{"SameStreamTwiceConflicts", "concert", "alice", stagedoor.ErrConflict},
		{"UnknownOwnerNotFound", "gig", "nobody", stagedoor.ErrNotFound},
		{"UppercaseNameInvalid", "Concert", "alice", nil},
		{"TooShortNameInvalid", "ab", "alice", nil},
		{"SlashInNameInvalid", "con/cert", "alice", nil},
		{"QueryInNameInvalid", "concert?user=x", "alice", nil},
		{"ReservedNameInvalid", "api", "alice", nil},
		{"KeyPrefixNameInvalid", "sk_concert", "alice", nil},
		{"EmptyNameInvalid", "", "alice", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := db.CreateStream(t.Context(), tt.stream, tt.owner, true)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Errorf("CreateStream(%q, %q) = %v, want %v", tt.stream, tt.owner, err, tt.want)
				}
			} else if _, ok := errors.AsType[*stagedoor.InvalidError](err); !ok {
				t.Errorf("CreateStream(%q, %q) = %v, want *stagedoor.InvalidError", tt.stream, tt.owner, err)
			}
		})
	}
	if got := streamNames(t, db, ""); len(got) != 1 || got[0] != "concert" {
		t.Errorf("streams after refusals = %v, want [concert]", got)
	}
	if u, k := userCount(t, db), keyCount(t, db); u != users || k != keys {
		t.Errorf("users, keys = %d, %d; want %d, %d", u, k, users, keys)
	}
}

func TestStreamNamedAfterOwner(t *testing.T) {
	db := mustOpen(t)
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	s := mustStream(t, db, "alice", "alice", true)
	if s.UserName != "alice" {
		t.Errorf("stream alice owner = %q, want alice", s.UserName)
	}
	// Only the user themselves may: bob's name stays bob's.
	if _, err := db.CreateStream(t.Context(), "bob", "alice", true); !errors.Is(err, stagedoor.ErrConflict) {
		t.Errorf("CreateStream(bob, alice) = %v, want ErrConflict", err)
	}
	ch, err := db.ChannelByName(t.Context(), "alice")
	if err != nil || ch.Name != "alice" || ch.UserName != "alice" {
		t.Errorf("ChannelByName(alice) = %+v, %v", ch, err)
	}
}

func TestCreateUserNamedLikeStreamConflicts(t *testing.T) {
	db := mustOpen(t)
	mustCreate(t, db, "alice")
	mustStream(t, db, "concert", "alice", true)
	users, keys := userCount(t, db), keyCount(t, db)
	if _, err := db.CreateUser(t.Context(), "concert"); !errors.Is(err, stagedoor.ErrConflict) {
		t.Errorf("CreateUser(concert) = %v, want ErrConflict", err)
	}
	if u, k := userCount(t, db), keyCount(t, db); u != users || k != keys {
		t.Errorf("users, keys = %d, %d; want %d, %d (nothing created)", u, k, users, keys)
	}
	if _, err := db.UserByName(t.Context(), "concert"); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("UserByName(concert) = %v, want ErrNotFound", err)
	}
}

func TestStreamByName(t *testing.T) {
	db := mustOpen(t)
	mustCreate(t, db, "alice")
	mustStream(t, db, "concert", "alice", true)
	mustStream(t, db, "lobbycam", "alice", false)
	ctx := t.Context()

	get := func(name string) stagedoor.Stream {
		t.Helper()
		s, err := db.StreamByName(ctx, name)
		if err != nil {
			t.Fatalf("StreamByName(%s): %v", name, err)
		}
		return s
	}
	if s := get("concert"); s.PasswordHash != "" || !s.AuthRequired || !s.Active || s.UserName != "alice" {
		t.Errorf("before passwd: %+v", s)
	}
	if s := get("lobbycam"); s.AuthRequired {
		t.Errorf("lobbycam AuthRequired = true, want false")
	}
	if err := db.SetPasswordHash(ctx, "alice", testHash); err != nil {
		t.Fatalf("SetPasswordHash: %v", err)
	}
	for _, name := range []string{"concert", "lobbycam"} {
		if s := get(name); s.PasswordHash != testHash {
			t.Errorf("%s PasswordHash = %q, want the owner's hash", name, s.PasswordHash)
		}
	}
	if u, err := db.UserByName(ctx, "alice"); err != nil || !u.HasPassword {
		t.Errorf("UserByName(alice) HasPassword = %v, %v; want true", u.HasPassword, err)
	}
	if err := db.SetActive(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	if s := get("concert"); s.Active {
		t.Error("stream of a banned owner: Active = true")
	}
	_, err := db.StreamByName(ctx, "nosuch")
	if !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("StreamByName(nosuch) = %v, want ErrNotFound", err)
	}
	// A user's own name is not a stream.
	if _, err := db.StreamByName(ctx, "alice"); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("StreamByName(alice) = %v, want ErrNotFound", err)
	}
}

func TestStreams(t *testing.T) {
	db := mustOpen(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		mustCreate(t, db, u)
	}
	mustStream(t, db, "lobbycam", "alice", false)
	mustStream(t, db, "concert", "alice", true)
	mustStream(t, db, "bobcam", "bob", true)
	for _, tt := range []struct {
		name  string
		owner string
		want  string
	}{
		{"OwnerFiltersSortedByName", "alice", "concert,lobbycam"},
		{"OtherOwner", "bob", "bobcam"},
		{"OwnerWithoutStreamsEmpty", "carol", ""},
		{"EmptyOwnerListsAll", "", "bobcam,concert,lobbycam"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(streamNames(t, db, tt.owner), ","); got != tt.want {
				t.Errorf("Streams(%q) = %s, want %s", tt.owner, got, tt.want)
			}
		})
	}
	if _, err := db.Streams(t.Context(), "nobody"); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("Streams(nobody) = %v, want ErrNotFound", err)
	}
}

func TestDeleteStream(t *testing.T) {
	db := mustOpen(t)
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	mustStream(t, db, "concert", "alice", true)
	mustStream(t, db, "lobbycam", "alice", false)
	ctx := t.Context()
	if err := db.DeleteStream(ctx, "concert"); err != nil {
		t.Fatalf("DeleteStream(concert): %v", err)
	}
	if _, err := db.StreamByName(ctx, "concert"); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("StreamByName after delete = %v, want ErrNotFound", err)
	}
	for _, name := range []string{"concert", "nosuch", "alice"} {
		if err := db.DeleteStream(ctx, name); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("DeleteStream(%s) = %v, want ErrNotFound", name, err)
		}
	}
	if got := streamNames(t, db, ""); len(got) != 1 || got[0] != "lobbycam" {
		t.Errorf("streams = %v, want [lobbycam]", got)
	}
	if _, err := db.UserByName(ctx, "alice"); err != nil {
		t.Errorf("owner gone with the stream: %v", err)
	}
	// The name is free again, for anyone.
	if s, err := db.CreateStream(ctx, "concert", "bob", true); err != nil || s.UserName != "bob" {
		t.Errorf("CreateStream(concert, bob) after delete = %+v, %v", s, err)
	}
}

func TestChannelByName(t *testing.T) {
	db := mustOpen(t)
	alice := mustCreate(t, db, "alice")
	mustStream(t, db, "concert", "alice", true)
	for _, tt := range []struct {
		name      string
		channel   string
		wantOwner string
		wantErr   error
	}{
		{"UserChannel", "alice", "alice", nil},
		{"Stream", "concert", "alice", nil},
		{"UnknownNotFound", "nosuch", "", stagedoor.ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := db.ChannelByName(t.Context(), tt.channel)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ChannelByName(%s) err = %v, want %v", tt.channel, err, tt.wantErr)
			}
			if err == nil && (ch.Name != tt.channel || ch.UserName != tt.wantOwner || ch.UserID != alice.ID || !ch.Active || ch.Live != nil) {
				t.Errorf("ChannelByName(%s) = %+v", tt.channel, ch)
			}
		})
	}
}

func TestStreamLiveState(t *testing.T) {
	db := mustOpen(t)
	clock := &fakeClock{now: time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)}
	db.Now = clock.Now
	alice := mustCreate(t, db, "alice")
	mustStream(t, db, "concert", "alice", true)
	ctx := t.Context()

	if _, err := db.LiveByName(ctx, "concert"); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("LiveByName before SetLive = %v, want ErrNotFound", err)
	}
	if err := db.SetLive(ctx, stagedoor.LiveState{Name: "concert", UserID: alice.ID, SourceID: "conn-1", SourceType: "rtmpConn"}); err != nil {
		t.Fatalf("SetLive: %v", err)
	}
	l, err := db.LiveByName(ctx, "concert")
	if err != nil || l.Name != "concert" || l.UserName != "alice" || l.SourceID != "conn-1" || l.KeyID != 0 || !l.Since.Equal(clock.now) {
		t.Errorf("LiveByName(concert) = %+v, %v", l, err)
	}
	if s, err := db.StreamByName(ctx, "concert"); err != nil || s.Live == nil || s.Live.SourceID != "conn-1" {
		t.Errorf("StreamByName(concert).Live = %+v, %v", s.Live, err)
	}
	if ch, err := db.ChannelByName(ctx, "concert"); err != nil || ch.Live == nil {
		t.Errorf("ChannelByName(concert).Live = %+v, %v", ch.Live, err)
	}
	// The stream is live, alice's own channel is not.
	if u, err := db.UserByName(ctx, "alice"); err != nil || u.Live != nil {
		t.Errorf("UserByName(alice).Live = %+v, %v; want nil", u.Live, err)
	}
	if _, err := db.LiveByName(ctx, "alice"); !errors.Is(err, stagedoor.ErrNotFound) {
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
		changed, err := db.SetOffline(ctx, "concert", tt.source)
		if err != nil || changed != tt.wantChanged {
			t.Errorf("%s: SetOffline(concert, %s) = %v, %v; want %v", tt.name, tt.source, changed, err, tt.wantChanged)
		}
		_, err = db.LiveByName(ctx, "concert")
		if live := err == nil; live != tt.wantLive {
			t.Errorf("%s: live = %v (%v), want %v", tt.name, live, err, tt.wantLive)
		}
	}
}

func TestSetPasswordHash(t *testing.T) {
	db := mustOpen(t)
	mustCreate(t, db, "alice")
	mustStream(t, db, "concert", "alice", true)
	ctx := t.Context()
	stored := func() string {
		t.Helper()
		s, err := db.StreamByName(ctx, "concert")
		if err != nil {
			t.Fatalf("StreamByName: %v", err)
		}
		return s.PasswordHash
	}
	var errs []error
	for _, tt := range []struct {
		name string
		user string
		hash string
		want error // nil: an *stagedoor.InvalidError
	}{
		{"PlaintextRefused", "alice", "correct horse battery staple", nil},
		{"EmptyRefused", "alice", "", nil},
		{"Cost13Refused", "alice", withCost("13"), nil},
		{"Cost31Refused", "alice", withCost("31"), nil},
		{"Cost09Refused", "alice", withCost("09"), nil},
		{"Cost04Refused", "alice", withCost("04"), nil},
		{"TruncatedRefused", "alice", testHash[:59], nil},
		{"UnknownUserNotFound", "nobody", testHash, stagedoor.ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := db.SetPasswordHash(ctx, tt.user, tt.hash)
			errs = append(errs, err)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Errorf("SetPasswordHash = %v, want %v", err, tt.want)
				}
			} else if _, ok := errors.AsType[*stagedoor.InvalidError](err); !ok {
				t.Errorf("SetPasswordHash = %v, want *stagedoor.InvalidError", err)
			}
			if got := stored(); got != "" {
				t.Errorf("stored hash after a refusal = %q, want none", got)
			}
		})
	}
	for _, cost := range []string{"10", "11", "12"} {
		h := withCost(cost)
		if err := db.SetPasswordHash(ctx, "alice", h); err != nil {
			t.Errorf("SetPasswordHash(cost %s) = %v", cost, err)
		}
		if got := stored(); got != h {
			t.Errorf("stored hash = %q, want the cost-%s hash", got, cost)
		}
	}
	if err := db.SetPasswordHash(ctx, "alice", testHash); err != nil {
		t.Fatal(err)
	}
	// Errors that happen with a hash around never carry it.
	_, err := db.CreateStream(ctx, "concert", "alice", true)
	errs = append(errs, err)
	_, err = db.CreateStream(ctx, "alice", "nobody", true)
	errs = append(errs, err)
	_, err = db.StreamByName(ctx, "nosuch")
	errs = append(errs, err)
	errs = append(errs, db.SetPasswordHash(ctx, "nobody", testHash))
	errs = append(errs, db.SetPasswordHash(ctx, "alice", withCost("13")))
	for _, err := range errs {
		if err == nil {
			t.Error("an expected error is nil")
		}
		noHashIn(t, err)
	}
}
