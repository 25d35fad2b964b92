package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stagedoor/stagedoor/internal/testdb"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/store"
)

// The behaviour every backend shares is checked by the conformance suite (package
// storetest, run by TestConformance). The tests here check what only SQLite has: the
// file, its mode, the pragmas of pooled connections, migrations, and rows no method
// returns.

func mustCreate(t *testing.T, db *store.DB, name string) stagedoor.NewUser {
	t.Helper()
	nu, err := db.CreateUser(t.Context(), name)
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", name, err)
	}
	return nu
}

func policyGen(t *testing.T, db *store.DB) int64 {
	t.Helper()
	g, err := db.PolicyGeneration(t.Context())
	if err != nil {
		t.Fatalf("PolicyGeneration: %v", err)
	}
	return g
}

// checkPoolPragmas holds n connections of db's pool at once, so that the pool has to
// hand out every idle one and open new ones, and checks that each has the pragmas Open
// puts in the connection string. It may run in a Cleanup, after t's context has ended.
func checkPoolPragmas(t *testing.T, db *store.DB, n int) {
	t.Helper()
	ctx := context.Background()
	conns := make([]*sql.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range n {
		c, err := db.SQLForTest().Conn(ctx)
		if err != nil {
			t.Fatalf("Conn: %v", err)
		}
		conns = append(conns, c)
	}
	want := store.PragmasForTest{JournalMode: "wal", BusyTimeout: int(store.BusyTimeout.Milliseconds()), ForeignKeys: 1}
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

func TestOpenPragmasOnEveryConnection(t *testing.T) {
	checkPoolPragmas(t, testdb.MustOpen(t), store.MaxConnsForTest)
}

func TestOpenSameFileTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stagedoor.db")
	first := testdb.MustOpenAt(t, path)
	nu := mustCreate(t, first, "benw")

	// A second process (a hook) opening the same file while serve runs.
	second := testdb.MustOpenAt(t, path)
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
	// A ban through one handle (the CLI) moves the generation the other (serve) reads.
	gen := policyGen(t, first)
	if got := policyGen(t, second); got != gen {
		t.Errorf("second handle: generation = %d, want %d as the first reads it", got, gen)
	}
	if err := second.SetActive(t.Context(), "benw", false); err != nil {
		t.Fatalf("SetActive through the second handle: %v", err)
	}
	if got := policyGen(t, first); got == gen {
		t.Errorf("first handle: generation = %d after a ban through the second, want it changed", got)
	}

	// Reopen after both are closed: migrations stay applied, data stays.
	_ = first.Close()
	_ = second.Close()
	third := testdb.MustOpenAt(t, path)
	users, err := third.Users(t.Context())
	if err != nil {
		t.Fatalf("Users: %v", err)
	}
	if len(users) != 1 || users[0].Active {
		t.Errorf("users after reopen = %+v, want banned benw only", users)
	}
}

func TestOpenFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "stagedoor.db")
	db := testdb.MustOpenAt(t, path)
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

func TestRawKeyNeverStored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stagedoor.db")
	db := testdb.MustOpenAt(t, path)
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
