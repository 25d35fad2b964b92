package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor/internal/testdb"
	"github.com/stagedoor/stagedoor/store"
	"github.com/stagedoor/stagedoor/store/pgtest"
)

// TestListen: on PostgreSQL, Listen reports its connection (""), then a ban made through
// another handle as "policy"; after its session is killed it reconnects and reports ""
// again, and later changes still arrive. On SQLite it returns at once.
func TestListen(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		db := testdb.MustOpen(t)
		done := make(chan error, 1)
		go func() { done <- db.Listen(t.Context(), func(string) { t.Error("a notification on SQLite") }) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Listen on SQLite did not return")
		}
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.DSN(t)
		db, err := store.Open(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		other, err := store.Open(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		if _, err := other.CreateUser(t.Context(), "benw"); err != nil {
			t.Fatal(err)
		}

		got := make(chan string, 64)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- db.Listen(ctx, func(p string) { got <- p }) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Listen: %v", err)
			}
		}()
		expect := func(step, want string) {
			t.Helper()
			// Generous: only a broken listener waits this long.
			deadline := time.After(30 * time.Second)
			for {
				select {
				case p := <-got:
					if p == want {
						return
					}
				case <-deadline:
					t.Fatalf("%s: no %q notification", step, want)
				}
			}
		}
		expect("connected", "")
		if err := other.SetActive(t.Context(), "benw", false); err != nil {
			t.Fatal(err)
		}
		expect("ban", "policy")

		n, err := other.TerminateListenersForTest(t.Context())
		if err != nil || n != 1 {
			t.Fatalf("terminated %d listener sessions (%v), want 1", n, err)
		}
		expect("reconnected", "")
		if err := other.SetActive(t.Context(), "benw", true); err != nil {
			t.Fatal(err)
		}
		expect("unban after the reconnect", "policy")
	})
}
