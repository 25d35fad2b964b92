package policy_test

import (
	"context"
	"testing"

	"github.com/stagedoor/stagedoor/internal/testdb"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/policy"
)

// BenchmarkDecide measures the pure decision on a real SQLite store.
func BenchmarkDecide(b *testing.B) {
	db := testdb.MustOpen(b)
	nu, err := db.CreateUser(b.Context(), "benw")
	if err != nil {
		b.Fatal(err)
	}
	key := nu.StreamKey
	pol := &policy.Policy{Credentials: db}
	for _, c := range []struct {
		name string
		req  policy.Attempt
	}{
		{"ValidKeyPublish", policy.Attempt{Action: "publish", Protocol: "rtmp", Path: "live/" + key, IP: "203.0.113.7"}},
		{"WrongKeyPublish", policy.Attempt{Action: "publish", Protocol: "rtmp", Path: "live/" + stagedoor.NewKey(), IP: "203.0.113.7"}},
		{"PublicRead", policy.Attempt{Action: "read", Protocol: "hls", Path: "live/benw", IP: "203.0.113.7"}},
		{"KeyPathRead", policy.Attempt{Action: "read", Protocol: "hls", Path: "live/" + key, IP: "203.0.113.7"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				pol.Decide(ctx, c.req)
			}
		})
	}
}
