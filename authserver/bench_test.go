package authserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/gin-gonic/gin"

	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/policy"
	"github.com/stagedoor/stagedoor/store"
)

// benchStore opens a real SQLite database with one user, as the service would.
func benchStore(b *testing.B) (*store.DB, string) {
	b.Helper()
	db, err := store.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	nu, err := db.CreateUser(context.Background(), "benw")
	if err != nil {
		b.Fatal(err)
	}
	return db, nu.StreamKey
}

func benchBody(action, path, protocol string) []byte {
	body, _ := json.Marshal(map[string]any{
		"user": "", "password": "", "token": "", "ip": "203.0.113.7", "action": action, "path": path,
		"protocol": protocol, "id": "8a7f9e1c-6f2b-4d0e-9b7a-1c2d3e4f5a6b", "query": "",
		"userAgent": "FMLE/3.0 (compatible; Lavf59.27.100)",
	})
	return body
}

// BenchmarkAuthHTTP calls /mediamtx/auth exactly as MediaMTX does: a JSON POST on a new
// TCP connection each time. Baseline: a bare gin handler answering 204 to the same
// request, driven the same way. Serial = one caller (MediaMTX calls auth serially);
// Parallel = 8 callers (several MediaMTX nodes).
func BenchmarkAuthHTTP(b *testing.B) {
	db, key := benchStore(b)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	gin.SetMode(gin.ReleaseMode)
	bare := gin.New()
	bare.POST("/mediamtx/auth", func(c *gin.Context) {
		_, _ = io.Copy(io.Discard, c.Request.Body)
		c.Status(http.StatusNoContent)
	})
	// As the service runs it: lookups cached until the policy generation changes.
	ours := authserver.NewHandler(quiet, &policy.Policy{Credentials: policy.NewCachedCredentials(db)}, authserver.Options{})
	uncached := authserver.NewHandler(quiet, &policy.Policy{Credentials: db}, authserver.Options{})
	cases := []struct {
		name    string
		handler http.Handler
		body    []byte
	}{
		{"Baseline", bare, benchBody("publish", "live/"+key, "rtmp")},
		{"ValidKeyPublish", ours, benchBody("publish", "live/"+key, "rtmp")},
		{"ValidKeyPublishNoCache", uncached, benchBody("publish", "live/"+key, "rtmp")},
		{"WrongKeyPublish", ours, benchBody("publish", "live/"+stagedoor.NewKey(), "rtmp")},
		{"PublicRead", ours, benchBody("read", "live/benw", "hls")},
		{"KeyPathRead", ours, benchBody("read", "live/"+key, "hls")},
	}
	for _, mode := range []string{"Serial", "Parallel8"} {
		for _, c := range cases {
			b.Run(mode+"/"+c.name, func(b *testing.B) {
				srv := httptest.NewServer(c.handler)
				defer srv.Close()
				client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
				lat := &latencies{}
				call := func() {
					start := time.Now()
					res, err := client.Post(srv.URL+"/mediamtx/auth", "application/json", bytes.NewReader(c.body))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					lat.add(time.Since(start))
				}
				if mode == "Serial" {
					for b.Loop() {
						call()
					}
				} else {
					b.SetParallelism(4) // 4 x GOMAXPROCS(2) = 8 callers on the 2-core bench machine
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							call()
						}
					})
				}
				lat.report(b)
			})
		}
	}
}

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B) { l.reportN(b, b.N, b.Elapsed()) }

// reportN reports p50, p99 and the rate of n calls made in elapsed.
func (l *latencies) reportN(b *testing.B, n int, elapsed time.Duration) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	pct := func(p float64) float64 { return float64(l.d[int(p*float64(len(l.d)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50_us")
	b.ReportMetric(pct(0.99), "p99_us")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "req/s")
}
