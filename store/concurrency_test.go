package store_test

import (
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/store"
)

// TestConcurrentMixNeverBusy is T29's soak in miniature (docs/threats.md §5.5): 200
// goroutines share one DB for about 3 s, reading keys and streams, flipping live state,
// rotating keys and appending audit. No caller may see SQLITE_BUSY or "database is
// locked", and afterwards every pooled connection still has WAL and busy_timeout 5000.
func TestConcurrentMixNeverBusy(t *testing.T) {
	if testing.Short() {
		t.Skip("T29 soak: skipped under -short")
	}
	db := mustOpen(t)
	ctx := t.Context()

	const (
		workers = 200
		kinds   = 5
		perKind = workers / kinds
	)
	benw, err := db.CreateUser(ctx, "benw")
	if err != nil {
		t.Fatalf("CreateUser(benw): %v", err)
	}
	if _, err := db.CreateStream(ctx, "studio", "benw", true); err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	benwDigest := stagedoor.KeyDigest(benw.StreamKey)
	// Distinct users per live and rotation worker, so no two workers race on one row.
	liveUsers := make([]stagedoor.NewUser, perKind)
	rotUsers := make([]stagedoor.NewUser, perKind)
	for i := range perKind {
		if liveUsers[i], err = db.CreateUser(ctx, fmt.Sprintf("live_%03d", i)); err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
		if rotUsers[i], err = db.CreateUser(ctx, fmt.Sprintf("rot_%03d", i)); err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
	}

	var (
		stop                                            atomic.Bool
		keyReads, streamReads, lives, rotations, audits atomic.Int64
		errMu                                           sync.Mutex
		errs                                            []error
	)
	fail := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		errs = append(errs, err)
	}
	timer := time.AfterFunc(3*time.Second, func() { stop.Store(true) })
	defer timer.Stop()

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			slot := w / kinds
			for n := 0; !stop.Load() && ctx.Err() == nil; n++ {
				switch w % kinds {
				case 0:
					if _, err := db.UserByKeyDigest(ctx, benwDigest); err != nil {
						fail(fmt.Errorf("UserByKeyDigest: %w", err))
						return
					}
					keyReads.Add(1)
				case 1:
					if _, err := db.StreamByName(ctx, "studio"); err != nil {
						fail(fmt.Errorf("StreamByName: %w", err))
						return
					}
					streamReads.Add(1)
				case 2:
					u := liveUsers[slot]
					src := fmt.Sprintf("conn-%d-%d", w, n)
					if err := db.SetLive(ctx, stagedoor.LiveState{Name: u.Name, UserID: u.ID, UserName: u.Name, SourceID: src, SourceType: "rtmpConn"}); err != nil {
						fail(fmt.Errorf("SetLive(%s): %w", u.Name, err))
						return
					}
					changed, err := db.SetOffline(ctx, u.Name, src)
					if err != nil {
						fail(fmt.Errorf("SetOffline(%s): %w", u.Name, err))
						return
					}
					if !changed {
						fail(fmt.Errorf("SetOffline(%s, %s) changed nothing, want the live row cleared", u.Name, src))
						return
					}
					lives.Add(1)
				case 3:
					u := rotUsers[slot]
					k, err := db.AddKey(ctx, u.Name, "rotated")
					if err != nil {
						fail(fmt.Errorf("AddKey(%s): %w", u.Name, err))
						return
					}
					if err := db.RevokeKey(ctx, u.Name, k.Fingerprint, stagedoor.Revocation{}); err != nil {
						fail(fmt.Errorf("RevokeKey(%s): %w", u.Name, err))
						return
					}
					rotations.Add(1)
				case 4:
					e := stagedoor.AuditEntry{At: time.Now(), Kind: "publish", User: "benw", IP: "127.0.0.1", Protocol: "rtmp", Decision: "deny", Reason: "soak"}
					if err := db.AppendAudit(ctx, []stagedoor.AuditEntry{e, e}); err != nil {
						fail(fmt.Errorf("AppendAudit: %w", err))
						return
					}
					audits.Add(1)
				}
			}
		})
	}
	wg.Wait()

	busy := 0
	for _, err := range errs {
		if s := err.Error(); strings.Contains(s, "SQLITE_BUSY") || strings.Contains(s, "database is locked") {
			busy++
		}
	}
	if busy != 0 {
		t.Errorf("%d of %d errors are SQLITE_BUSY / database is locked, want 0", busy, len(errs))
	}
	for i, err := range errs {
		if i == 10 {
			t.Errorf("… and %d more", len(errs)-10)
			break
		}
		t.Errorf("worker error: %v", err)
	}
	for _, c := range []struct {
		name string
		n    int64
	}{
		{"UserByKeyDigest", keyReads.Load()},
		{"StreamByName", streamReads.Load()},
		{"SetLive/SetOffline", lives.Load()},
		{"AddKey/RevokeKey", rotations.Load()},
		{"AppendAudit", audits.Load()},
	} {
		if c.n == 0 {
			t.Errorf("%s ran 0 times, want > 0", c.name)
		}
		t.Logf("%s: %d", c.name, c.n)
	}

	// Each rotation adds one revocation; each audit call two rows.
	var revoked, auditRows int64
	if err := db.SQLForTest().QueryRowContext(ctx, `SELECT count(*) FROM revoked_keys`).Scan(&revoked); err != nil {
		t.Fatalf("count revoked_keys: %v", err)
	}
	if revoked != rotations.Load() {
		t.Errorf("revoked_keys rows = %d, want %d (one per rotation)", revoked, rotations.Load())
	}
	if err := db.SQLForTest().QueryRowContext(ctx, `SELECT count(*) FROM audit`).Scan(&auditRows); err != nil {
		t.Fatalf("count audit: %v", err)
	}
	if auditRows != 2*audits.Load() {
		t.Errorf("audit rows = %d, want %d", auditRows, 2*audits.Load())
	}

	const held = 8
	conns := make([]*sql.Conn, 0, held)
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	for range held {
		c, err := db.SQLForTest().Conn(ctx)
		if err != nil {
			t.Fatalf("Conn: %v", err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		p, err := store.ConnPragmasForTest(ctx, c)
		if err != nil {
			t.Fatalf("conn %d: ConnPragmas: %v", i, err)
		}
		if p.JournalMode != "wal" || p.BusyTimeout != 5000 {
			t.Errorf("conn %d: journal_mode=%s busy_timeout=%d, want wal and 5000", i, p.JournalMode, p.BusyTimeout)
		}
	}
}
