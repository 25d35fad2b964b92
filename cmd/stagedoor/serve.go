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

	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/plugin"
	"github.com/stagedoor/stagedoor/rtmpfront"
	"github.com/stagedoor/stagedoor/store"
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
	svc, err := startService(ctx, cfg, loadSecrets(getenv), logger)
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
	if host, _, err := net.SplitHostPort(cfg.internalAddr); err != nil || !isLoopbackHost(host) {
		return nil, usageError("-internal-addr must be a loopback address: it serves auth and hooks")
	}
	db, err := store.Open(ctx, cfg.db)
	if err != nil {
		return nil, err
	}
	api := &plugin.MediaMTX{BaseURL: cfg.mediamtxAPI, User: adminUser, Password: sec.admin}
	mgr := plugin.NewManager(logger, db, api, plugin.Relay{User: relayUser, Password: sec.relay, RTSPAddress: cfg.mediamtxRTSP})

	internal := http.NewServeMux()
	internal.Handle("POST /mediamtx/auth", authserver.NewHandler(logger, db, authserver.Options{
		Policy: authserver.Policy{
			PublicReadProtocols: cfg.publicReadProtocols(),
			Relay:               authserver.Secret{User: relayUser, Password: sec.relay},
			Admin:               authserver.Secret{User: adminUser, Password: sec.admin},
			Passwords:           authserver.NewPasswords(),
		},
	}))
	internal.Handle("POST /internal/hook", plugin.NewHookHandler(logger, sec.hook, mgr))
	internal.Handle("GET /healthz", authserver.HealthHandler(db))
	public := authserver.NewPublicHandler(logger, db, cfg.urls.hls)

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
		mgr.Run(loopCtx, cfg.reconcileEvery)
		wg.Wait()
	}()
	return svc, nil
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
	if s.stopLoop != nil {
		s.stopLoop()
		<-s.loopDone
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, srv := range s.servers {
		errs = append(errs, srv.Shutdown(ctx))
	}
	errs = append(errs, s.db.Close())
	return errors.Join(errs...)
}
