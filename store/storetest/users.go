package storetest

import (
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
)

var keyShape = regexp.MustCompile(`^sk_[A-Za-z0-9_-]{43}$`)

func testCreateUser(t *testing.T, s suite) {
	t.Run("OK", func(t *testing.T) {
		// A clock in another zone: CreatedAt still comes back in UTC.
		st, clock := s.storeAt(t, time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("X", 3600)))
		nu := mustCreate(t, st, "benw")
		if !keyShape.MatchString(nu.StreamKey) {
			t.Errorf("StreamKey does not match %s (len %d)", keyShape, len(nu.StreamKey))
		}
		if got, want := nu.Fingerprint, stagedoor.Fingerprint(nu.StreamKey); got != want {
			t.Errorf("Fingerprint = %q, want %q", got, want)
		}
		if nu.Name != "benw" || !nu.Active || nu.ID == 0 {
			t.Errorf("user = %+v, want an active benw with an id", nu.User)
		}
		if want := clock.Now().UTC(); !nu.CreatedAt.Equal(want) || nu.CreatedAt.Location() != time.UTC {
			t.Errorf("CreatedAt = %v, want %v in UTC", nu.CreatedAt, want)
		}

		u, err := st.UserByName(t.Context(), "benw")
		if err != nil {
			t.Fatalf("UserByName: %v", err)
		}
		if u.ID != nu.ID || !u.Active || u.Live != nil || u.HasPassword || !u.CreatedAt.Equal(nu.CreatedAt) {
			t.Errorf("UserByName = %+v, want id %d, active, offline, no password, created %v", u, nu.ID, nu.CreatedAt)
		}
		o := mustOwner(t, st, nu.StreamKey)
		if o.UserID != nu.ID || o.UserName != "benw" || !o.Active || o.Fingerprint != nu.Fingerprint || o.KeyID == 0 {
			t.Errorf("owner = %+v, want benw (id %d), active, fingerprint %s", o, nu.ID, nu.Fingerprint)
		}
		keys := mustKeys(t, st, "benw")
		want := []stagedoor.KeyInfo{{ID: o.KeyID, Fingerprint: nu.Fingerprint, Label: "default", CreatedAt: nu.CreatedAt}}
		if !reflect.DeepEqual(keys, want) {
			t.Errorf("Keys = %+v, want %+v (one key labelled default)", keys, want)
		}
	})

	t.Run("ErrConflictSameName", func(t *testing.T) {
		st, _ := s.store(t)
		first := mustCreate(t, st, "benw")
		before := stateOf(t, st, first.StreamKey)

		nu, err := st.CreateUser(t.Context(), "benw")
		if !errors.Is(err, stagedoor.ErrConflict) {
			t.Fatalf("second CreateUser error = %v, want ErrConflict", err)
		}
		if nu.StreamKey != "" {
			t.Error("refused CreateUser returned a key")
		}
		// One user and one key: the refused create left no key behind.
		unchanged(t, st, before, first.StreamKey)
	})

	t.Run("ErrConflictStreamName", func(t *testing.T) {
		st, _ := s.store(t)
		mustCreate(t, st, "alice")
		mustStream(t, st, "concert", "alice", true)
		before := stateOf(t, st)
		if _, err := st.CreateUser(t.Context(), "concert"); !errors.Is(err, stagedoor.ErrConflict) {
			t.Errorf("CreateUser(concert) = %v, want ErrConflict", err)
		}
		unchanged(t, st, before)
		if _, err := st.UserByName(t.Context(), "concert"); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("UserByName(concert) = %v, want ErrNotFound", err)
		}
	})

	t.Run("InvalidName", func(t *testing.T) {
		st, _ := s.store(t)
		before := stateOf(t, st)
		for _, tt := range []struct {
			name, user string
		}{
			{"UppercaseRejected", "BenW"},
			{"DotRejected", "ben.w"},
			{"HyphenRejected", "ben-w"},
			{"TooShortRejected", "ab"},
			{"TooLongRejected", strings.Repeat("a", 26)},
			{"EmptyRejected", ""},
			{"NonASCIIRejected", "bénw"},
			{"FullWidthRejected", "ｂｅｎｗ"},
			{"ReservedAPIRejected", "api"},
			{"ReservedLiveRejected", "live"},
			{"KeyPrefixRejected", "sk_abc"},
			{"SlashRejected", "ben/w"},
			{"NULRejected", "benw\x00"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				nu, err := st.CreateUser(t.Context(), tt.user)
				if _, ok := errors.AsType[*stagedoor.InvalidError](err); !ok {
					t.Fatalf("CreateUser(%q) error = %v, want *stagedoor.InvalidError", tt.user, err)
				}
				if nu.StreamKey != "" {
					t.Errorf("CreateUser(%q) returned a key for an invalid name", tt.user)
				}
				unchanged(t, st, before)
			})
		}
	})
}

func testUserByName(t *testing.T, s suite) {
	t.Run("ErrNotFound", func(t *testing.T) {
		st, _ := s.store(t)
		if _, err := st.UserByName(t.Context(), "nobody"); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("UserByName(unknown) error = %v, want ErrNotFound", err)
		}
	})

	t.Run("UsersOrderedByName", func(t *testing.T) {
		st, _ := s.store(t)
		for _, name := range []string{"zed", "benw", "alice"} {
			mustCreate(t, st, name)
		}
		if err := st.SetPasswordHash(t.Context(), "benw", testHash); err != nil {
			t.Fatalf("SetPasswordHash: %v", err)
		}
		users := mustUsers(t, st)
		type row struct {
			Name        string
			HasPassword bool
		}
		var got []row
		for _, u := range users {
			got = append(got, row{u.Name, u.HasPassword})
		}
		if want := []row{{"alice", false}, {"benw", true}, {"zed", false}}; !reflect.DeepEqual(got, want) {
			t.Errorf("Users = %+v, want %+v", got, want)
		}
		for _, u := range users {
			one, err := st.UserByName(t.Context(), u.Name)
			if err != nil || !reflect.DeepEqual(one, u) {
				t.Errorf("UserByName(%s) = %+v, %v; want %+v as Users lists it", u.Name, one, err, u)
			}
		}
	})
}

func testUserByKeyDigest(t *testing.T, s suite) {
	st, _ := s.store(t)
	nu := mustCreate(t, st, "benw")
	ctx := t.Context()

	t.Run("UnknownKeyErrNotFound", func(t *testing.T) {
		if _, err := st.UserByKeyDigest(ctx, stagedoor.KeyDigest(stagedoor.NewKey())); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("unknown key: error = %v, want ErrNotFound", err)
		}
	})
	t.Run("ZeroDigestErrNotFound", func(t *testing.T) {
		if _, err := st.UserByKeyDigest(ctx, stagedoor.Digest{}); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("zero digest: error = %v, want ErrNotFound", err)
		}
	})
	t.Run("BannedFoundInactive", func(t *testing.T) {
		if err := st.SetActive(ctx, "benw", false); err != nil {
			t.Fatalf("SetActive(false): %v", err)
		}
		if o := mustOwner(t, st, nu.StreamKey); o.Active {
			t.Error("banned user: Active = true, want false")
		}
	})
	t.Run("UnbannedActive", func(t *testing.T) {
		if err := st.SetActive(ctx, "benw", true); err != nil {
			t.Fatalf("SetActive(true): %v", err)
		}
		if o := mustOwner(t, st, nu.StreamKey); !o.Active {
			t.Error("unbanned user: Active = false, want true")
		}
	})
}

func testSetActive(t *testing.T, s suite) {
	t.Run("ErrNotFound", func(t *testing.T) {
		st, _ := s.store(t)
		nu := mustCreate(t, st, "benw")
		before := stateOf(t, st, nu.StreamKey)
		if err := st.SetActive(t.Context(), "nobody", false); !errors.Is(err, stagedoor.ErrNotFound) {
			t.Errorf("SetActive(unknown) error = %v, want ErrNotFound", err)
		}
		// benw stays active, and no event is queued.
		unchanged(t, st, before, nu.StreamKey)
	})

	t.Run("EventsOnlyOnChange", func(t *testing.T) {
		st, _ := s.store(t)
		mustCreate(t, st, "alice")
		for _, active := range []bool{false, false, true, true} {
			if err := st.SetActive(t.Context(), "alice", active); err != nil {
				t.Fatalf("SetActive(%v): %v", active, err)
			}
		}
		want := []event{{stagedoor.EventUserBanned, "alice", "alice"}, {stagedoor.EventUserUnbanned, "alice", "alice"}}
		if got := events(t, st); !reflect.DeepEqual(got, want) {
			t.Errorf("events = %+v, want %+v (ban twice, unban twice)", got, want)
		}
	})

	t.Run("BanShowsEverywhere", func(t *testing.T) {
		st, _ := s.store(t)
		ctx := t.Context()
		alice := mustCreate(t, st, "alice")
		bob := mustCreate(t, st, "bobby")
		mustStream(t, st, "concert", "alice", true)
		backup := mustAddKey(t, st, "alice", "backup")
		if err := st.RevokeKey(ctx, "alice", backup.Fingerprint, stagedoor.Revocation{KeepLive: true}); err != nil {
			t.Fatalf("RevokeKey: %v", err)
		}
		check := func(when string, want bool) {
			t.Helper()
			if u, err := st.UserByName(ctx, "alice"); err != nil || u.Active != want {
				t.Errorf("%s: UserByName.Active = %v, %v; want %v", when, u.Active, err, want)
			}
			if o := mustOwner(t, st, alice.StreamKey); o.Active != want {
				t.Errorf("%s: UserByKeyDigest.Active = %v, want %v", when, o.Active, want)
			}
			if r, err := st.RevokedKey(ctx, stagedoor.KeyDigest(backup.StreamKey)); err != nil || r.Active != want {
				t.Errorf("%s: RevokedKey.Active = %v, %v; want %v", when, r.Active, err, want)
			}
			if s, err := st.StreamByName(ctx, "concert"); err != nil || s.Active != want {
				t.Errorf("%s: StreamByName.Active = %v, %v; want %v", when, s.Active, err, want)
			}
			for _, name := range []string{"alice", "concert"} {
				if ch, err := st.ChannelByName(ctx, name); err != nil || ch.Active != want {
					t.Errorf("%s: ChannelByName(%s).Active = %v, %v; want %v", when, name, ch.Active, err, want)
				}
			}
			// The other user is never touched.
			if o := mustOwner(t, st, bob.StreamKey); !o.Active {
				t.Errorf("%s: bobby's key owner inactive", when)
			}
		}
		check("before", true)
		if err := st.SetActive(ctx, "alice", false); err != nil {
			t.Fatalf("ban: %v", err)
		}
		check("banned", false)
		if err := st.SetActive(ctx, "alice", true); err != nil {
			t.Fatalf("unban: %v", err)
		}
		check("unbanned", true)
	})
}

func testSetPasswordHash(t *testing.T, s suite) {
	st, _ := s.store(t)
	mustCreate(t, st, "alice")
	mustStream(t, st, "concert", "alice", true)
	ctx := t.Context()
	// stored reads the hash both ways a caller can: they must agree.
	stored := func() string {
		t.Helper()
		s, err := st.StreamByName(ctx, "concert")
		if err != nil {
			t.Fatalf("StreamByName: %v", err)
		}
		h, err := st.PasswordHash(ctx, "alice")
		if err != nil || h != s.PasswordHash {
			t.Fatalf("PasswordHash(alice) = %q, %v; the stream carries %q", h, err, s.PasswordHash)
		}
		return h
	}
	if _, err := st.PasswordHash(ctx, "nobody"); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("PasswordHash(nobody) = %v, want ErrNotFound", err)
	}
	var errs []error
	before := stateOf(t, st)
	for _, tt := range []struct {
		name string
		user string
		hash string
		want error // nil: an *stagedoor.InvalidError
	}{
		{"PlaintextInvalid", "alice", "correct horse battery staple", nil},
		{"EmptyInvalid", "alice", "", nil},
		{"Cost13Invalid", "alice", withCost("13"), nil},
		{"Cost31Invalid", "alice", withCost("31"), nil},
		{"Cost09Invalid", "alice", withCost("09"), nil},
		{"Cost04Invalid", "alice", withCost("04"), nil},
		{"TruncatedInvalid", "alice", testHash[:59], nil},
		{"UnknownUserErrNotFound", "nobody", testHash, stagedoor.ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := st.SetPasswordHash(ctx, tt.user, tt.hash)
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
			unchanged(t, st, before)
		})
	}
	t.Run("CostsInBoundsStored", func(t *testing.T) {
		for _, cost := range []string{"10", "11", "12"} {
			h := withCost(cost)
			if err := st.SetPasswordHash(ctx, "alice", h); err != nil {
				t.Errorf("SetPasswordHash(cost %s) = %v", cost, err)
			}
			if got := stored(); got != h {
				t.Errorf("stored hash = %q, want the cost-%s hash", got, cost)
			}
		}
		if u, err := st.UserByName(ctx, "alice"); err != nil || !u.HasPassword {
			t.Errorf("UserByName(alice).HasPassword = %v, %v; want true", u.HasPassword, err)
		}
	})
	t.Run("ErrorsNeverCarryHash", func(t *testing.T) {
		if err := st.SetPasswordHash(ctx, "alice", testHash); err != nil {
			t.Fatal(err)
		}
		// Errors that happen with a hash around never carry it.
		_, err := st.CreateStream(ctx, "concert", "alice", true)
		errs = append(errs, err)
		_, err = st.CreateStream(ctx, "alice", "nobody", true)
		errs = append(errs, err)
		_, err = st.StreamByName(ctx, "nosuch")
		errs = append(errs, err)
		errs = append(errs, st.SetPasswordHash(ctx, "nobody", testHash))
		errs = append(errs, st.SetPasswordHash(ctx, "alice", withCost("13")))
		for _, err := range errs {
			if err == nil {
				t.Error("an expected error is nil")
			}
			noHashIn(t, err)
		}
	})
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
