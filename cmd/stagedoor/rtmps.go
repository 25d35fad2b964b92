package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/stagedoor/stagedoor/policy"
	"github.com/stagedoor/stagedoor/rtmpfront"
)

// rtmpsConfig is the RTMPS front: a second RTMP front on its own port that terminates
// TLS and relays to the same MediaMTX loopback RTMP listener as the plain front.
type rtmpsConfig struct {
	addr string // "" = off
	cert string // PEM certificate chain, leaf first
	key  string // PEM private key
}

func (c *rtmpsConfig) register(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&c.addr, "rtmps-addr", getenv("STAGEDOOR_RTMPS_ADDR"),
		"public RTMPS (RTMP over TLS) listener of Stagedoor's front, e.g. :1937 or :443; empty: no RTMPS (env STAGEDOOR_RTMPS_ADDR)")
	fs.StringVar(&c.cert, "rtmps-cert", getenv("STAGEDOOR_RTMPS_CERT"),
		"RTMPS certificate chain, PEM file; a renewed file is picked up without a restart (env STAGEDOOR_RTMPS_CERT)")
	fs.StringVar(&c.key, "rtmps-key", getenv("STAGEDOOR_RTMPS_KEY"),
		"RTMPS private key, PEM file, renewed with the certificate (env STAGEDOOR_RTMPS_KEY)")
}

// validate checks the flags together; the files themselves are read by load.
func (c *rtmpsConfig) validate(rtmpAddr string) error {
	if c.addr == "" {
		if c.cert != "" || c.key != "" {
			return usageError("-rtmps-cert and -rtmps-key need -rtmps-addr")
		}
		return nil
	}
	if c.cert == "" || c.key == "" {
		return usageError("-rtmps-addr needs -rtmps-cert and -rtmps-key (PEM files)")
	}
	if _, _, err := net.SplitHostPort(c.addr); err != nil {
		return usageError("-rtmps-addr must be an address like :1937")
	}
	if c.addr == rtmpAddr {
		return usageError("-rtmps-addr must differ from -rtmp-addr")
	}
	return nil
}

// frontOn reports whether a front (RTMP or RTMPS) sits before MediaMTX's RTMP listener,
// which then listens on loopback and trusts the front's PROXY header.
func (c *serviceConfig) frontOn() bool { return c.rtmpAddr != "" || c.rtmps.addr != "" }

// loadRTMPSCert reads the RTMPS certificate and key when RTMPS is on (nil when off),
// before anything is opened or started: a missing or broken pair is a usage error.
func loadRTMPSCert(c rtmpsConfig, logger *slog.Logger) (*rtmpfront.CertFile, error) {
	if c.addr == "" {
		return nil, nil
	}
	certs, err := rtmpfront.LoadCertFile(c.cert, c.key, logger.With("component", "rtmpfront", "listener", "rtmps"))
	if err != nil {
		return nil, usageError(err.Error())
	}
	return certs, nil
}

// listenRTMPS binds the RTMPS listener, TLS-wrapped; nil when RTMPS is off.
func (s *service) listenRTMPS() (net.Listener, error) {
	if s.cfg.rtmps.addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", s.cfg.rtmps.addr)
	if err != nil {
		return nil, fmt.Errorf("listen rtmps front: %w", err)
	}
	s.logger.Info("listening", "listener", "rtmps front", "addr", ln.Addr().String(), "upstream", s.cfg.mediamtxRTMP)
	return rtmpfront.TLSListener(ln, rtmpfront.TLSConfig(s.rtmpsCerts), 0), nil
}

// frontProxy is the RTMP front's proxy for one listener ("rtmp" or "rtmps"): both relay
// to MediaMTX's loopback RTMP listener with the same limits, so that a publish is
// treated alike whichever port it came in on.
func (s *service) frontProxy(listener string) *rtmpfront.Proxy {
	logger := s.logger.With("component", "rtmpfront")
	if listener != "rtmp" {
		logger = logger.With("listener", listener)
	}
	batch := s.cfg.rtmpBatch
	if batch == 0 {
		batch = -1 // the front's "as it arrives"
	}
	return &rtmpfront.Proxy{
		Upstream:     s.cfg.mediamtxRTMP,
		Logger:       logger,
		PumpInterval: batch,
		Kernel:       s.kernel,
		Publishers:   s.publishers,
		Decider:      frontDecider{s.policy, s.policy.Front, s.manager},
		// The front's refusals never reach MediaMTX's auth call: count and audit them
		// here. What it allows is counted and audited when MediaMTX presents the grant.
		OnDecision: func(a policy.Attempt, v policy.Verdict, took time.Duration) {
			if !v.Allow {
				s.metrics.decision(a, v, took)
				s.recorder.Record(policy.AuditEntry(a, v, time.Now()))
			}
		},
	}
}

// serveRTMPS runs the RTMPS front on ln until ctx ends; a failure for good reaches
// s.errc and stops the service, as the plain front's does.
func (s *service) serveRTMPS(ctx context.Context, ln net.Listener) {
	if err := s.frontProxy("rtmps").Serve(ctx, ln); err != nil {
		s.errc <- fmt.Errorf("rtmps: %w", err)
	}
}
