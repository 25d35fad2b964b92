package storetest

import (
	"errors"
	"strings"
	"testing"

	"github.com/stagedoor/stagedoor"
)

func testCreateStream(t *testing.T, s suite) {
	t.Run("OK", func(t *testing.T) {
		st, clock := s.store(t)
		alice := mustCreate(t, st, "alice")
		for _, tt := range []struct {
			name string
			auth bool
		}{{"concert", true}, {"lobbycam", false}} {
			s := mustStream(t, st, tt.name, "alice", tt.auth)
			if s.Name != tt.name || s.UserName != "alice" || s.UserID != alice.ID || !s.Active || s.AuthRequired != tt.auth ||
				s.PasswordHash != "" || s.Live != nil || s.ID == 0 || !s.CreatedAt.Equal(clock.Now()) {
				t.Errorf("CreateStream(%s) = %+v", tt.name, s)
			}
			got, err := st.StreamByName(t.Context(), tt.name)
			if err != nil || got != s {
				t.Errorf("StreamByName(%s) = %+v, %v; want %+v", tt.name, got, err, s)
			}
		}
	})

	t.Run("Refused", func(t *testing.T) {
		st, _ := s.store(t)
		mustCreate(t, st, "alice")
		mustCreate(t, st, "bob")
		mustStream(t, st, "concert", "alice", true)
		before := stateOf(t, st)
		for _, tt := range []struct {
			name, stream, owner string
			want                error // nil: an *stagedoor.InvalidError
		}{
			{"NameOfAnotherUserErrConflict", "bob", "alice", stagedoor.ErrConflict},
			{"NameOfAnotherUsersStreamErrConflict", "concert", "bob", stagedoor.ErrConflict},
			{"SameStreamTwiceErrConflict", "concert", "alice", stagedoor.ErrConflict},
			{"UnknownOwnerErrNotFound", "gig", "nobody", stagedoor.ErrNotFound},
			{"UppercaseNameInvalid", "Concert", "alice", nil},
			{"TooShortNameInvalid", "ab", "alice", nil},
			{"SlashInNameInvalid", "con/cert", "alice", nil},
			{"QueryInNameInvalid", "concert?user=x", "alice", nil},
			{"ReservedNameInvalid", "api", "alice", nil},
			{"KeyPrefixNameInvalid", "sk_concert", "alice", nil},
			{"EmptyNameInvalid", "", "alice", nil},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, err := st.CreateStream(t.Context(), tt.stream, tt.owner, true)
				if tt.want != nil {
					if !errors.Is(err, tt.want) {
						t.Errorf("CreateStream(%q, %q) = %v, want %v", tt.stream, tt.owner, err, tt.want)
					}
				} else if _, ok := errors.AsType[*stagedoor.InvalidError](err); !ok {
					t.Errorf("CreateStream(%q, %q) = %v, want *stagedoor.InvalidError", tt.stream, tt.owner, err)
				}
				// Still only concert; no user or key added.
				unchanged(t, st, before)
			})
		}
	})

	t.Run("NamedAfterOwnerOK", func(t *testing.T) {
		st, _ := s.store(t)
		mustCreate(t, st, "alice")
		mustCreate(t, st, "bob")
		s := mustStream(t, st, "alice", "alice", true)
		if s.UserName != "alice" {
			t.Errorf("stream alice owner = %q, want alice", s.UserName)
		}
		// Only the user themselves may: bob's name stays bob's.
		if _, err := st.CreateStream(t.Context(), "bob", "alice", true); !errors.Is(err, stagedoor.ErrConflict) {
			t.Errorf("CreateStream(bob, alice) = %v, want ErrConflict", err)
		}
		ch, err := st.ChannelByName(t.Context(), "alice")
		if err != nil || ch.Name != "alice" || ch.UserName != "alice" {
			t.Errorf("ChannelByName(alice) = %+v, %v", ch, err)
		}
	})
}

func testStreamByName(t *testing.T, s suite) {
	st, _ := s.store(t)
	mustCreate(t, st, "alice")
	mustStream(t, st, "concert", "alice", true)
	mustStream(t, st, "lobbycam", "alice", false)
	ctx := t.Context()

	get := func(t *testing.T, name string) stagedoor.Stream {
		t.Helper()
		s, err := st.StreamByName(ctx, name)
		if err != nil {
			t.Fatalf("StreamByName(%s): %v", name, err)
		}
		return s
	}
	t.Run("OwnerStateBeforePassword", func(t *testing.T) {
		if s := get(t, "concert"); s.PasswordHash != "" || !s.AuthRequired || !s.Active || s.UserName != "alice" {
			t.Errorf("before passwd: %+v", s)
		}
		if s := get(t, "lobbycam"); s.AuthRequired {
			t.Errorf("lobbycam AuthRequired = true, want false")
		}
	})
	t.Run("CarriesOwnersPasswordHash", func(t *testing.T) {
		if err := st.SetPasswordHash(ctx, "alice", testHash); err != nil {
			t.Fatalf("SetPasswordHash: %v", err)
		}
		for _, name := range []string{"concert", "lobbycam"} {
			if s := get(t, name); s.PasswordHash != testHash {
				t.Errorf("%s PasswordHash = %q, want the owner's hash", name, s.PasswordHash)
			}
		}
		if u, err := st.UserByName(ctx, "alice"); err != nil || !u.HasPassword {
			t.Errorf("UserByName(alice) HasPassword = %v, %v; want true", u.HasPassword, err)
		}
	})
	t.Run("BannedOwnerInactive", func(t *testing.T) {
		if err := st.SetActive(ctx, "alice", false); err != nil {
			t.Fatal(err)
		}
		if s := get(t, "concert"); s.Active {
			t.Error("stream of a banned owner: Active = true")
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		if _, err := st.StreamByName(ctx, "nosuch"); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("StreamByName(nosuch) = %v, want ErrNotFound", err)
		}
	})
	t.Run("UserNameErrNotFound", func(t *testing.T) {
		// A user's own name is not a stream.
		if _, err := st.StreamByName(ctx, "alice"); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("StreamByName(alice) = %v, want ErrNotFound", err)
		}
	})
}

func testStreams(t *testing.T, s suite) {
	st, _ := s.store(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		mustCreate(t, st, u)
	}
	mustStream(t, st, "lobbycam", "alice", false)
	mustStream(t, st, "concert", "alice", true)
	mustStream(t, st, "bobcam", "bob", true)
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
			if got := strings.Join(streamNames(t, st, tt.owner), ","); got != tt.want {
				t.Errorf("Streams(%q) = %s, want %s", tt.owner, got, tt.want)
			}
		})
	}
	t.Run("UnknownOwnerErrNotFound", func(t *testing.T) {
		if _, err := st.Streams(t.Context(), "nobody"); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("Streams(nobody) = %v, want ErrNotFound", err)
		}
	})
}

func testSetStreamAuth(t *testing.T, s suite) {
	st, _ := s.store(t)
	mustCreate(t, st, "alice")
	mustStream(t, st, "concert", "alice", true)
	mustStream(t, st, "lobbycam", "alice", false)
	ctx := t.Context()
	auth := func(name string) bool {
		t.Helper()
		got, err := st.StreamByName(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return got.AuthRequired
	}
	t.Run("Off", func(t *testing.T) {
		if err := st.SetStreamAuth(ctx, "concert", false); err != nil {
			t.Fatal(err)
		}
		if auth("concert") || auth("lobbycam") {
			t.Errorf("auth concert=%v lobbycam=%v, want both off", auth("concert"), auth("lobbycam"))
		}
	})
	t.Run("On", func(t *testing.T) {
		if err := st.SetStreamAuth(ctx, "lobbycam", true); err != nil {
			t.Fatal(err)
		}
		if !auth("lobbycam") || auth("concert") {
			t.Errorf("auth lobbycam=%v concert=%v, want on, off", auth("lobbycam"), auth("concert"))
		}
	})
	t.Run("SameValueOK", func(t *testing.T) {
		if err := st.SetStreamAuth(ctx, "lobbycam", true); err != nil {
			t.Errorf("SetStreamAuth(lobbycam, true) again = %v, want nil", err)
		}
	})
	t.Run("UnknownErrNotFound", func(t *testing.T) {
		for _, v := range []bool{true, false} {
			if err := st.SetStreamAuth(ctx, "nothing", v); !errors.Is(err, stagedoor.ErrNotFound) {
				t.Errorf("SetStreamAuth(nothing, %v) = %v, want ErrNotFound", v, err)
			}
		}
	})
	t.Run("UserNameIsNoStream", func(t *testing.T) {
		if err := st.SetStreamAuth(ctx, "alice", false); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("SetStreamAuth(alice) = %v, want ErrNotFound (a user's own channel has no such switch)", err)
		}
	})
}

func testDeleteStream(t *testing.T, s suite) {
	st, _ := s.store(t)
	mustCreate(t, st, "alice")
	mustCreate(t, st, "bob")
	mustStream(t, st, "concert", "alice", true)
	mustStream(t, st, "lobbycam", "alice", false)
	ctx := t.Context()

	t.Run("OK", func(t *testing.T) {
		if err := st.DeleteStream(ctx, "concert"); err != nil {
			t.Fatalf("DeleteStream(concert): %v", err)
		}
		if _, err := st.StreamByName(ctx, "concert"); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("StreamByName after delete = %v, want ErrNotFound", err)
		}
		if got := streamNames(t, st, ""); len(got) != 1 || got[0] != "lobbycam" {
			t.Errorf("streams = %v, want [lobbycam]", got)
		}
		if _, err := st.UserByName(ctx, "alice"); err != nil {
			t.Errorf("owner gone with the stream: %v", err)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		before := stateOf(t, st)
		for _, name := range []string{"concert", "nosuch", "alice"} {
			if err := st.DeleteStream(ctx, name); !errors.Is(err, stagedoor.ErrNotFound) {
				t.Errorf("DeleteStream(%s) = %v, want ErrNotFound", name, err)
			}
		}
		// Deleting "alice" must not touch the user alice.
		unchanged(t, st, before)
	})
	t.Run("NameFreeAgain", func(t *testing.T) {
		// The name is free again, for anyone.
		if s, err := st.CreateStream(ctx, "concert", "bob", true); err != nil || s.UserName != "bob" {
			t.Errorf("CreateStream(concert, bob) after delete = %+v, %v", s, err)
		}
	})
}

func testChannelByName(t *testing.T, s suite) {
	st, _ := s.store(t)
	alice := mustCreate(t, st, "alice")
	mustStream(t, st, "concert", "alice", true)
	for _, tt := range []struct {
		name      string
		channel   string
		wantOwner string
		wantErr   error
	}{
		{"UserChannel", "alice", "alice", nil},
		{"Stream", "concert", "alice", nil},
		{"UnknownErrNotFound", "nosuch", "", stagedoor.ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := st.ChannelByName(t.Context(), tt.channel)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ChannelByName(%s) err = %v, want %v", tt.channel, err, tt.wantErr)
			}
			if err == nil && (ch.Name != tt.channel || ch.UserName != tt.wantOwner || ch.UserID != alice.ID || !ch.Active || ch.Live != nil) {
				t.Errorf("ChannelByName(%s) = %+v", tt.channel, ch)
			}
		})
	}
}
