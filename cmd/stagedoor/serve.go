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
	"sync"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/audit"
	"github.com/stagedoor/stagedoor/health"
	"github.com/stagedoor/stagedoor/manage"
	"github.com/stagedoor/stagedoor/mediamtx"
	"github.com/stagedoor/stagedoor/panel"
	"github.com/stagedoor/stagedoor/plugin"
	"github.com/stagedoor/stagedoor/policy"
	"github.com/stagedoor/stagedoor/rtmpfront"
	"github.com/stagedoor/stagedoor/webhook"
)

func cmdServe(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg serviceConfig
	cfg.register(fs, getenv, "") // with your own MediaMTX, the front is opt-in
	cfg.registerNoMediaMTX(fs)
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError(fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	if err := cfg.checkNoMediaMTX(fs); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	if !cfg.noMediaMTX && getenv(plugin.EnvHookSecret) == "" {
		return usageError("serve: set " + plugin.EnvHookSecret + " (the same value in MediaMTX's environment, for its hooks)")
	}
	logOut := newDelayedWriter(stderr)
	defer logOut.Close()
	logger := cfg.log.newLogger(logOut, stderr, isTerminal)
	sec, err := loadSecrets(getenv)
	if err != nil {
		return err
	}
	svc, err := startService(ctx, cfg, sec, logger)
	if err != nil {
		return err
	}
	return errors.Join(svc.wait(ctx), svc.close())
}

// wait returns nil when ctx ends, or the error of the first listener that failed for
// good: the service cannot do its job without it, so the command stops with an error
// rather than refuse connections in silence with /healthz still 200.
func (s *service) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.errc:
		s.logger.Error("listener failed; stopping", "err", err)
		return err
	}
}

// service is the running Stagedoor: its parts are built by newService, their routes by
// routes.go, and startService binds the listeners and starts the loops.
type service struct {
	cfg    serviceConfig
	sec    secrets
	logger *slog.Logger

	db        backend
	policy    *policy.Policy
	creds     *policy.CachedCredentials
	passwords *policy.Passwords
	health    *health.Health
	manager   *plugin.Manager
	// live is which names other nodes hold, for first wins at auth.
	live *liveMap
	// publishers are the RTMP and RTMPS fronts' publishes, which a kick closes there.
	publishers *rtmpfront.Publishers
	// kernel forwards the plain RTMP front's publishers in the kernel (nil: pumped).
	kernel   *rtmpfront.KernelForward
	recorder *audit.Recorder
	webhooks *webhook.Dispatcher
	metrics  *metrics
	ops      *manage.Service
	api      *mediamtx.Client
	panel    *panel.Handler

	servers  []*http.Server
	stopLoop context.CancelFunc
	loopDone chan struct{}
	errc     chan error

	// rtmpsCerts serves the RTMPS front's certificate; nil when RTMPS is off.
	rtmpsCerts *rtmpfront.CertFile
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

// startService builds the service, binds its listeners and starts its loops.
func startService(ctx context.Context, cfg serviceConfig, sec secrets, logger *slog.Logger) (*service, error) {
	s, err := newService(ctx, cfg, sec, logger)
	if err != nil {
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		return nil, errors.Join(err, s.close())
	}
	return s, nil
}

// newService checks the configuration, opens the database and builds every part, wired
// to each other; nothing listens or runs yet.
func newService(ctx context.Context, cfg serviceConfig, sec secrets, logger *slog.Logger) (*service, error) {
	if len(cfg.webhookURLs) > 0 && sec.webhook == "" {
		return nil, usageError("webhook URLs need a signing secret: set STAGEDOOR_WEBHOOK_SECRET or STAGEDOOR_WEBHOOK_SECRET_FILE")
	}
	if host, _, err := net.SplitHostPort(cfg.internalAddr); err != nil || !isLoopbackHost(host) {
		return nil, usageError("-internal-addr must be a loopback address: it serves auth and hooks")
	}
	// Before the database: a missing or broken certificate changes nothing.
	rtmpsCerts, err := loadRTMPSCert(cfg.rtmps, logger)
	if err != nil {
		return nil, err
	}
	clusterNets, err := cfg.clusterNets()
	if err != nil {
		return nil, err
	}
	db, err := cfg.db.open(ctx)
	if err != nil {
		return nil, err
	}
	// errc: one slot per listener (internal, public, panel, RTMP and RTMPS fronts), so
	// that none blocks reporting its failure.
	db.SetLeaseTTL(cfg.leaseTTL)
	if cfg.noMediaMTX {
		if err := checkReplicaID(ctx, db, cfg.nodeID); err != nil {
			_ = db.Close()
			return nil, err
		}
	}
	if err := db.RegisterNode(ctx, cfg.nodeID, cfg.advertiseRTSP); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("register node %s: %w", cfg.nodeID, err)
	}
	switch {
	case cfg.noMediaMTX: // a replica serves no names and pulls none
	case cfg.advertiseRTSP != "" && sec.cluster == "":
		logger.Warn("-advertise-rtsp is set but " + envClusterSecret + " is not: other nodes cannot pull this node's live names, and this node serves only its own")
	case cfg.advertiseRTSP == "" && sec.cluster != "":
		logger.Warn(envClusterSecret + " is set but -advertise-rtsp is not: other nodes cannot pull this node's live names for their viewers")
	}
	s := &service{cfg: cfg, sec: sec, logger: logger, db: db, errc: make(chan error, 5)}
	s.rtmpsCerts = rtmpsCerts
	s.passwords = policy.NewPasswords()
	s.creds = policy.NewCachedCredentials(db)
	s.health = health.New(logger, func(ctx context.Context) error { return db.ProbeWrite(ctx, cfg.nodeID) }, db)
	_ = s.health.Check(ctx)
	s.live = &liveMap{self: cfg.nodeID}
	if err := s.live.refresh(ctx, db); err != nil {
		logger.Warn("reading other nodes' live names failed; retried at the next reconcile interval", "err", err)
	}
	s.policy = &policy.Policy{
		HeldElsewhere:       s.live.HeldElsewhere,
		KeysFirstWins:       !cfg.keyTakeover,
		Credentials:         s.creds,
		PublicReadProtocols: cfg.publicReadProtocols(),
		Relay:               policy.Secret{User: relayUser, Password: sec.relay},
		Peer:                policy.Secret{User: plugin.PeerUser, Password: sec.cluster},
		PeerNets:            clusterNets,
		Admin:               policy.Secret{User: adminUser, Password: sec.admin},
		Passwords:           s.passwords,
		Healthy:             s.health.Err,
		Admissions:          policy.NewAdmissions(),
		Front:               policy.NewFrontGrants(),
	}
	api := &mediamtx.Client{BaseURL: cfg.mediamtxAPI, User: adminUser, Password: sec.admin,
		SelfCheckQuery: selfCheckParam + "=" + sec.selfCheck}
	if cfg.noMediaMTX {
		api = nil // nothing calls it: no reconciler, hooks, kicks or meter (replica.go)
	}
	s.api = api
	s.manager = plugin.NewManager(logger, db, api, plugin.Relay{User: relayUser, Password: sec.relay, RTSPAddress: cfg.mediamtxRTSP}, s.policy)
	s.manager.NodeID = cfg.nodeID
	s.manager.Peer = plugin.Peer{Password: sec.cluster}
	s.manager.KeysFirstWins = !cfg.keyTakeover
	s.manager.OnPolicyChange = s.creds.Invalidate
	s.recorder = audit.NewRecorder(db, logger, 8192)
	s.recorder.Retention = cfg.auditRetention
	s.metrics = newMetrics(db, s.passwords, s.recorder)
	s.publishers = rtmpfront.NewPublishers()
	s.manager.Disconnect = s.publishers.Disconnect
	s.manager.OnEject = func(e plugin.Ejection) {
		s.metrics.kicks.WithLabelValues(e.Reason).Inc()
		s.recorder.Record(stagedoor.AuditEntry{At: time.Now(), Kind: "kick", User: e.User, KeyFP: e.KeyFP,
			Protocol: e.SourceType, Decision: "kicked", Reason: e.Reason})
	}
	s.webhooks = webhook.NewDispatcher(db, logger, cfg.webhookURLs, sec.webhook)
	s.webhooks.Owner = cfg.nodeID
	s.webhooks.OnDelivery = func(event string, ok bool) {
		result := "ok"
		if !ok {
			result = "failed"
		}
		s.metrics.deliveries.WithLabelValues(event, result).Inc()
	}
	s.ops = &manage.Service{
		Store:  db,
		URLs:   cfg.urls,
		Logger: logger.With("component", "manage"),
		Record: func(_ context.Context, e stagedoor.AuditEntry) error {
			s.recorder.Record(e)
			return nil
		},
		Changed: func(context.Context) { s.policyChanged() },
		Kicker:  s.manager.Kick,
	}
	if cfg.noMediaMTX {
		s.asReplica()
	}
	return s, nil
}

// policyChanged drops every cached auth answer and has live streams re-checked now: a
// credential may have been revoked.
func (s *service) policyChanged() {
	s.creds.Invalidate()
	s.manager.ReconcileSoon()
}

// start binds the internal, public, RTMP and RTMPS listeners and starts the background
// loops (RTMP and RTMPS fronts, health probe, audit, webhooks, reconciler).
func (s *service) start(ctx context.Context) error {
	public, panelOwn, err := s.publicRoutes()
	if err != nil {
		return usageError(err.Error())
	}
	type listener struct {
		addr string
		h    http.Handler
		name string
	}
	listeners := []listener{{s.cfg.internalAddr, s.internalHandler(), "internal"}, {s.cfg.publicAddr, public, "public"}}
	if panelOwn != nil {
		listeners = append(listeners, listener{s.cfg.panelAddr, panelOwn, "panel"})
	}
	for _, l := range listeners {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", l.name, err)
		}
		srv := newServer(l.h)
		s.servers = append(s.servers, srv)
		s.logger.Info("listening", "listener", l.name, "addr", ln.Addr().String())
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.errc <- err
			}
		}()
	}
	var frontLn net.Listener
	if s.cfg.rtmpAddr != "" {
		if frontLn, err = net.Listen("tcp", s.cfg.rtmpAddr); err != nil {
			return fmt.Errorf("listen rtmp front: %w", err)
		}
		s.logger.Info("listening", "listener", "rtmp front", "addr", frontLn.Addr().String(), "upstream", s.cfg.mediamtxRTMP)
	}
	if frontLn != nil {
		if err := s.startKernelForward(); err != nil {
			frontLn.Close()
			return err
		}
	}
	rtmpsLn, err := s.listenRTMPS()
	if err != nil {
		if frontLn != nil {
			frontLn.Close()
		}
		return err
	}
	loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stopLoop, s.loopDone = stop, make(chan struct{})
	go func() {
		defer close(s.loopDone)
		var wg sync.WaitGroup
		if frontLn != nil {
			front := s.frontProxy("rtmp")
			wg.Go(func() {
				if err := front.Serve(loopCtx, frontLn); err != nil {
					s.errc <- err
				}
			})
		}
		if rtmpsLn != nil {
			wg.Go(func() { s.serveRTMPS(loopCtx, rtmpsLn) })
		}
		wg.Go(func() { s.health.Run(loopCtx, healthEvery) })
		wg.Go(func() { s.recorder.Run(loopCtx) })
		wg.Go(func() { s.webhooks.Run(loopCtx) })
		wg.Go(func() { s.panel.Run(loopCtx, panelPruneEvery) })
		wg.Go(func() { s.sweep(loopCtx, s.cfg.reconcileEvery) })
		wg.Go(func() { _ = s.db.Listen(loopCtx, s.notified) })
		if !s.cfg.noMediaMTX {
			s.manager.Run(loopCtx, s.cfg.reconcileEvery)
		}
		wg.Wait()
	}()
	return nil
}

// panelPruneEvery is how often expired panel sessions are deleted (a session is refused
// as soon as it expires; this only keeps the table small).
const panelPruneEvery = 10 * time.Minute

// healthEvery is how often the database is probed for writes. With the probe's waits (up
// to 1 s for this process's write turn, 1 s for SQLite's lock) a fault is seen, and
// every auth denied, within about 2.5 s; a lock that keeps one of our own writes waiting
// counts after 2 s of that wait, so within about 3.5 s.
const healthEvery = 500 * time.Millisecond

// policyNotifyHeader marks the CLI's policy-changed notification.
const policyNotifyHeader = "X-Stagedoor-Policy-Changed"

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
	if s.kernel != nil {
		s.kernel.Close()
	}
	errs = append(errs, s.db.Close())
	return errors.Join(errs...)
}

// startKernelForward sets up the RTMP front's kernel forward as --rtmp-forward asks:
// auto uses it when the process may (CAP_BPF and CAP_NET_ADMIN) and pumps otherwise,
// kernel refuses to start without it, pump never uses it.
func (s *service) startKernelForward() error {
	if s.cfg.rtmpForward == forwardPump {
		return nil
	}
	kf, err := rtmpfront.NewKernelForward()
	switch {
	case err == nil:
		s.kernel = kf
		s.logger.Info("rtmp front: publishers' media is forwarded to MediaMTX in the kernel (sockmap)")
	case s.cfg.rtmpForward == forwardKernel:
		return fmt.Errorf("rtmp front: --rtmp-forward kernel: %w (it needs CAP_BPF and CAP_NET_ADMIN)", err)
	default:
		s.logger.Info("rtmp front: no kernel forward (it needs CAP_BPF and CAP_NET_ADMIN); publishers' media is pumped",
			"batch", s.cfg.rtmpBatch.String(), "err", err)
	}
	return nil
}

// frontDecider is the policy as the RTMP front asks it: the decision from Policy, the
// grant from its FrontGrants; an allowed publish first has a peer alias of its name
// removed (plugin.Manager.MakeRoom), before the front forwards it to MediaMTX.
type frontDecider struct {
	*policy.Policy
	*policy.FrontGrants
	manager *plugin.Manager
}

func (d frontDecider) DecideIngest(ctx context.Context, a policy.Attempt) (policy.Verdict, string, policy.Admission) {
	v, name, adm := d.Policy.DecideIngest(ctx, a)
	if v.Allow {
		d.manager.MakeRoom(ctx, name, true)
	}
	return v, name, adm
}

// sweep frees, every interval, the live names held under node ids whose lease ran out (a
// host renamed since, so --node-id's default changed; a cluster node that died), queueing
// one stream.stopped each: no other step would ever take them offline, since a node only
// marks its own names offline. The first sweep waits one interval, so that this node's
// own lease, which may have run out while it was stopped, is renewed by the health probe
// before: its names still live on MediaMTX are kept, not stopped and started again. Each
// round also rereads which names other nodes hold (liveMap), for a lost notification and
// for SQLite, which sends none.
func (s *service) sweep(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.refreshLive(ctx)
		n, err := s.db.SweepExpired(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.logger.Warn("sweep of dead nodes' live names failed; retrying", "err", err)
		case n > 0:
			s.logger.Info("live names of dead nodes freed", "names", n)
			s.manager.ReconcileSoon()
		}
	}
}

// notified handles the database's change notifications (PostgreSQL): a policy change made
// by another process (the CLI, another replica) drops the auth cache and has live streams
// re-checked at once, instead of at the next policy-generation poll; after a (re)connect,
// when notifications may have been lost, the same.
func (s *service) notified(payload string) {
	switch payload {
	case "", "policy":
		s.policyChanged()
	}
	switch payload {
	case "", "live", "nodes":
		s.refreshLive(context.Background())
		// Peer aliases follow the live names of the other nodes (a stream that ended
		// elsewhere must not leave a path that makes viewers wait 10 s for a 500).
		s.manager.ReconcileSoon()
	}
}

// refreshLive rereads which names other nodes hold (liveMap).
func (s *service) refreshLive(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.live.refresh(ctx, s.db); err != nil && ctx.Err() == nil {
		s.logger.Warn("reading other nodes' live names failed", "err", err)
	}
}
