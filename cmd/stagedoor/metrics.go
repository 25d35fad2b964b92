package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/audit"
	"github.com/stagedoor/stagedoor/policy"
)

// metrics are Stagedoor's Prometheus metrics, served on the internal listener at
// /metrics. Labels never carry a path, key or user name.
type metrics struct {
	reg        *prometheus.Registry
	decisions  *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	kicks      *prometheus.CounterVec
	deliveries *prometheus.CounterVec
}

func newMetrics(db interface {
	LiveStates(ctx context.Context) ([]stagedoor.LiveState, error)
}, pw *policy.Passwords, rec *audit.Recorder) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stagedoor_auth_decisions_total",
		Help: "Auth decisions answered to MediaMTX, by action, protocol, result (allow/deny) and path kind.",
	}, []string{"action", "protocol", "result", "path_kind"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "stagedoor_auth_decision_seconds",
		Help:    "Time from receiving an auth request to the decision, by action.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2},
	}, []string{"action"})
	m.kicks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stagedoor_kicks_total",
		Help: "Publishers kicked through the MediaMTX API, by reason.",
	}, []string{"reason"})
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stagedoor_webhook_deliveries_total",
		Help: "Webhook delivery attempts, by event and result (ok/failed).",
	}, []string{"event", "result"})
	m.reg.MustRegister(m.decisions, m.latency, m.kicks, m.deliveries,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stagedoor_bcrypt_runs_total", Help: "bcrypt verifications run.",
		}, func() float64 { return float64(pw.BcryptRuns()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stagedoor_password_cache_hits_total", Help: "Password verifications answered from the cache.",
		}, func() float64 { return float64(pw.CacheHits()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "stagedoor_audit_dropped_total", Help: "Audit entries lost to a full queue or a failed write.",
		}, func() float64 { return float64(rec.Dropped()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stagedoor_live_channels", Help: "Public names live now.",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			ls, err := db.LiveStates(ctx)
			if err != nil {
				return -1
			}
			return float64(len(ls))
		}),
	)
	return m
}

func (m *metrics) decision(a policy.Attempt, v policy.Verdict, took time.Duration) {
	result := "deny"
	if v.Allow {
		result = "allow"
	}
	action, protocol := label(a.Action, knownActions), label(a.Protocol, knownProtocols)
	m.decisions.WithLabelValues(action, protocol, result, v.PathKind).Inc()
	m.latency.WithLabelValues(action).Observe(took.Seconds())
}

var (
	knownActions   = []string{"publish", "read", "playback", "api", "metrics", "pprof", ""}
	knownProtocols = []string{"rtsp", "rtmp", "hls", "webrtc", "srt", "moq", ""}
)

// label keeps attacker-chosen values out of label sets (unbounded cardinality).
func label(v string, known []string) string {
	for _, k := range known {
		if v == k {
			return v
		}
	}
	return "other"
}
