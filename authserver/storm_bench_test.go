package authserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/policy"
)

// BenchmarkReconnectStorm is P2 of `make bench`: an encoder reconnecting 1,000 times with
// the same valid password (at most one bcrypt per cache TTL), and 10,000 wrong keys from
// one address (no bcrypt at all). Run with -benchtime 1x: each iteration is the whole storm.
func BenchmarkReconnectStorm(b *testing.B) {
	gin.SetMode(gin.ReleaseMode) // gin's debug warning would split the result lines
	ctx := context.Background()
	db, key := benchStore(b)
	hash, err := stagedoor.HashPassword("correct horse battery", stagedoor.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	if err := db.SetPasswordHash(ctx, "benw", hash); err != nil {
		b.Fatal(err)
	}
	if _, err := db.CreateStream(ctx, "concert", "benw", true); err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	body := func(path, user, pass string) []byte {
		out, _ := json.Marshal(map[string]any{"user": user, "password": pass, "token": pass, "ip": "198.51.100.7",
			"action": "publish", "path": path, "protocol": "rtmp", "id": nil, "query": ""})
		return out
	}
	for _, c := range []struct {
		name  string
		n     int
		allow bool
		body  func() []byte
	}{
		{"SamePassword1000", 1000, true, func() []byte { return body("live/concert", "benw", "correct horse battery") }},
		{"WrongKeys10000", 10000, false, func() []byte { return body("live/"+stagedoor.NewKey(), "", "") }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				pw := policy.NewPasswords()
				pol := &policy.Policy{Credentials: policy.NewCachedCredentials(db), Passwords: pw}
				srv := httptest.NewServer(authserver.NewHandler(quiet, pol, authserver.Options{}))
				client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
				lat := &latencies{}
				start := time.Now()
				for range c.n {
					t0 := time.Now()
					res, err := client.Post(srv.URL+"/mediamtx/auth", "application/json", bytes.NewReader(c.body()))
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if (res.StatusCode/100 == 2) != c.allow {
						b.Fatalf("status %d, want allow=%v", res.StatusCode, c.allow)
					}
					lat.add(time.Since(t0))
				}
				elapsed := time.Since(start)
				srv.Close()
				lat.reportN(b, c.n, elapsed)
				b.ReportMetric(float64(pw.BcryptRuns()), "bcrypt_runs")
			}
		})
	}
	_ = key
}
