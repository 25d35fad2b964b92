package store_test

import (
	"bytes"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/store"
)

// mustOpen opens a fresh database in t.TempDir() and closes it when the test ends.
func mustOpen(t testing.TB) *store.DB {
	t.Helper()
	return mustOpenPath(t, filepath.Join(t.TempDir(), "stagedoor.db"))
}

func mustOpenPath(t testing.TB, path string) *store.DB {
	t.Helper()
	db, err := store.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func mustCreate(t *testing.T, db *store.DB, name string) stagedoor.NewUser {
	t.Helper()
	nu, err := db.CreateUser(t.Context(), name)
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", name, err)
	}
	return nu
}

func userCount(t *testing.T, db *store.DB) int {
	t.Helper()
	users, err := db.Users(t.Context())
	if err != nil {
		t.Fatalf("Users: %v", err)
	}
	return len(users)
}

func keyCount(t *testing.T, db *store.DB) int {
	t.Helper()
	var n int
	if err := db.SQLForTest().QueryRowContext(t.Context(), `SELECT count(*) FROM stream_keys`).Scan(&n); err != nil {
		t.Fatalf("count stream_keys: %v", err)
	}
	return n
}

// fakeClock is a settable clock for db.Now.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func TestOpenPragmasOnEveryConnection(t *testing.T) {
	db := mustOpen(t)
	ctx := t.Context()

	// Hold several connections at once so the pool has to open new ones.
	const n = 4
	conns := make([]*sql.Conn, 0, n)
	for range n {
		c, err := db.SQLForTest().Conn(ctx)
		if err != nil {
			t.Fatalf("Conn: %v", err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	want := store.PragmasForTest{JournalMode: "wal", BusyTimeout: 5000, ForeignKeys: 1}
	for i, c := range conns {
		got, err := store.ConnPragmasForTest(ctx, c)
		if err != nil {
			t.Fatalf("conn %d: ConnPragmas: %v", i, err)
		}
		if got != want {
			t.Errorf("conn %d: pragmas = %+v, want %+v", i, got, want)
		}
	}
}

func TestOpenSameFileTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stagedoor.db")
	first := mustOpenPath(t, path)
	nu := mustCreate(t, first, "benw")

	// A second process (a hook) opening the same file while serve runs.
	second := mustOpenPath(t, path)
	var n int
	if err := second.SQLForTest().QueryRowContext(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatalf("count schema_migrations: %v", err)
	}
	files, _ := filepath.Glob("migrations/*.sql")
	if n != len(files) || n == 0 {
		t.Errorf("schema_migrations rows = %d, want %d (each migration applied once)", n, len(files))
	}
	if _, err := second.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(nu.StreamKey)); err != nil {
		t.Errorf("second handle: UserByKeyDigest: %v, want the user created through the first", err)
	}

	// Reopen after both are closed: migrations stay applied, data stays.
	_ = first.Close()
	_ = second.Close()
	third := mustOpenPath(t, path)
	if got := userCount(t, third); got != 1 {
		t.Errorf("users after reopen = %d, want 1", got)
	}
}

func TestOpenFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "stagedoor.db")
	db := mustOpenPath(t, path)
	mustCreate(t, db, "benw") // make sure the WAL exists too

	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("Stat(%s): %v", filepath.Base(p), err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode = %v, want %v", filepath.Base(p), got, os.FileMode(0o600))
		}
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatalf("Stat(dir): %v", err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("created directory mode = %v, want %v", got, os.FileMode(0o700))
	}
}

func TestOpenEmptyPathRejected(t *testing.T) {
	db, err := store.Open(t.Context(), "")
	if err == nil {
		_ = db.Close()
		t.Fatal("Open(\"\") succeeded, want an error")
	}
	if _, ok := errors.AsType[*stagedoor.InvalidError](err); !ok {
		t.Errorf("Open(\"\") error = %v (%T), want *stagedoor.InvalidError", err, err)
	}
}

var keyShape = regexp.MustCompile(`^sk_[A-Za-z0-9_-]{43}$`)

func TestCreateUser(t *testing.T) {
	db := mustOpen(t)
	clock := &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("X", 3600))}
	db.Now = clock.Now

	nu := mustCreate(t, db, "benw")
	if !keyShape.MatchString(nu.StreamKey) {
		t.Errorf("StreamKey does not match %s (len %d)", keyShape, len(nu.StreamKey))
	}
	if got, want := nu.Fingerprint, stagedoor.Fingerprint(nu.StreamKey); got != want {
		t.Errorf("Fingerprint = %q, want %q", got, want)
	}
	if nu.Name != "benw" || !nu.Active || nu.ID == 0 {
		t.Errorf("user = %+v, want an active benw with an id", nu.User)
	}
	if want := clock.now.UTC(); !nu.CreatedAt.Equal(want) || nu.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want %v in UTC", nu.CreatedAt, want)
	}

	u, err := db.UserByName(t.Context(), "benw")
	if err != nil {
		t.Fatalf("UserByName: %v", err)
	}
	if u.ID != nu.ID || !u.Active || u.Live != nil {
		t.Errorf("UserByName = %+v, want id %d, active, offline", u, nu.ID)
	}
	o, err := db.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(nu.StreamKey))
	if err != nil {
		t.Fatalf("UserByKeyDigest: %v", err)
	}
	if o.UserID != nu.ID || o.UserName != "benw" || !o.Active || o.Fingerprint != nu.Fingerprint || o.KeyID == 0 {
		t.Errorf("owner = %+v, want benw (id %d), active, fingerprint %s", o, nu.ID, nu.Fingerprint)
	}
}

func TestCreateUserDuplicateConflict(t *testing.T) {
	db := mustOpen(t)
	first := mustCreate(t, db, "benw")

	_, err := db.CreateUser(t.Context(), "benw")
	if !errors.Is(err, stagedoor.ErrConflict) {
		t.Fatalf("second CreateUser error = %v, want ErrConflict", err)
	}
	if got := userCount(t, db); got != 1 {
		t.Errorf("users = %d, want 1", got)
	}
	if got := keyCount(t, db); got != 1 {
		t.Errorf("stream keys = %d, want 1 (the failed create must not leave a key)", got)
	}
	if _, err := db.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(first.StreamKey)); err != nil {
		t.Errorf("first user's key after conflict: %v, want found", err)
	}
}

func TestCreateUserInvalidNameCreatesNothing(t *testing.T) {
	db := mustOpen(t)
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
			nu, err := db.CreateUser(t.Context(), tt.user)
			if _, ok := errors.AsType[*stagedoor.InvalidError](err); !ok {
				t.Fatalf("CreateUser(%q) error = %v, want *stagedoor.InvalidError", tt.user, err)
			}
			if nu.StreamKey != "" {
				t.Errorf("CreateUser(%q) returned a key for an invalid name", tt.user)
			}
			if got := userCount(t, db); got != 0 {
				t.Errorf("users = %d, want 0", got)
			}
			if got := keyCount(t, db); got != 0 {
				t.Errorf("stream keys = %d, want 0", got)
			}
		})
	}
}

func TestRawKeyNeverStored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stagedoor.db")
	db := mustOpenPath(t, path)
	nu := mustCreate(t, db, "benw")
	reset, err := db.ResetKeys(t.Context(), "benw")
	if err != nil {
		t.Fatalf("ResetKeys: %v", err)
	}

	var files []byte
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		b, err := os.ReadFile(path + suffix)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatalf("ReadFile: %v", err)
		}
		files = append(files, b...)
	}
	// Positive control: the scan does see what was written.
	if d := stagedoor.KeyDigest(reset); !bytes.Contains(files, d[:]) {
		t.Fatal("the new key's digest is not in the database files; the scan sees nothing")
	}
	for _, key := range []string{nu.StreamKey, reset} {
		if bytes.Contains(files, []byte(key)) {
			t.Errorf("a raw stream key (fp %s) is in the database files", stagedoor.Fingerprint(key))
		}
		// Nor any 12-character piece of it (threats.md T11).
		for i := 0; i+12 <= len(key); i++ {
			if bytes.Contains(files, []byte(key[i:i+12])) {
				t.Errorf("key (fp %s) substring [%d:%d] is in the database files", stagedoor.Fingerprint(key), i, i+12)
			}
		}
	}
	if _, err := db.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(reset)); err != nil {
		t.Errorf("UserByKeyDigest(new key): %v, want found", err)
	}
}

func TestUserByKeyDigest(t *testing.T) {
	db := mustOpen(t)
	nu := mustCreate(t, db, "benw")
	ctx := t.Context()

	if _, err := db.UserByKeyDigest(ctx, stagedoor.KeyDigest(stagedoor.NewKey())); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("unknown key: error = %v, want ErrNotFound", err)
	}
	if _, err := db.UserByKeyDigest(ctx, stagedoor.Digest{}); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("zero digest: error = %v, want ErrNotFound", err)
	}

	if err := db.SetActive(ctx, "benw", false); err != nil {
		t.Fatalf("SetActive(false): %v", err)
	}
	o, err := db.UserByKeyDigest(ctx, stagedoor.KeyDigest(nu.StreamKey))
	if err != nil {
		t.Fatalf("banned user's key: %v, want found (with Active false)", err)
	}
	if o.Active {
		t.Error("banned user: Active = true, want false")
	}

	if err := db.SetActive(ctx, "benw", true); err != nil {
		t.Fatalf("SetActive(true): %v", err)
	}
	o, err = db.UserByKeyDigest(ctx, stagedoor.KeyDigest(nu.StreamKey))
	if err != nil {
		t.Fatalf("unbanned user's key: %v", err)
	}
	if !o.Active {
		t.Error("unbanned user: Active = false, want true")
	}
}

func TestResetKeys(t *testing.T) {
	db := mustOpen(t)
	ctx := t.Context()
	benw := mustCreate(t, db, "benw")
	alice := mustCreate(t, db, "alice")

	newKey, err := db.ResetKeys(ctx, "benw")
	if err != nil {
		t.Fatalf("ResetKeys: %v", err)
	}
	if !stagedoor.IsKey(newKey) || newKey == benw.StreamKey {
		t.Fatalf("ResetKeys returned a bad or unchanged key (fp %s)", stagedoor.Fingerprint(newKey))
	}
	if _, err := db.UserByKeyDigest(ctx, stagedoor.KeyDigest(benw.StreamKey)); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("old key after reset: error = %v, want ErrNotFound", err)
	}
	o, err := db.UserByKeyDigest(ctx, stagedoor.KeyDigest(newKey))
	if err != nil {
		t.Fatalf("new key: %v, want found", err)
	}
	if o.UserID != benw.ID || o.Fingerprint != stagedoor.Fingerprint(newKey) {
		t.Errorf("new key owner = %+v, want benw with fp %s", o, stagedoor.Fingerprint(newKey))
	}
	if _, err := db.UserByKeyDigest(ctx, stagedoor.KeyDigest(alice.StreamKey)); err != nil {
		t.Errorf("other user's key after reset: %v, want found", err)
	}
	if got := keyCount(t, db); got != 2 {
		t.Errorf("stream keys = %d, want 2", got)
	}
}

func TestResetKeysUnknownUserChangesNothing(t *testing.T) {
	db := mustOpen(t)
	ctx := t.Context()
	benw := mustCreate(t, db, "benw")

	key, err := db.ResetKeys(ctx, "nobody")
	if !errors.Is(err, stagedoor.ErrNotFound) {
		t.Fatalf("ResetKeys(unknown) error = %v, want ErrNotFound", err)
	}
	if key != "" {
		t.Error("ResetKeys(unknown) returned a key")
	}
	if got := keyCount(t, db); got != 1 {
		t.Errorf("stream keys = %d, want 1", got)
	}
	if got := userCount(t, db); got != 1 {
		t.Errorf("users = %d, want 1", got)
	}
	if _, err := db.UserByKeyDigest(ctx, stagedoor.KeyDigest(benw.StreamKey)); err != nil {
		t.Errorf("existing key after failed reset: %v, want found", err)
	}
}

func TestSetActiveUnknownUser(t *testing.T) {
	db := mustOpen(t)
	mustCreate(t, db, "benw")
	if err := db.SetActive(t.Context(), "nobody", false); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("SetActive(unknown) error = %v, want ErrNotFound", err)
	}
	u, err := db.UserByName(t.Context(), "benw")
	if err != nil {
		t.Fatalf("UserByName: %v", err)
	}
	if !u.Active {
		t.Error("benw became inactive after SetActive on another name")
	}
}

func TestUserByNameUnknown(t *testing.T) {
	db := mustOpen(t)
	if _, err := db.UserByName(t.Context(), "nobody"); !errors.Is(err, stagedoor.ErrNotFound) {
		t.Errorf("UserByName(unknown) error = %v, want ErrNotFound", err)
	}
}

// liveFixture is a database with one user, their key id and a fake clock.
type liveFixture struct {
	db    *store.DB
	clock *fakeClock
	user  stagedoor.NewUser
	keyID int64
}

func newLiveFixture(t *testing.T) liveFixture {
	t.Helper()
	db := mustOpen(t)
	clock := &fakeClock{now: time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)}
	db.Now = clock.Now
	nu := mustCreate(t, db, "benw")
	o, err := db.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(nu.StreamKey))
	if err != nil {
		t.Fatalf("UserByKeyDigest: %v", err)
	}
	return liveFixture{db: db, clock: clock, user: nu, keyID: o.KeyID}
}

// live returns the only live channel, or nil when nobody is live.
func (f liveFixture) live(t *testing.T) *stagedoor.LiveState {
	t.Helper()
	ls, err := f.db.LiveStates(t.Context())
	if err != nil {
		t.Fatalf("LiveUsers: %v", err)
	}
	switch len(ls) {
	case 0:
		return nil
	case 1:
		return &ls[0]
	}
	t.Fatalf("LiveUsers returned %d rows, want at most 1", len(ls))
	return nil
}

func (f liveFixture) setLive(t *testing.T, source string) {
	t.Helper()
	if err := f.db.SetLive(t.Context(), stagedoor.LiveState{Name: f.user.Name, UserID: f.user.ID, KeyID: f.keyID, SourceID: source, SourceType: "rtmpConn"}); err != nil {
		t.Fatalf("SetLive(%s): %v", source, err)
	}
}

func TestSetLiveSameSourceKeepsSince(t *testing.T) {
	f := newLiveFixture(t)
	start := f.clock.now
	f.setLive(t, "src-a")
	f.clock.now = start.Add(10 * time.Minute)
	f.setLive(t, "src-a") // a duplicate available hook

	l := f.live(t)
	if l == nil {
		t.Fatal("not live after SetLive")
	}
	if !l.Since.Equal(start) {
		t.Errorf("Since = %v, want %v (unchanged by the same source)", l.Since, start)
	}
	if l.UserID != f.user.ID || l.UserName != "benw" || l.KeyID != f.keyID || l.SourceID != "src-a" || l.SourceType != "rtmpConn" {
		t.Errorf("live state = %+v, want benw on src-a with key %d", *l, f.keyID)
	}
	u, err := f.db.UserByName(t.Context(), "benw")
	if err != nil {
		t.Fatalf("UserByName: %v", err)
	}
	if u.Live == nil || u.Live.SourceID != "src-a" || !u.Live.Since.Equal(start) {
		t.Errorf("UserByName live = %+v, want src-a since %v", u.Live, start)
	}
}

func TestSetLiveNewSourceUpdatesSince(t *testing.T) {
	f := newLiveFixture(t)
	start := f.clock.now
	f.setLive(t, "src-a")
	later := start.Add(10 * time.Minute)
	f.clock.now = later
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
}

func TestSetOffline(t *testing.T) {
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
			f := newLiveFixture(t)
			f.setLive(t, "src-a")
			done, err := f.db.SetOffline(t.Context(), f.user.Name, tt.source)
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
}

func TestSetOfflineNeverLive(t *testing.T) {
	f := newLiveFixture(t)
	done, err := f.db.SetOffline(t.Context(), f.user.Name, "src-a")
	if err != nil {
		t.Fatalf("SetOffline: %v", err)
	}
	if done {
		t.Error("SetOffline for a user who was never live reported a change")
	}
}

func TestHookOrderingLateUnavailable(t *testing.T) {
	f := newLiveFixture(t)
	f.setLive(t, "src-a")
	f.clock.now = f.clock.now.Add(time.Minute)
	f.setLive(t, "src-b")
	done, err := f.db.SetOffline(t.Context(), f.user.Name, "src-a") // A's late unavailable
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
}

func TestLiveUsersOrderAndClearLive(t *testing.T) {
	f := newLiveFixture(t)
	ctx := t.Context()
	zed := mustCreate(t, f.db, "zed")
	alice := mustCreate(t, f.db, "alice")
	for _, u := range []stagedoor.User{zed.User, f.user.User, alice.User} {
		if err := f.db.SetLive(ctx, stagedoor.LiveState{Name: u.Name, UserID: u.ID, SourceID: "src", SourceType: "rtmpConn"}); err != nil {
			t.Fatalf("SetLive(%s): %v", u.Name, err)
		}
	}
	ls, err := f.db.LiveStates(ctx)
	if err != nil {
		t.Fatalf("LiveUsers: %v", err)
	}
	var names []string
	for _, l := range ls {
		names = append(names, l.UserName)
	}
	if got, want := strings.Join(names, ","), "alice,benw,zed"; got != want {
		t.Errorf("LiveUsers names = %s, want %s", got, want)
	}
	if ls[0].KeyID != 0 {
		t.Errorf("KeyID = %d for SetLive without a key, want 0", ls[0].KeyID)
	}

	if err := f.db.ClearLive(ctx); err != nil {
		t.Fatalf("ClearLive: %v", err)
	}
	if l := f.live(t); l != nil {
		t.Errorf("live after ClearLive: %+v, want nobody", *l)
	}
}

func TestPingClosed(t *testing.T) {
	db := mustOpen(t)
	if err := db.Ping(t.Context()); err != nil {
		t.Fatalf("Ping(open): %v", err)
	}
	_ = db.Close()
	if err := db.Ping(t.Context()); err == nil {
		t.Error("Ping(closed) = nil, want an error")
	}
}

func TestResetKeysWhileLiveKeepsLiveWithoutKey(t *testing.T) {
	f := newLiveFixture(t)
	f.setLive(t, "src-a")
	if _, err := f.db.ResetKeys(t.Context(), "benw"); err != nil {
		t.Fatalf("ResetKeys: %v", err)
	}
	l := f.live(t)
	if l == nil {
		t.Fatal("offline after ResetKeys, want still live (kicking is the caller's job)")
	}
	// foreign_keys=1: ON DELETE SET NULL drops the reference to the deleted key.
	if l.KeyID != 0 {
		t.Errorf("KeyID = %d after the key was deleted, want 0", l.KeyID)
	}
}
