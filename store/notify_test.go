package store_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/store"
	"github.com/stagedoor/stagedoor/store/pgtest"
)

// TestPostgresNotifications: on PostgreSQL the triggers notify stagedoor_<schema> with
// 'policy' on a credential change, 'live' on a change of live state and 'nodes' when a
// node appears, never on a lease renewal; one transaction sends each payload once. The
// listener that uses them comes later; this pins what it will hear. Notifications arrive
// in commit order, so "nothing between" is checked by what comes next, not by waiting.
func TestPostgresNotifications(t *testing.T) {
	dsn := pgtest.DSN(t)
	db, err := store.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, _ := url.Parse(dsn)
	schema := u.Query().Get("search_path")

	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), `LISTEN "stagedoor_`+schema+`"`); err != nil {
		t.Fatal(err)
	}
	next := func(step string) string {
		t.Helper()
		// Generous: a notification is a commit away; the bound only keeps a broken
		// trigger from hanging the test.
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("%s: no notification: %v", step, err)
		}
		return n.Payload
	}
	expect := func(step, want string) {
		t.Helper()
		if got := next(step); got != want {
			t.Errorf("%s: notification %q, want %q", step, got, want)
		}
	}
	ctx := t.Context()

	nu, err := db.CreateUser(ctx, "benw") // users and stream_keys inserted: one transaction
	if err != nil {
		t.Fatal(err)
	}
	expect("CreateUser", "policy")
	if err := db.RegisterNode(ctx, "node-a", "127.0.0.1:8554"); err != nil {
		t.Fatal(err)
	}
	expect("RegisterNode", "nodes")
	if err := db.ProbeWrite(ctx, "node-a"); err != nil { // a renewal: silent
		t.Fatal(err)
	}
	if err := db.SetLive(ctx, stagedoor.LiveState{Name: "benw", UserID: nu.ID, UserName: "benw", SourceID: "s1",
		SourceType: "rtmpConn", NodeID: "node-a", Kind: stagedoor.LiveKey}); err != nil {
		t.Fatal(err)
	}
	expect("SetLive after a lease renewal", "live")
	for _, name := range []string{"alice", "carol", "dave"} {
		if _, err := db.CreateUser(ctx, name); err != nil {
			t.Fatal(err)
		}
		expect("CreateUser "+name, "policy")
	}
	if _, err := db.ResetAllKeys(ctx, stagedoor.Revocation{}); err != nil { // many rows, one transaction
		t.Fatal(err)
	}
	expect("ResetAllKeys", "policy")
	if _, err := db.SetOffline(ctx, "benw", "node-a", ""); err != nil {
		t.Fatal(err)
	}
	expect("SetOffline after ResetAllKeys (one policy notification for it)", "live")
}
