// Package testdb opens real databases for tests of several packages: a fresh SQLite file
// in the test's temp dir or a fresh schema of the test binary's PostgreSQL (store/pgtest),
// and fixtures with users in them. Only tests import it.
package testdb

import (
	"path/filepath"
	"testing"

	"github.com/stagedoor/stagedoor/store"
	"github.com/stagedoor/stagedoor/store/pgtest"
)

// Backend opens fresh, empty databases of one backend, closed when the test ends.
type Backend struct {
	Name string // "sqlite" or "postgres": the subtest's name
	Open func(t testing.TB) *store.DB
}

// Backends are SQLite and PostgreSQL. A package whose tests use PostgreSQL calls
// pgtest.Main from its TestMain.
var Backends = []Backend{{"sqlite", MustOpen}, {"postgres", MustOpenPostgres}}

// Each runs f as a subtest per backend: TestX/sqlite, TestX/postgres. Without
// PostgreSQL the postgres subtest skips (fails under CI).
func Each(t *testing.T, f func(t *testing.T, b Backend)) {
	for _, b := range Backends {
		t.Run(b.Name, func(t *testing.T) { f(t, b) })
	}
}

// MustOpenPostgres opens a fresh schema of the test PostgreSQL and closes it when the
// test ends.
func MustOpenPostgres(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(t.Context(), pgtest.DSN(t))
	if err != nil {
		t.Fatalf("store.Open(postgres): %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// MustOpen opens a fresh SQLite database in t.TempDir() and closes it when the test ends.
func MustOpen(t testing.TB) *store.DB {
	t.Helper()
	return MustOpenAt(t, filepath.Join(t.TempDir(), "stagedoor.db"))
}

// MustOpenAt opens (creating if needed) the database at path and closes it when the
// test ends.
func MustOpenAt(t testing.TB, path string) *store.DB {
	t.Helper()
	db, err := store.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("store.Open(%q): %v", path, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// Users is a real store with an active user benw and a banned user mallory.
type Users struct {
	DB        *store.DB
	ActiveKey string // benw's key
	BannedKey string // mallory's key
}

// NewUsers creates the Users fixture in a fresh database.
func NewUsers(t testing.TB) Users {
	t.Helper()
	db := MustOpen(t)
	ctx := t.Context()
	benw, err := db.CreateUser(ctx, "benw")
	if err != nil {
		t.Fatalf("CreateUser(benw): %v", err)
	}
	mallory, err := db.CreateUser(ctx, "mallory")
	if err != nil {
		t.Fatalf("CreateUser(mallory): %v", err)
	}
	if err := db.SetActive(ctx, "mallory", false); err != nil {
		t.Fatalf("SetActive(mallory): %v", err)
	}
	return Users{DB: db, ActiveKey: benw.StreamKey, BannedKey: mallory.StreamKey}
}
