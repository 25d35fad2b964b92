package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/adminapi"
	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/health"
	"github.com/stagedoor/stagedoor/mediamtx"
	"github.com/stagedoor/stagedoor/panel"
	"github.com/stagedoor/stagedoor/plugin"
	"github.com/stagedoor/stagedoor/policy"
	"github.com/stagedoor/stagedoor/web"
)

// internalRoutes is the loopback listener: MediaMTX's auth calls, its hooks, health,
// the CLI's policy-changed notification and metrics.
func (s *service) internalRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /mediamtx/auth", authserver.NewHandler(s.logger, s.policy, authserver.Options{
		OnDecision: func(a policy.Attempt, v policy.Verdict, took time.Duration) {
			s.metrics.decision(a, v, took)
			if a.Action == policy.ActionPublish {
				s.recorder.Record(policy.AuditEntry(a, v, time.Now()))
				if kind, name := stagedoor.ParsePath(a.Path); v.Allow && kind == stagedoor.PathPublic {
					s.manager.MakeRoom(context.Background(), name, false) // a peer alias of the name would refuse the publisher
				}
			}
		},
		Note: selfCheckNote(s.sec.selfCheck),
	}))
	mux.Handle("POST /internal/hook", plugin.NewHookHandler(s.logger, s.sec.hook, s.manager))
	mux.Handle("GET /healthz", health.Handler(s.health))
	// The CLI calls this after a change (ban, key, password, stream) so that the auth
	// cache never answers from before it; it carries no data, so it needs no secret. It
	// requires its own header so that a MediaMTX whose authHTTPAddress points here by
	// mistake gets a 400 (deny), never a 2xx (allow).
	mux.HandleFunc("POST /internal/policy-changed", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" || r.Header.Get(policyNotifyHeader) != "1" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		s.policyChanged()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}

// selfCheckParam carries the per-run marker of the anonymous API probe.
const selfCheckParam = "stagedoor_selfcheck"

// selfCheckNoteText labels the auth line of the probe.
const selfCheckNoteText = "MediaMTX API anonymity self-check (expected denial)"

// selfCheckNote labels the denial that Stagedoor's own probe of MediaMTX's API causes
// (plugin: checkAPIClosed): at start and after each MediaMTX restart it calls the API
// without credentials to check that MediaMTX asks us, and MediaMTX's auth call for it
// is an anonymous api request that we refuse, which would read like an attack. Only a
// request carrying this run's secret marker, which only the probe knows, is labelled;
// anyone else's request, whatever its query, is logged as it is.
func selfCheckNote(marker string) func(policy.Attempt) string {
	return func(a policy.Attempt) string {
		if a.Action != policy.ActionAPI || a.User != "" || a.Password != "" || a.Token != "" || marker == "" ||
			!strings.Contains(a.Query, selfCheckParam) {
			return ""
		}
		q, err := url.ParseQuery(a.Query)
		if err != nil || len(q[selfCheckParam]) != 1 ||
			subtle.ConstantTimeCompare([]byte(q.Get(selfCheckParam)), []byte(marker)) != 1 {
			return ""
		}
		return selfCheckNoteText
	}
}

// publicRoutes is the public listener: one router (web) with the pages, the status API,
// the admin API and, unless --panel-addr gives it a listener of its own, the control
// panel. It also returns the panel's own router (nil when the panel is on the public
// listener). It fails when --hls-url is not a usable URL.
func (s *service) publicRoutes() (public, own http.Handler, err error) {
	proxies, err := s.cfg.proxies()
	if err != nil {
		return nil, nil, err
	}
	s.panel, err = panel.NewHandler(s.logger, s.ops, s.db, panel.Options{
		URLs: s.cfg.urls, BaseURL: s.cfg.panelURL, TrustedProxies: proxies,
		Meter: s.meter(), HLSJS: web.HLSJSBody(),
	})
	if err != nil {
		return nil, nil, err
	}
	opts := web.Options{
		HLSBase: s.cfg.urls.HLS,
		Admin:   adminapi.NewHandler(s.logger, s.ops, adminapi.Options{Token: s.sec.adminToken}),
		Panel:   s.panel,
	}
	if s.cfg.panelAddr != "" {
		opts.Panel = nil
		mux := http.NewServeMux()
		mux.Handle(panel.Prefix, s.panel)
		mux.Handle("GET /{$}", http.RedirectHandler(panel.Prefix, http.StatusSeeOther))
		mux.Handle("GET /panel", http.RedirectHandler(panel.Prefix, http.StatusMovedPermanently))
		own = mux
	}
	public, err = web.NewRouter(s.logger, s.db, opts)
	return public, own, err
}

// liveMeter reads the panel's live numbers from MediaMTX's API: the public path's
// readers (the panel's preview players left out) and inbound bit rate.
type liveMeter struct {
	api   *mediamtx.Client
	meter mediamtx.Meter
}

func (l *liveMeter) Live(ctx context.Context, name string) (panel.Live, bool, error) {
	p, err := l.api.PathByName(ctx, stagedoor.LivePrefix+name)
	if errors.Is(err, mediamtx.ErrNotFound) || (err == nil && !p.Available) {
		return panel.Live{}, false, nil
	}
	if err != nil {
		return panel.Live{}, false, err
	}
	viewers, err := l.api.Viewers(ctx, p, panel.PreviewParam)
	if err != nil {
		return panel.Live{}, false, err
	}
	out := panel.Live{Viewers: viewers, Bitrate: l.meter.Rate(p, time.Now())}
	if p.AvailableTime != nil {
		out.Since = *p.AvailableTime
	}
	return out, true, nil
}
