// Package testdb opens real SQLite databases for tests of several packages: a fresh
// file in the test's temp dir, and fixtures with users in it. Only tests import it.
package testdb

import (
	"path/filepath"
	"testing"

	"github.com/stagedoor/stagedoor/store"
)

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
