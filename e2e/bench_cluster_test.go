package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
)

// BenchmarkCluster measures issue 14's targets on two nodes (a MediaMTX with `stagedoor
// serve` beside it, each) and one PostgreSQL, the way clients see them:
//   - Auth: MediaMTX's cached auth calls on node a (a separate client process, a new
//     connection per call, one at a time), against the bare gin handler; and PostgreSQL's
//     committed transactions while they run, net of the two idle nodes' own (health probes,
//     policy polls, reconciles), per 1000 calls: a cached decision makes no database call.
//   - BanKick: a ban through node b's admin API → the publisher on node a disconnected.
//   - FirstViewer: the first viewer of a fresh live name on the node that holds it against
//     the first on the other node, which pulls it through a peer alias.
func BenchmarkCluster(b *testing.B) {
	c := startCluster(b, clusterOptions{})
	a, bn := c.a, c.b
	src := benchSource(b, a.ffmpeg)

	b.Run("Auth", func(b *testing.B) {
		for b.Loop() {
			benchClusterAuth(b, c)
		}
	})
	b.Run("BanKick", func(b *testing.B) {
		for b.Loop() {
			var took []time.Duration
			for i := range benchRounds {
				name := fmt.Sprintf("ban%d", i)
				key := a.addUser(name)
				p := a.publishCopy(src, a.rtmpURL(key))
				a.with(b).waitLive(name, true, 20*time.Second)
				bn.with(b).waitLive(name, true, 10*time.Second)
				start := time.Now()
				if code, body := bn.with(b).admin(http.MethodPost, "/users/"+name+"/ban", adminToken, nil); code != http.StatusOK {
					b.Fatalf("ban through b: %d %s", code, body)
				}
				p.kicked(b, 10*time.Second)
				took = append(took, time.Since(start))
			}
			b.ReportMetric(median(took).Seconds(), "s_ban_to_kick")
			b.ReportMetric(slices.Max(took).Seconds(), "s_max")
		}
	})
	b.Run("FirstViewer", func(b *testing.B) {
		for b.Loop() {
			var holder, peer []time.Duration
			for i := range benchRounds {
				name := fmt.Sprintf("view%d", i)
				key := a.addUser(name)
				p := a.publishCopy(src, a.rtmpURL(key))
				a.with(b).waitLive(name, true, 20*time.Second)
				eventually(b, 10*time.Second, "peer alias on b", func() error {
					if !hasPathConfig(bn.stack, "live/"+name) {
						return fmt.Errorf("no live/%s on b", name)
					}
					return nil
				})
				first := func(s *splitStack) time.Duration {
					start := time.Now()
					if err := playHLS(b, s.hlsURL(name), 30*time.Second); err != nil {
						b.Fatalf("first viewer of %s on %s: %v", name, s.node, err)
					}
					return time.Since(start)
				}
				// Alternate which node is asked first: neither warms the other's muxer, but
				// the machine's load moves.
				if i%2 == 0 {
					holder = append(holder, first(a))
					peer = append(peer, first(bn))
				} else {
					peer = append(peer, first(bn))
					holder = append(holder, first(a))
				}
				p.stop()
			}
			h, pr := median(holder), median(peer)
			b.ReportMetric(h.Seconds(), "s_holder")
			b.ReportMetric(pr.Seconds(), "s_other_node")
			b.ReportMetric((pr - h).Seconds(), "s_extra")
		}
	})
}

// hasPathConfig reports whether MediaMTX of s has a configuration entry name.
func hasPathConfig(s *stack, name string) bool {
	var v struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
	}
	if code, err := s.mtxGet("/v3/config/paths/list", &v); err != nil || code != http.StatusOK {
		return false
	}
	for _, it := range v.Items {
		if it.Name == name {
			return true
		}
	}
	return false
}

// benchClusterAuth is the Auth part of BenchmarkCluster: rounds of each case in turn.
func benchClusterAuth(b *testing.B, c *cluster) {
	a := c.a
	key := a.addUser("auth")
	bare := startBareHandler(b)
	ours := a.url(a.internal, "/mediamtx/auth")
	body := authBody
	type authCase struct {
		name, url string
		body      []byte
		want      int
		lat       []time.Duration
		calls     int
		xacts     int64
		took      time.Duration
	}
	cases := []*authCase{
		{name: "Baseline", url: bare, body: body("publish", "live/"+key, "rtmp"), want: http.StatusNoContent},
		{name: "ValidKeyPublish", url: ours, body: body("publish", "live/"+key, "rtmp"), want: http.StatusNoContent},
		{name: "WrongKeyPublish", url: ours, body: body("publish", "live/"+stagedoor.NewKey(), "rtmp"), want: http.StatusUnauthorized},
		{name: "PublicRead", url: ours, body: body("read", "live/auth", "hls"), want: http.StatusNoContent},
	}
	client := authClient()
	call := func(cs *authCase) {
		cs.lat = append(cs.lat, timedAuth(b, client, cs.name, cs.url, cs.body, cs.want))
		cs.calls++
	}
	// Warm every cache once: the first call of a key looks it up.
	for _, cs := range cases {
		call(cs)
	}
	idle := &authCase{name: "Idle"}
	const roundDur = 2 * time.Second
	for range processRounds {
		for _, cs := range append([]*authCase{idle}, cases...) {
			before := c.xactCommits(b)
			start := time.Now()
			for time.Since(start) < roundDur {
				if cs == idle {
					time.Sleep(roundDur)
					break
				}
				call(cs)
			}
			// PostgreSQL's backends report their counters when idle, at most once a
			// second: wait for the last of this round's before reading.
			time.Sleep(1100 * time.Millisecond)
			cs.took += time.Since(start)
			cs.xacts += c.xactCommits(b) - before
		}
	}
	idleRate := float64(idle.xacts) / idle.took.Seconds()
	for _, cs := range cases {
		b.Run(cs.name, func(b *testing.B) {
			reportLatencies(b, cs.lat)
			b.ReportMetric(float64(cs.calls)/float64(processRounds)/roundDur.Seconds(), "req/s")
			if cs.url != bare {
				net := float64(cs.xacts) - idleRate*cs.took.Seconds()
				b.ReportMetric(max(net, 0)*1000/float64(cs.calls), "db_xacts_per_1k_calls")
			}
			b.ReportMetric(idleRate, "db_xacts_per_s_idle")
		})
	}
}

// xactCommits is PostgreSQL's count of committed transactions in the cluster's database
// (every node's and this test's).
func (c *cluster) xactCommits(tb testing.TB) int64 {
	tb.Helper()
	var n int64
	if err := c.db.QueryRowContext(tb.Context(), `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
		tb.Fatalf("xact_commit: %v", err)
	}
	return n
}
