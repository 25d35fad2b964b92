package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stagedoor/stagedoor/adminapi"
	"github.com/stagedoor/stagedoor/audit"
	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/mediamtx"
	"github.com/stagedoor/stagedoor/plugin"
	"github.com/stagedoor/stagedoor/rtmpfront"
	"github.com/stagedoor/stagedoor/store"
	"github.com/stagedoor/stagedoor/web"
	"github.com/stagedoor/stagedoor/webhook"
)

func cmdServe(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg serviceConfig
	cfg.register(fs, getenv, "") // with your own MediaMTX, the front is opt-in
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError(fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	if getenv(plugin.EnvHookSecret) == "" {
		return usageError("serve: set " + plugin.EnvHookSecret + " (the same value in MediaMTX's environment, for its hooks)")
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	sec, err := loadSecrets(getenv)
	if err != nil {
		return err
	}
	svc, err := startService(ctx, cfg, sec, logger)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return svc.close()
}

// service is the running Stagedoor: database, both listeners and the reconciler.
type service struct {
	logger   *slog.Logger
	db       *store.DB
	servers  []*http.Server
	manager  *plugin.Manager
	stopLoop context.CancelFunc
	loopDone chan struct{}
	errc     chan error
}

// newServer applies the timeouts and header limits of docs/threats.md §6.
func newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

func startService(ctx context.Context, cfg serviceConfig, sec secrets, logger *slog.Logger) (*service, error) {
	if len(cfg.webhookURLs) > 0 && sec.webhook == "" {
		return nil, usageError("webhook URLs need a signing secret: set STAGEDOOR_WEBHOOK_SECRET or STAGEDOOR_WEBHOOK_SECRET_FILE")
	}
	if host, _, err := net.SplitHostPort(cfg.internalAddr); err != nil || !isLoopbackHost(host) {
		return nil, usageError("-internal-addr must be a loopback address: it serves auth and hooks")
	}
	db, err := store.Open(ctx, cfg.db)
	if err != nil {
		return nil, err
	}
	api := &mediamtx.Client{BaseURL: cfg.mediamtxAPI, User: adminUser, Password: sec.admin}
	mgr := plugin.NewManager(logger, db, api, plugin.Relay{User: relayUser, Password: sec.relay, RTSPAddress: cfg.mediamtxRTSP})
	passwords := authserver.NewPasswords()
	creds := authserver.NewCachedCredentials(db)
	mgr.OnPolicyChange = creds.Invalidate
	policyChanged := func() {
		creds.Invalidate()
		mgr.ReconcileSoon()
	}
	rec := audit.NewRecorder(db, logger, 8192)
	rec.Retention = cfg.auditRetention
	met := newMetrics(db, passwords, rec)
	mgr.OnEject = func(k plugin.Ejection) {
		met.kicks.WithLabelValues(k.Reason).Inc()
		rec.Record(stagedoor.AuditEntry{At: time.Now(), Kind: "kick", User: k.User, KeyFP: k.KeyFP,
			Protocol: k.SourceType, Decision: "kicked", Reason: k.Reason})
	}
	owner := probeOwner()
	health := authserver.NewHealth(logger, func(ctx context.Context) error {
		err := db.ProbeWrite(ctx, owner)
		if errors.Is(err, store.ErrProbeInconclusive) {
			return authserver.ErrProbeInconclusive
		}
		return err
	}, db)
	_ = health.Check(ctx)
	hooks := webhook.NewDispatcher(db, logger, cfg.webhookURLs, sec.webhook)
	hooks.OnDelivery = func(event string, ok bool) {
		result := "ok"
		if !ok {
			result = "failed"
		}
		met.deliveries.WithLabelValues(event, result).Inc()
	}

	internal := http.NewServeMux()
	internal.Handle("POST /mediamtx/auth", authserver.NewHandler(logger, creds, authserver.Options{
		Policy: authserver.Policy{
			PublicReadProtocols: cfg.publicReadProtocols(),
			Relay:               authserver.Secret{User: relayUser, Password: sec.relay},
			Admin:               authserver.Secret{User: adminUser, Password: sec.admin},
			Passwords:           passwords,
		},
		Healthy: health.Err,
		OnDecision: func(req authserver.Request, d authserver.Decision, took time.Duration) {
			met.decision(req, d, took)
			if req.Action == authserver.ActionPublish {
				rec.Record(auditEntry(req, d))
			}
		},
	}))
	internal.Handle("POST /internal/hook", plugin.NewHookHandler(logger, sec.hook, mgr))
	internal.Handle("GET /healthz", authserver.HealthHandler(health))
	// The CLI calls this after a change (ban, key, password, stream) so that the auth
	// cache never answers from before it; it carries no data, so it needs no secret. It
	// requires its own header so that a MediaMTX whose authHTTPAddress points here by
	// mistake gets a 400 (deny), never a 2xx (allow).
	internal.HandleFunc("POST /internal/policy-changed", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" || r.Header.Get(policyNotifyHeader) != "1" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		policyChanged()
		w.WriteHeader(http.StatusNoContent)
	})
	internal.Handle("GET /metrics", promhttp.HandlerFor(met.reg, promhttp.HandlerOpts{}))
	pages, err := web.NewHandler(logger, db, cfg.urls.hls)
	if err != nil {
		_ = db.Close()
		return nil, usageError(err.Error())
	}
	public := http.NewServeMux()
	public.Handle("/api/v1/admin/", adminapi.NewHandler(logger, db, adminapi.Options{
		Token: sec.adminToken, RTMPURL: cfg.urls.rtmp, HLSURL: cfg.urls.hls,
		OnChange: policyChanged, OnAudit: rec.Record,
	}))
	public.Handle("/", authserver.NewPublicHandler(logger, db, cfg.urls.hls))
	// Channel pages (issue 7). These patterns are more specific than "/" and match no
	// /api/ path, so the status API and the admin API keep their routes.
	public.Handle("GET /{$}", pages)
	public.Handle("GET /{name}", pages)
	public.Handle("GET /static/", pages)

	svc := &service{logger: logger, db: db, manager: mgr, errc: make(chan error, 3)}
	for _, l := range []struct {
		addr string
		h    http.Handler
		name string
	}{{cfg.internalAddr, internal, "internal"}, {cfg.publicAddr, public, "public"}} {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			_ = svc.close()
			return nil, fmt.Errorf("listen %s: %w", l.name, err)
		}
		srv := newServer(l.h)
		svc.servers = append(svc.servers, srv)
		logger.Info("listening", "listener", l.name, "addr", ln.Addr().String())
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				svc.errc <- err
			}
		}()
	}
	var frontLn net.Listener
	if cfg.rtmpAddr != "" {
		if frontLn, err = net.Listen("tcp", cfg.rtmpAddr); err != nil {
			_ = svc.close()
			return nil, fmt.Errorf("listen rtmp front: %w", err)
		}
		logger.Info("listening", "listener", "rtmp front", "addr", frontLn.Addr().String(), "upstream", cfg.mediamtxRTMP)
	}
	loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	svc.stopLoop, svc.loopDone = stop, make(chan struct{})
	go func() {
		defer close(svc.loopDone)
		var wg sync.WaitGroup
		if frontLn != nil {
			front := &rtmpfront.Proxy{Upstream: cfg.mediamtxRTMP, Logger: logger.With("component", "rtmpfront")}
			wg.Go(func() {
				if err := front.Serve(loopCtx, frontLn); err != nil {
					svc.errc <- err
				}
			})
		}
		wg.Go(func() { health.Run(loopCtx, healthEvery) })
		wg.Go(func() { rec.Run(loopCtx) })
		wg.Go(func() { hooks.Run(loopCtx) })
		mgr.Run(loopCtx, cfg.reconcileEvery)
		wg.Wait()
	}()
	return svc, nil
}

// healthEvery is how often the database is probed for writes. With the probe's waits (up
// to 1 s for this process's write turn, 1 s for SQLite's lock) a fault is seen, and
// every auth denied, within about 2.5 s; a lock that keeps one of our own writes waiting
// counts after 2 s of that wait, so within about 3.5 s.
const healthEvery = 500 * time.Millisecond

// probeOwner names this process's heartbeat row: one per host, so replicas on several
// machines sharing one database do not overwrite each other's.
func probeOwner() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "stagedoor"
}

// policyNotifyHeader marks the CLI's policy-changed notification.
const policyNotifyHeader = "X-Stagedoor-Policy-Changed"

// auditEntry is the audit line of a publish decision: fingerprints and names, never a
// secret or a raw path.
func auditEntry(req authserver.Request, d authserver.Decision) stagedoor.AuditEntry {
	decision := "deny"
	if d.Allow {
		decision = "allow"
	}
	ip := req.IP
	if len(ip) > 64 {
		ip = ip[:64]
	}
	return stagedoor.AuditEntry{At: time.Now(), Kind: "publish", User: d.User, KeyFP: d.KeyFP, IP: ip,
		Protocol: req.Protocol, Decision: decision, Reason: d.Reason}
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// close stops the reconciler, drains the listeners and closes the database.
func (s *service) close() error {
	// Listeners first, so that no decision arrives after the audit's last flush; then
	// the loops (the audit writes what it holds); then the database.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, srv := range s.servers {
		if err := srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
			// Clients that never finish a request (slow headers) must not turn a
			// clean stop into a failure: cut them off.
			s.logger.Warn("connections still open at shutdown; closing them", "addr", srv.Addr)
			errs = append(errs, srv.Close())
		} else {
			errs = append(errs, err)
		}
	}
	if s.stopLoop != nil {
		s.stopLoop()
		<-s.loopDone
	}
	errs = append(errs, s.db.Close())
	return errors.Join(errs...)
}
