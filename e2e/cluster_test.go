package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/policy"
	"github.com/stagedoor/stagedoor/store/pgtest"
)

// Issue 14, cluster.md §9: two nodes, a and b, each a MediaMTX with `stagedoor serve`
// beside it (the RTMP front on), sharing one PostgreSQL schema.

const (
	// clusterLeaseTTL is --lease-ttl in these tests (the minimum is 2 s; production's
	// default is 10 s): short, so that a dead node's names are freed within seconds.
	clusterLeaseTTL = 4 * time.Second
	// clusterSecret is STAGEDOOR_CLUSTER_SECRET: the credential peers pull public paths
	// with (peer aliases).
	clusterSecret = "e2e-cluster-secret-0123456789abcdef"
	// kickBar is the product's 2 s kick target (P5) plus the slack a busy 2-core test
	// machine needs, as the panel tests allow.
	kickBar = 2*time.Second + panelKickSlack
)

// cluster is nodes a and b on one PostgreSQL schema, and the test's own connection to it
// for read-only asserts.
type cluster struct {
	t    testing.TB
	dsn  string
	a, b *splitStack
	db   *sql.DB
	hook *receiver // the webhook receiver both nodes deliver to
	// leaseTTL is the nodes' --lease-ttl.
	leaseTTL time.Duration
}

type clusterOptions struct {
	// args and env are added to both serves'.
	args, env []string
	// leaseTTL is --lease-ttl; default clusterLeaseTTL. Tests that must act inside a
	// lease on a busy machine take a longer one.
	leaseTTL time.Duration
}

// startCluster starts a fresh schema and nodes a and b on it, a first, each with its
// RTMP front, the webhook receiver, the admin token and the cluster secret, leases of
// clusterLeaseTTL and a 2 s reconcile interval.
func startCluster(t testing.TB, opts clusterOptions) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped with -short")
	}
	c := &cluster{t: t, dsn: pgtest.DSN(t), hook: &receiver{}}
	hooks := httptest.NewServer(c.hook)
	t.Cleanup(hooks.Close)
	cfg, err := pgx.ParseConfig(c.dsn)
	if err != nil {
		t.Fatal(err)
	}
	c.db = stdlib.OpenDB(*cfg)
	// No idle connections: every assert dials afresh, so that none fails on a connection
	// a PostgreSQL restart closed.
	c.db.SetMaxIdleConns(0)
	t.Cleanup(func() { _ = c.db.Close() })

	if opts.leaseTTL == 0 {
		opts.leaseTTL = clusterLeaseTTL
	}
	c.leaseTTL = opts.leaseTTL
	args := []string{"--lease-ttl", opts.leaseTTL.String(), "--webhook-url", hooks.URL + "/hooks"}
	if serveHas(t, "cluster-cidrs") { // peer aliases: the lead's branch
		args = append(args, "--cluster-cidrs", "127.0.0.0/8")
	}
	env := []string{"STAGEDOOR_WEBHOOK_SECRET=" + webhookSecret, "STAGEDOOR_ADMIN_TOKEN=" + adminToken,
		"STAGEDOOR_CLUSTER_SECRET=" + clusterSecret}
	for _, node := range []string{"a", "b"} {
		s := startSplit(t, splitOptions{
			dsn: c.dsn, node: node, front: true, advertise: true,
			args: slices.Concat(args, opts.args), env: slices.Concat(env, opts.env),
		})
		if node == "a" {
			c.a = s
		} else {
			c.b = s
		}
	}
	return c
}

var (
	serveHelpOnce sync.Once
	serveHelp     string
)

// serveHas reports whether `stagedoor serve` has the flag (-name in its help).
func serveHas(t testing.TB, flag string) bool {
	t.Helper()
	bin := stagedoorBin(t)
	serveHelpOnce.Do(func() {
		out, _ := exec.Command(bin, "serve", "-h").CombinedOutput() // exits 2 after the usage
		serveHelp = string(out)
	})
	return strings.Contains(serveHelp, "\n  -"+flag+" ")
}

// healthz returns the status of node s's /healthz, 0 when it does not answer.
func healthz(s *splitStack) int {
	res, err := (&http.Client{Timeout: 2 * time.Second}).Get(s.url(s.internal, "/healthz"))
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// liveRow is a name's row in live_state.
type liveRow struct {
	Node, Kind string
	Epoch      int64
}

// rows returns the live_state rows of name (the primary key allows one; the query does
// not assume it).
func (c *cluster) rows(name string) ([]liveRow, error) {
	ctx, cancel := context.WithTimeout(c.t.Context(), 5*time.Second)
	defer cancel()
	rs, err := c.db.QueryContext(ctx, `SELECT node_id, kind, epoch FROM live_state WHERE name = $1`, name)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []liveRow
	for rs.Next() {
		var r liveRow
		if err := rs.Scan(&r.Node, &r.Kind, &r.Epoch); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rs.Err()
}

// row waits until name has exactly one live row held by node and returns it.
func (c *cluster) row(t testing.TB, name, node string, timeout time.Duration) liveRow {
	t.Helper()
	var got liveRow
	eventually(t, timeout, fmt.Sprintf("live row of %s held by node %s", name, node), func() error {
		rows, err := c.rows(name)
		if err != nil {
			return err
		}
		if len(rows) != 1 || rows[0].Node != node {
			return fmt.Errorf("rows %+v", rows)
		}
		got = rows[0]
		return nil
	})
	return got
}

// noRow waits until name has no live row.
func (c *cluster) noRow(t testing.TB, name string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "no live row of "+name, func() error {
		rows, err := c.rows(name)
		if err != nil {
			return err
		}
		if len(rows) != 0 {
			return fmt.Errorf("rows %+v", rows)
		}
		return nil
	})
}

// offlineOnBoth waits until both nodes' public status APIs say name is offline.
func (c *cluster) offlineOnBoth(t testing.TB, name string, timeout time.Duration) {
	t.Helper()
	c.a.with(t).waitLive(name, false, timeout)
	c.b.with(t).waitLive(name, false, timeout)
}

// exitAt returns a channel that gets the time p exited.
func exitAt(p *publisher) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		<-p.exited
		ch <- time.Now()
	}()
	return ch
}

// exitedWithin asserts that p exits within bar of since (it waits up to kickTimeout and
// logs the time either way) and returns how long it took.
func exitedWithin(t testing.TB, what string, p *publisher, exited <-chan time.Time, since time.Time, bar time.Duration) time.Duration {
	t.Helper()
	select {
	case at := <-exited:
		took := at.Sub(since)
		t.Logf("KICK %s: the publisher exited %v after it", what, took.Round(time.Millisecond))
		if took > bar {
			t.Errorf("%s: the publisher exited %v after it, want within %v (2 s target + slack)", what, took.Round(time.Millisecond), bar)
		}
		return took
	case <-time.After(time.Until(since.Add(kickTimeout))):
		t.Fatalf("%s: the publisher still streams %v after it, want it kicked within %v:\n%s", what, kickTimeout, bar, p.out)
		return 0
	}
}

// liveOn waits until MediaMTX of node s has live/<name> ready, and the status API of
// s says live, and returns its publisher session.
func liveOn(t testing.TB, s *splitStack, name string, p *publisher, timeout time.Duration) mtxSession {
	t.Helper()
	var m mtxSession
	eventually(t, timeout, fmt.Sprintf("live/%s ready on node %s", name, s.node), func() error {
		select {
		case <-p.exited:
			t.Fatalf("the publisher of %s on node %s exited: %v\n%s", name, s.node, p.err, p.out)
		default:
		}
		var err error
		m, err = s.source("live/" + name)
		return err
	})
	s.with(t).waitLive(name, true, timeout)
	return m
}

// auditHas waits until the audit trail (read with the CLI, straight from PostgreSQL)
// holds an entry of user of kind with a reason containing reason.
func (c *cluster) auditHas(t testing.TB, user, kind, reason string) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("audit %s of %s with reason %q", kind, user, reason), func() error {
		out, errOut, err := c.b.with(t).cli("audit", "--user", user, "--json")
		if err != nil {
			return fmt.Errorf("audit: %v %s", err, errOut)
		}
		var es []map[string]any
		if err := json.Unmarshal([]byte(out), &es); err != nil {
			return err
		}
		for _, e := range es {
			if e["kind"] == kind && strings.Contains(fmt.Sprint(e["reason"]), reason) {
				return nil
			}
		}
		return fmt.Errorf("not among %d entries: %s", len(es), out)
	})
}

// authPublish asks node s's auth endpoint what MediaMTX would for an RTMP publish of
// live/<name> with user and password (the front decides the same way, in process).
func (s *stack) authPublish(name, user, password string) (int, error) {
	body, _ := json.Marshal(map[string]any{"user": user, "password": password, "token": "", "ip": "127.0.0.1",
		"action": "publish", "path": "live/" + name, "protocol": "rtmp", "id": nil, "query": ""})
	req, _ := http.NewRequest(http.MethodPost, s.url(s.internal, "/mediamtx/auth"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

// count returns how many deliveries of event for channel the receiver got, and how many
// distinct delivery ids they carried.
func (r *receiver) count(event, channel string) (deliveries, ids int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[int64]bool{}
	for _, e := range r.events {
		if e.Event == event && e.Channel == channel {
			deliveries++
			seen[e.ID] = true
		}
	}
	return deliveries, len(seen)
}

// byID returns how many times each delivery id arrived.
func (r *receiver) byID() map[int64]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[int64]int{}
	for _, e := range r.events {
		out[e.ID]++
	}
	return out
}

// badlySigned is how many deliveries failed the signature check.
func (r *receiver) badlySigned() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bad
}

// migrationNames are the names the migrations are recorded under: the SQLite files'.
func migrationNames(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "store", "migrations", "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations in store/migrations: %v", err)
	}
	var names []string
	for _, f := range files {
		names = append(names, "migrations/"+filepath.Base(f))
	}
	slices.Sort(names)
	return names
}

// TestCluster is cluster.md §9 E1, E2, E4, E5, E7 and E13 on one pair of nodes, each
// case with channels of its own.
func TestCluster(t *testing.T) {
	began := time.Now()
	c := startCluster(t, clusterOptions{})
	a, b := c.a, c.b
	t.Logf("cluster of 2 nodes ready in %v", time.Since(began).Round(time.Millisecond))

	t.Run("E1_BothNodesRegistered", func(t *testing.T) {
		for _, s := range []*splitStack{a, b} {
			if code := healthz(s); code != http.StatusOK {
				t.Errorf("node %s: /healthz %d", s.node, code)
			}
		}
		eventually(t, 10*time.Second, "nodes a and b with fresh leases", func() error {
			rows, err := c.db.QueryContext(t.Context(), `SELECT id, rtsp_addr, lease_until FROM nodes ORDER BY id`)
			if err != nil {
				return err
			}
			defer rows.Close()
			var got []string
			now := time.Now().UnixMilli()
			for rows.Next() {
				var (
					id, addr string
					lease    int64
				)
				if err := rows.Scan(&id, &addr, &lease); err != nil {
					return err
				}
				if lease < now || lease > now+clusterLeaseTTL.Milliseconds()+1000 {
					return fmt.Errorf("node %s: lease until %d, now %d: not fresh, or longer than the TTL", id, lease, now)
				}
				got = append(got, id+"="+addr)
			}
			want := []string{fmt.Sprintf("a=127.0.0.1:%d", a.rtsp), fmt.Sprintf("b=127.0.0.1:%d", b.rtsp)}
			if !slices.Equal(got, want) {
				return fmt.Errorf("nodes %v, want %v", got, want)
			}
			return rows.Err()
		})
		rows, err := c.db.QueryContext(t.Context(), `SELECT name FROM schema_migrations ORDER BY name`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var names []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			names = append(names, n)
		}
		if want := migrationNames(t); !slices.Equal(names, want) {
			t.Errorf("schema_migrations = %v, want the SQLite names %v", names, want)
		}
	})

	t.Run("E2_LiveOnAShownOnB", func(t *testing.T) {
		key := a.with(t).addUser("benw")
		p := a.with(t).publish(a.rtmpURL(key))
		defer p.stop()
		liveOn(t, a, "benw", p, 30*time.Second)
		ready := time.Now()
		b.with(t).waitLive("benw", true, 3*time.Second)
		t.Logf("live on B's status API %v after A showed it", time.Since(ready).Round(time.Millisecond))
		if r := c.row(t, "benw", "a", 5*time.Second); r.Kind != "key" {
			t.Errorf("row %+v, want kind key", r)
		}
		if _, err := b.source("live/benw"); err == nil {
			t.Errorf("B's MediaMTX has a publisher for live/benw, which streams on A")
		}
		p.stop()
		c.noRow(t, "benw", 10*time.Second)
		c.offlineOnBoth(t, "benw", 5*time.Second)
	})

	t.Run("E4_KeyTakeoverMovesTheSession", func(t *testing.T) {
		key := a.with(t).addUser("carol")
		pa := a.with(t).publish(a.rtmpURL(key))
		defer pa.stop()
		ma := liveOn(t, a, "carol", pa, 30*time.Second)
		before := c.row(t, "carol", "a", 5*time.Second)

		never2 := c.neverTwo(t, "carol")
		exited := exitAt(pa)
		pb := b.with(t).publish(b.rtmpURL(key))
		defer pb.stop()
		// B's claim: the row moves to b.
		var moved time.Time
		deadline := time.Now().Add(30 * time.Second)
		for {
			rows, err := c.rows("carol")
			if err == nil && len(rows) == 1 && rows[0].Node == "b" {
				moved = time.Now()
				if rows[0].Epoch <= before.Epoch {
					t.Errorf("epoch %d after the takeover, want more than %d", rows[0].Epoch, before.Epoch)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("carol's row not moved to b within 30 s of B's publish: %+v %v\nB's publisher: %s", rows, err, pb.out)
			}
			time.Sleep(20 * time.Millisecond)
		}
		exitedWithin(t, "takeover by node b", pa, exited, moved, kickBar)
		if gone := a.with(t).gone(ma, moved, kickTimeout); gone > kickBar {
			t.Errorf("A's session of carol still in A's MediaMTX %v after B's claim, want within %v", gone, kickBar)
		}
		liveOn(t, b, "carol", pb, 10*time.Second)
		// A's unavailable hook must not take B's stream offline.
		time.Sleep(3 * time.Second)
		if r := c.row(t, "carol", "b", time.Second); r.Kind != "key" {
			t.Errorf("row %+v after the takeover, want kind key", r)
		}
		a.with(t).waitLive("carol", true, time.Second)
		pb.stillRunning(t)
		c.auditHas(t, "carol", "kick", policy.ReasonHeldElsewhere+"b")
		pb.stop()
		c.noRow(t, "carol", 10*time.Second)
		if err := never2(); err != nil {
			t.Error(err)
		}
	})

	t.Run("E5_PublicNameFirstWins", func(t *testing.T) {
		a.with(t).addUser("alice")
		if _, errOut, err := a.with(t).cli("user", "passwd", "alice", "--password", alicePassword); err != nil {
			t.Fatalf("user passwd: %v %s", err, errOut)
		}
		a.with(t).addStream("concert", "alice")
		path := "concert?user=alice&pass=" + url.QueryEscape(alicePassword)
		pa := a.with(t).publish(a.rtmpURL(path))
		defer pa.stop()
		ma := liveOn(t, a, "concert", pa, 30*time.Second)
		if r := c.row(t, "concert", "a", 5*time.Second); r.Kind != "direct" {
			t.Errorf("row %+v, want kind direct", r)
		}
		began := time.Now()
		pb := b.with(t).publish(b.rtmpURL(path))
		pb.refused(t, 15*time.Second)
		t.Logf("the second publish of concert, on B, refused after %v", time.Since(began).Round(time.Millisecond))
		if _, err := b.source("live/concert"); err == nil {
			t.Errorf("B's MediaMTX has a publisher for live/concert")
		}
		if code, err := b.authPublish("concert", "alice", alicePassword); err != nil || code < 400 {
			t.Errorf("B's auth of a second publish of concert: %d %v, want a refusal", code, err)
		}
		c.auditHas(t, "alice", "publish", policy.ReasonHeldElsewhere+"a")
		pa.stillRunning(t)
		if ok, err := a.present(ma); err != nil || !ok {
			t.Errorf("A's session of concert gone after B's refusal (present %v, %v)", ok, err)
		}
		if r := c.row(t, "concert", "a", time.Second); r.Kind != "direct" {
			t.Errorf("row %+v, want still a's, kind direct", r)
		}
		pa.stop()
		c.noRow(t, "concert", 10*time.Second)
	})

	t.Run("E7_BanOnBKicksOnA", func(t *testing.T) {
		key := a.with(t).addUser("dave")
		p := a.with(t).publish(a.rtmpURL(key))
		defer p.stop()
		m := liveOn(t, a, "dave", p, 30*time.Second)
		exited := exitAt(p)
		code, body := b.with(t).admin(http.MethodPost, "/users/dave/ban", adminToken, nil)
		banned := time.Now()
		if code != http.StatusOK {
			t.Fatalf("ban through B's admin API: %d %s", code, body)
		}
		exitedWithin(t, "ban through B's admin API", p, exited, banned, kickBar)
		if gone := a.with(t).gone(m, banned, kickTimeout); gone > kickBar {
			t.Errorf("dave's session still in A's MediaMTX %v after the ban, want within %v", gone, kickBar)
		}
		c.offlineOnBoth(t, "dave", 5*time.Second)
		a.with(t).publish(a.rtmpURL(key)).refused(t, 15*time.Second)
	})

	t.Run("KickOnBKicksOnA", func(t *testing.T) {
		key := a.with(t).addUser("fred")
		p := a.with(t).publish(a.rtmpURL(key))
		defer p.stop()
		m := liveOn(t, a, "fred", p, 30*time.Second)
		exited := exitAt(p)
		code, body := b.with(t).admin(http.MethodPost, "/users/fred/kick", adminToken, nil)
		kicked := time.Now()
		if code != http.StatusOK || !strings.Contains(string(body), `"kicked":true`) {
			t.Fatalf("kick through B's admin API: %d %s, want 200 kicked", code, body)
		}
		exitedWithin(t, "kick through B's admin API", p, exited, kicked, kickBar)
		if gone := a.with(t).gone(m, kicked, kickTimeout); gone > kickBar {
			t.Errorf("fred's session still in A's MediaMTX %v after the kick, want within %v", gone, kickBar)
		}
		c.auditHas(t, "fred", "kick", "kicked by an operator on node b")
		// A kick changes no credential: the encoder gets back on.
		p2 := a.with(t).publish(a.rtmpURL(key))
		defer p2.stop()
		liveOn(t, a, "fred", p2, 30*time.Second)
	})

	t.Run("E7_KeyRevokeByCLIKicksOnA", func(t *testing.T) {
		key := a.with(t).addUser("erin")
		p := a.with(t).publish(a.rtmpURL(key))
		defer p.stop()
		m := liveOn(t, a, "erin", p, 30*time.Second)
		exited := exitAt(p)
		// Through B's CLI environment: the CLI tells node b, and node a learns from
		// PostgreSQL alone.
		if _, errOut, err := b.with(t).cli("key", "revoke", "erin", stagedoor.Fingerprint(key)); err != nil {
			t.Fatalf("key revoke: %v %s", err, errOut)
		}
		revoked := time.Now()
		exitedWithin(t, "key revoke through the CLI", p, exited, revoked, kickBar)
		if gone := a.with(t).gone(m, revoked, kickTimeout); gone > kickBar {
			t.Errorf("erin's session still in A's MediaMTX %v after the revoke, want within %v", gone, kickBar)
		}
		c.offlineOnBoth(t, "erin", 5*time.Second)
		b.with(t).publish(b.rtmpURL(key)).refused(t, 15*time.Second)
	})

	t.Run("E13_WebhooksDeliveredOnce", func(t *testing.T) {
		// Every event queued, by the cases above (started, stopped, banned, rotated) and
		// by a burst of ten here, is delivered by one of the two dispatchers, once.
		a.with(t).addUser("ola")
		for i := range 5 {
			s := []*splitStack{a, b}[i%2]
			for _, op := range []string{"ban", "unban"} {
				if code, body := s.with(t).admin(http.MethodPost, "/users/ola/"+op, adminToken, nil); code != http.StatusOK {
					t.Fatalf("%s ola through node %s: %d %s", op, s.node, code, body)
				}
			}
		}
		type ev struct {
			id       int64
			event    string
			attempts int
			owner    string
		}
		var queued []ev
		eventually(t, 20*time.Second, "every outbox event delivered", func() error {
			rows, err := c.db.QueryContext(t.Context(), `SELECT id, event, done, attempts, COALESCE(claimed_by, '') FROM outbox ORDER BY id`)
			if err != nil {
				return err
			}
			defer rows.Close()
			queued = queued[:0]
			for rows.Next() {
				var (
					e    ev
					done int
				)
				if err := rows.Scan(&e.id, &e.event, &done, &e.attempts, &e.owner); err != nil {
					return err
				}
				if done != 1 {
					return fmt.Errorf("event %d (%s) not delivered yet", e.id, e.event)
				}
				queued = append(queued, e)
			}
			return rows.Err()
		})
		time.Sleep(2 * time.Second) // a second delivery, if any, has time to arrive
		got := c.hook.byID()
		owners := map[string]int{}
		for _, e := range queued {
			owners[e.owner]++
			if n := got[e.id]; n != 1 || e.attempts != 1 {
				t.Errorf("event %d (%s): delivered %d times in %d attempts, want once", e.id, e.event, n, e.attempts)
			}
			delete(got, e.id)
		}
		if len(got) > 0 {
			t.Errorf("deliveries of events not in the outbox: %v", got)
		}
		if len(queued) < 10 {
			t.Errorf("only %d events queued, want at least the burst's 10", len(queued))
		}
		if bad := c.hook.badlySigned(); bad > 0 {
			t.Errorf("%d deliveries badly signed", bad)
		}
		t.Logf("%d events, delivered once each; dispatchers: %v", len(queued), owners)
	})
	t.Logf("TestCluster took %v", time.Since(began).Round(time.Millisecond))
}

// TestClusterNodeDeath is cluster.md §9 E10: node a's serve and MediaMTX are SIGKILLed
// while a key stream and a password stream are live on it. Before its lease runs out B
// refuses the password stream's name and lets the key in; after it, the sweep frees both names, the webhook
// receiver gets exactly one stream.stopped for each (two dispatchers, one database), and
// both publish on B.
func TestClusterNodeDeath(t *testing.T) {
	// A lease of 8 s: B's answers below must come inside it, counted from a's last
	// renewal (up to 500 ms before the kill), on a machine that may be busy.
	c := startCluster(t, clusterOptions{leaseTTL: 8 * time.Second})
	a, b := c.a, c.b
	key := a.addUser("frank")
	a.addUser("alice")
	if _, errOut, err := a.cli("user", "passwd", "alice", "--password", alicePassword); err != nil {
		t.Fatalf("user passwd: %v %s", err, errOut)
	}
	a.addStream("concert", "alice")
	concertPath := "concert?user=alice&pass=" + url.QueryEscape(alicePassword)
	pf := a.publish(a.rtmpURL(key))
	pc := a.publish(a.rtmpURL(concertPath))
	liveOn(t, a, "frank", pf, 30*time.Second)
	liveOn(t, a, "concert", pc, 30*time.Second)
	for _, ch := range []string{"frank", "concert"} {
		eventually(t, 10*time.Second, "stream.started of "+ch, func() error {
			if n, _ := c.hook.count("stream.started", ch); n != 1 {
				return fmt.Errorf("%d deliveries", n)
			}
			return nil
		})
	}

	for _, ch := range []string{"frank", "concert"} {
		b.peerAlias(t, ch, a, 10*time.Second)
	}
	a.killServe(syscall.SIGKILL)
	a.killMediaMTX()
	killed := time.Now()

	t.Run("NameHeldUntilLeaseExpires", func(t *testing.T) {
		code, err := b.authPublish("concert", "alice", alicePassword)
		asked := time.Since(killed)
		if asked >= c.leaseTTL-time.Second {
			t.Fatalf("B answered only %v after the kill, past a's lease: nothing to check", asked)
		}
		if err != nil || code < 400 {
			t.Errorf("B's auth of concert %v after a died, inside its lease: %d %v, want a refusal", asked.Round(time.Millisecond), code, err)
		}
		// A stream key is newest wins across nodes: its encoder reconnecting through B
		// is let in at once, lease or not.
		code, _, err = b.authDirect(key)
		if asked := time.Since(killed); asked >= c.leaseTTL-time.Second {
			t.Fatalf("B answered only %v after the kill, past a's lease: nothing to check", asked)
		}
		if err != nil || code != http.StatusNoContent {
			t.Errorf("B's auth of frank's key inside a's lease: %d %v, want 204", code, err)
		}
		b.with(t).waitLive("concert", true, time.Second)
	})
	t.Run("SweptAfterLease", func(t *testing.T) {
		for _, ch := range []string{"frank", "concert"} {
			c.noRow(t, ch, 20*time.Second)
			b.with(t).waitLive(ch, false, 5*time.Second)
			// B serves the names from a no more: its peer aliases went with the rows.
			b.noPathConf(t, ch, killed, 25*time.Second)
		}
		t.Logf("names freed %v after the kill (lease TTL %v, sweep every 2 s)", time.Since(killed).Round(time.Millisecond), c.leaseTTL)
	})
	t.Run("OneStreamStoppedEach", func(t *testing.T) {
		for _, ch := range []string{"frank", "concert"} {
			eventually(t, 15*time.Second, "stream.stopped of "+ch, func() error {
				if n, _ := c.hook.count("stream.stopped", ch); n == 0 {
					return errors.New("none yet")
				}
				return nil
			})
		}
		time.Sleep(3 * time.Second) // another sweep round and dispatch: a duplicate would come now
		for _, ch := range []string{"frank", "concert"} {
			if n, ids := c.hook.count("stream.stopped", ch); n != 1 || ids != 1 {
				t.Errorf("stream.stopped of %s: %d deliveries of %d events, want exactly one", ch, n, ids)
			}
		}
	})
	t.Run("PublishOnBAfterExpiry", func(t *testing.T) {
		pc := b.with(t).publish(b.rtmpURL(concertPath))
		defer pc.stop()
		liveOn(t, b, "concert", pc, 30*time.Second)
		c.row(t, "concert", "b", 5*time.Second)
		pf := b.with(t).publish(b.rtmpURL(key))
		defer pf.stop()
		liveOn(t, b, "frank", pf, 30*time.Second)
		c.row(t, "frank", "b", 5*time.Second)
		if err := playHLS(t, b.hlsURL("concert"), 20*time.Second); err != nil {
			t.Errorf("concert on B: %v", err)
		}
	})
}

// TestClusterPostgresRestart is cluster.md §9 E11: PostgreSQL restarts (pg_ctl restart
// -m fast) while a stream is live on each node with a viewer each. Both keep playing,
// both nodes are healthy again, a new publish goes live, and a ban through node b then
// kicks a stream on node a within the 2 s target (the notification listener
// reconnected). Then PostgreSQL is stopped a while: both nodes refuse publishes, the
// live stream keeps playing, and after the start a publish goes live again. Not
// parallel: the restart closes every test's connections.
func TestClusterPostgresRestart(t *testing.T) {
	c := startCluster(t, clusterOptions{})
	a, b := c.a, c.b
	gKey, hKey, iKey := a.addUser("george"), a.addUser("hank"), a.addUser("ivan")
	pg := a.publish(a.rtmpURL(gKey))
	ph := b.publish(b.rtmpURL(hKey))
	mg := liveOn(t, a, "george", pg, 30*time.Second)
	liveOn(t, b, "hank", ph, 30*time.Second)
	wa := watchHLS(t, a.hlsURL("george"))
	wb := watchHLS(t, b.hlsURL("hank"))

	began := time.Now()
	pgtest.Restart(t)
	restarted := time.Now()
	t.Logf("PostgreSQL restarted in %v", restarted.Sub(began).Round(time.Millisecond))
	// Both nodes' health, polled from now on while the streams are watched.
	healthy := make(chan time.Duration, 1)
	go func() {
		defer close(healthy)
		for ctx := t.Context(); ctx.Err() == nil; time.Sleep(100 * time.Millisecond) {
			if healthz(a) == http.StatusOK && healthz(b) == http.StatusOK {
				healthy <- time.Since(restarted)
				return
			}
		}
	}()

	t.Run("StreamsKeepPlaying", func(t *testing.T) {
		wa.keepsPlaying(t, 6*time.Second)
		wb.keepsPlaying(t, time.Second)
		pg.stillRunning(t)
		ph.stillRunning(t)
	})
	t.Run("HealthyAgain", func(t *testing.T) {
		select {
		case took := <-healthy:
			t.Logf("both nodes healthy %v after the restart", took.Round(time.Millisecond))
		case <-time.After(15 * time.Second):
			t.Fatalf("nodes not both healthy 15 s after the restart: a %d, b %d", healthz(a), healthz(b))
		}
		c.row(t, "george", "a", 10*time.Second)
		c.row(t, "hank", "b", 10*time.Second)
		// Each node's notification listener is back: one LISTEN session per node.
		eventually(t, 10*time.Second, "a LISTEN session per node", func() error {
			var n int
			if err := c.db.QueryRowContext(t.Context(), `SELECT count(*) FROM pg_stat_activity
				WHERE query LIKE '%LISTEN%stagedoor_%' AND backend_start > $1 AND pid <> pg_backend_pid()`, restarted.Add(-time.Second)).Scan(&n); err != nil {
				return err
			}
			if n != 2 {
				return fmt.Errorf("%d listening sessions started since the restart, want 2", n)
			}
			return nil
		})
	})
	t.Run("PublishAfterRestart", func(t *testing.T) {
		p := b.with(t).publish(b.rtmpURL(iKey))
		defer p.stop()
		liveOn(t, b, "ivan", p, 30*time.Second)
		a.with(t).waitLive("ivan", true, 5*time.Second)
	})
	t.Run("BanKicksAfterRestart", func(t *testing.T) {
		exited := exitAt(pg)
		code, body := b.with(t).admin(http.MethodPost, "/users/george/ban", adminToken, nil)
		banned := time.Now()
		if code != http.StatusOK {
			t.Fatalf("ban through B's admin API: %d %s", code, body)
		}
		exitedWithin(t, "ban through B after the restart", pg, exited, banned, kickBar)
		if gone := a.with(t).gone(mg, banned, kickTimeout); gone > kickBar {
			t.Errorf("george's session still in A's MediaMTX %v after the ban, want within %v", gone, kickBar)
		}
		c.offlineOnBoth(t, "george", 5*time.Second)
		wb.keepsPlaying(t, time.Second)
	})

	// Then PostgreSQL stays down a while: publishes are refused on both nodes (fail
	// closed), the stream already live keeps playing, and all is back once it returns.
	jKey := a.addUser("jack")
	for _, s := range []*splitStack{a, b} { // cached now: a refusal below is the health gate's
		if code, _, err := s.authDirect(jKey); err != nil || code != http.StatusNoContent {
			t.Fatalf("node %s: auth of jack's key before the outage: %d %v", s.node, code, err)
		}
	}
	var down time.Time
	pgtest.Outage(t, func() {
		down = time.Now()
		t.Run("PublishRefusedWhileDown", func(t *testing.T) {
			for _, s := range []*splitStack{a, b} {
				eventually(t, 15*time.Second, "node "+s.node+" refuses publishes", func() error {
					if code, _, err := s.authDirect(jKey); err == nil && code == http.StatusNoContent {
						return fmt.Errorf("auth %d", code)
					}
					return nil
				})
			}
			t.Logf("both nodes refuse publishes %v after PostgreSQL stopped", time.Since(down).Round(time.Millisecond))
			for _, s := range []*splitStack{a, b} {
				if code := healthz(s); code == http.StatusOK {
					t.Errorf("node %s: /healthz 200 with PostgreSQL down", s.node)
				}
			}
			wb.keepsPlaying(t, 2*time.Second)
			ph.stillRunning(t)
		})
	})
	up := time.Now()
	t.Run("BackAfterOutage", func(t *testing.T) {
		for _, s := range []*splitStack{a, b} {
			eventually(t, 15*time.Second, "node "+s.node+" healthy", func() error {
				if code := healthz(s); code != http.StatusOK {
					return fmt.Errorf("healthz %d", code)
				}
				return nil
			})
		}
		t.Logf("both nodes healthy %v after PostgreSQL started again", time.Since(up).Round(time.Millisecond))
		p := a.with(t).publish(a.rtmpURL(jKey))
		defer p.stop()
		liveOn(t, a, "jack", p, 30*time.Second)
		b.with(t).waitLive("jack", true, 5*time.Second)
		c.row(t, "hank", "b", 10*time.Second)
		wb.keepsPlaying(t, time.Second)
	})
}

// sample runs check every interval until the returned function is called (or the test
// ends), which reports the first error check returned.
func sample(t testing.TB, every time.Duration, check func() error) func() error {
	stop, done := make(chan struct{}), make(chan struct{})
	var (
		once  sync.Once
		first error // set by the sampler; read once done is closed
	)
	end := func() error {
		once.Do(func() { close(stop) })
		<-done
		return first
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
			if err := check(); err != nil && first == nil {
				first = fmt.Errorf("at %s: %w", time.Now().Format("15:04:05.000"), err)
			}
		}
	}()
	t.Cleanup(func() { _ = end() })
	return end
}

// neverTwo counts the live rows of user's names every 50 ms until the returned function
// is called, which reports a moment with more than one.
func (c *cluster) neverTwo(t testing.TB, user string) func() error {
	return sample(t, 50*time.Millisecond, func() error {
		var n int
		if err := c.db.QueryRowContext(context.Background(), `SELECT count(*) FROM live_state l
			JOIN users u ON u.id = l.user_id WHERE u.name = $1`, user).Scan(&n); err == nil && n > 1 {
			return fmt.Errorf("%d live rows of %s at once", n, user)
		}
		return nil
	})
}

// sampleRow checks the rows of name every 100 ms until the returned function is called,
// which reports any moment the name was not held by node alone.
func (c *cluster) sampleRow(t testing.TB, name, node string) func() error {
	return sample(t, 100*time.Millisecond, func() error {
		rows, err := c.rows(name)
		if err == nil && (len(rows) != 1 || rows[0].Node != node) {
			return fmt.Errorf("the rows of %s were %+v, want one held by node %s", name, rows, node)
		}
		return nil
	})
}

// TestClusterServeRestart is cluster.md §9 E9: node a's serve alone is SIGKILLed while a
// stream is live there, published over RTSP (MediaMTX keeps it; an RTMP publisher would
// be cut with the front, which is part of serve). Restarted within the lease, nothing changes:
// the row stays a's throughout and no stream.stopped is sent. Killed again and restarted
// only after the lease ran out: node b's sweep frees the name with one stream.stopped,
// and the restarted serve claims it back from its MediaMTX; the stream and its viewer on
// a never stop.
func TestClusterServeRestart(t *testing.T) {
	c := startCluster(t, clusterOptions{leaseTTL: 8 * time.Second}) // the restart must fit in it
	a, b := c.a, c.b
	key := a.addUser("mona")
	// Over RTSP, the key as the password of the public name: straight to MediaMTX. An
	// RTMP publisher goes through the front, which lives in serve and dies with it.
	p := a.publishWith("rtsp", a.rtspURL("mona", key, "mona"))
	liveOn(t, a, "mona", p, 30*time.Second)
	eventually(t, 10*time.Second, "stream.started of mona", func() error {
		if n, _ := c.hook.count("stream.started", "mona"); n != 1 {
			return fmt.Errorf("%d deliveries", n)
		}
		return nil
	})
	w := watchHLS(t, a.hlsURL("mona"))

	held := c.sampleRow(t, "mona", "a")
	a.killServe(syscall.SIGKILL)
	killed := time.Now()
	a.startServe()
	back := time.Since(killed)
	t.Run("E9_RestartWithinLease", func(t *testing.T) {
		if back >= c.leaseTTL-time.Second {
			t.Fatalf("serve took %v to restart, past its %v lease: nothing to check", back, c.leaseTTL)
		}
		t.Logf("serve back %v after the kill", back.Round(time.Millisecond))
		w.keepsPlaying(t, c.leaseTTL)
		p.stillRunning(t)
		if err := held(); err != nil {
			t.Error(err)
		}
		if n, _ := c.hook.count("stream.stopped", "mona"); n != 0 {
			t.Errorf("%d stream.stopped of mona for a restart within the lease, want none", n)
		}
		b.with(t).waitLive("mona", true, time.Second)
	})

	a.killServe(syscall.SIGKILL)
	killed = time.Now()
	c.noRow(t, "mona", 20*time.Second)
	swept := time.Now()
	t.Run("E9_SweptAfterLease", func(t *testing.T) {
		t.Logf("mona freed %v after serve was killed (lease TTL %v, sweep every 2 s)", swept.Sub(killed).Round(time.Millisecond), c.leaseTTL)
		if swept.Sub(killed) < c.leaseTTL-time.Second {
			t.Errorf("mona freed %v after the kill, before a's lease (%v) can have run out", swept.Sub(killed), c.leaseTTL)
		}
		b.with(t).waitLive("mona", false, 5*time.Second)
		eventually(t, 15*time.Second, "stream.stopped of mona", func() error {
			if n, _ := c.hook.count("stream.stopped", "mona"); n != 1 {
				return fmt.Errorf("%d deliveries", n)
			}
			return nil
		})
		w.keepsPlaying(t, time.Second)
		p.stillRunning(t)
	})

	a.startServe()
	restarted := time.Now()
	t.Run("E9_ClaimedBackAfterRestart", func(t *testing.T) {
		c.row(t, "mona", "a", 15*time.Second)
		t.Logf("mona claimed back %v after serve's restart (reconcile interval 2 s)", time.Since(restarted).Round(time.Millisecond))
		b.with(t).waitLive("mona", true, 5*time.Second)
		w.keepsPlaying(t, 2*time.Second)
		p.stillRunning(t)
		if n, _ := c.hook.count("stream.stopped", "mona"); n != 1 {
			t.Errorf("%d stream.stopped of mona, want the one of the sweep", n)
		}
	})
}

// TestClusterFirstWins is cluster.md §9 E4' and E6, with --cluster-key-takeover=false on
// both nodes: a stream key's second publish, on the other node, is refused and the first
// untouched; and a password stream published on a and b at the same moment, five
// rounds, ends with exactly one holder each time, the loser gone within the kick target.
func TestClusterFirstWins(t *testing.T) {
	c := startCluster(t, clusterOptions{args: []string{"--cluster-key-takeover=false"}})
	a, b := c.a, c.b

	t.Run("E4p_KeyRefusedOnB", func(t *testing.T) {
		key := a.with(t).addUser("nora")
		pa := a.with(t).publish(a.rtmpURL(key))
		defer pa.stop()
		ma := liveOn(t, a, "nora", pa, 30*time.Second)
		before := c.row(t, "nora", "a", 5*time.Second)
		pb := b.with(t).publish(b.rtmpURL(key))
		pb.refused(t, 15*time.Second)
		if _, err := b.source("live/nora"); err == nil {
			t.Errorf("B's MediaMTX has a publisher for live/nora")
		}
		c.auditHas(t, "nora", "publish", policy.ReasonHeldElsewhere+"a")
		pa.stillRunning(t)
		if ok, err := a.present(ma); err != nil || !ok {
			t.Errorf("A's session of nora gone after B's refusal (present %v, %v)", ok, err)
		}
		if r := c.row(t, "nora", "a", time.Second); r.Kind != before.Kind {
			t.Errorf("row %+v after B's refusal, want still %+v", r, before)
		}
	})

	t.Run("E6_SimultaneousPublishOneWinner", func(t *testing.T) {
		a.with(t).addUser("alice")
		if _, errOut, err := a.with(t).cli("user", "passwd", "alice", "--password", alicePassword); err != nil {
			t.Fatalf("user passwd: %v %s", err, errOut)
		}
		a.with(t).addStream("concert", "alice")
		path := "concert?user=alice&pass=" + url.QueryEscape(alicePassword)
		wins := map[string]int{}
		for round := range 5 {
			nodes := map[string]*splitStack{"a": a, "b": b}
			// The node whose encoder starts first, by a few milliseconds, alternates.
			first, second := "a", "b"
			if round%2 == 1 {
				first, second = second, first
			}
			pubs := map[string]*publisher{}
			pubs[first] = nodes[first].with(t).publish(nodes[first].rtmpURL(path))
			pubs[second] = nodes[second].with(t).publish(nodes[second].rtmpURL(path))
			var winner string
			eventually(t, 30*time.Second, fmt.Sprintf("round %d: a holder of concert", round), func() error {
				rows, err := c.rows("concert")
				if err != nil || len(rows) != 1 {
					return fmt.Errorf("rows %+v %v", rows, err)
				}
				winner = rows[0].Node
				return nil
			})
			claimed := time.Now()
			loser := map[string]string{"a": "b", "b": "a"}[winner]
			held := c.sampleRow(t, "concert", winner)
			select {
			case <-pubs[loser].exited:
			case <-time.After(time.Until(claimed.Add(kickBar))):
				t.Errorf("round %d: node %s won, but node %s's publisher still streams %v after the claim", round, winner, loser, kickBar)
			}
			if _, err := nodes[loser].source("live/concert"); err == nil {
				t.Errorf("round %d: node %s won, but node %s's MediaMTX still has live/concert ready %v after the claim", round, winner, loser, time.Since(claimed).Round(time.Millisecond))
			}
			time.Sleep(time.Second) // the loser's unavailable hook, if any, has run
			if err := held(); err != nil {
				t.Errorf("round %d: %v", round, err)
			}
			pubs[winner].stillRunning(t)
			wins[winner]++
			pubs[winner].stop()
			pubs[loser].stop()
			c.noRow(t, "concert", 10*time.Second)
		}
		t.Logf("winners over 5 rounds: %v", wins)
	})
}
