// Package web is the public listener's one router: the channel pages, the public status
// API, and the admin API mounted under /api/v1/admin/. GET / lists the channels live now
// and GET /{name} shows one channel with a live badge and an HLS player (hls.js, vendored
// from npm and served from /static/, with the browser's native HLS as the fallback);
// GET /api/v1/channels/{name} answers a channel's status as JSON.
//
// Pages carry no key, password, hash or internal address. Every response has a strict
// Content-Security-Policy (scripts and styles only from this origin, media and HLS
// requests only to the public HLS origin) and Referrer-Policy: no-referrer.
package web

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/stagedoor/stagedoor"
)

// Channels is what the pages read from the store.
type Channels interface {
	// ChannelByName returns stagedoor.ErrNotFound for a name nobody owns.
	ChannelByName(ctx context.Context, name string) (stagedoor.Channel, error)
	// LiveStates returns every live public name ordered by name.
	LiveStates(ctx context.Context) ([]stagedoor.LiveState, error)
}

type handler struct {
	logger  *slog.Logger
	ch      Channels
	hlsBase string
	assets  map[string]*asset
}

// Options configure NewRouter.
type Options struct {
	// HLSBase is the public HLS base URL (--hls-url, e.g. http://HOST:8888); its origin
	// is the only one the pages' CSP lets media come from. Required.
	HLSBase string
	// Admin, if set, serves everything under /api/v1/admin/ (the admin API); unset,
	// those paths get a JSON 404.
	Admin http.Handler
	// Panel, if set, serves everything under /panel/ (the control panel, with its own
	// headers); /panel redirects there. Unset, those paths get the 404 page.
	Panel http.Handler
}

// NewRouter returns the public router: GET / and GET /{name} (pages), GET /static/{file},
// GET /api/v1/channels/{name} (status JSON), /api/v1/admin/ (opts.Admin) and /panel/
// (opts.Panel). Any other
// path gets the 404 page, or a JSON 404 under /api/. It returns an error when
// opts.HLSBase is not an absolute http(s) URL.
func NewRouter(logger *slog.Logger, ch Channels, opts Options) (http.Handler, error) {
	origin, err := hlsOrigin(opts.HLSBase)
	if err != nil {
		return nil, err
	}
	assets, err := loadAssets()
	if err != nil {
		return nil, err
	}
	h := &handler{
		logger:  logger.With("component", "web"),
		ch:      ch,
		hlsBase: strings.TrimRight(opts.HLSBase, "/"),
		assets:  assets,
	}
	if assets[HLSJS] == nil {
		h.logger.Warn("hls.js is not embedded: channel pages play with the browser's native HLS only; run `make hlsjs` and rebuild")
	}
	pages := http.NewServeMux()
	pages.HandleFunc("GET /{$}", h.index)
	pages.HandleFunc("GET /static/{file}", h.static)
	pages.HandleFunc("GET /{name}", h.channel)
	pages.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { h.notFound(w) })

	mux := http.NewServeMux()
	page := secure(contentSecurityPolicy(origin), pages)
	mux.Handle("/", page)
	mux.Handle("/api", page) // not redirected to /api/: a reserved name's 404 page
	mux.HandleFunc("GET "+StatusPath+"{name}", h.status)
	apiNotFound := func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
	}
	mux.HandleFunc("/api/", apiNotFound)
	if opts.Admin != nil {
		mux.Handle("/api/v1/admin/", opts.Admin)
	}
	if opts.Panel != nil {
		mux.Handle("/panel/", opts.Panel)
		mux.Handle("GET /panel", http.RedirectHandler("/panel/", http.StatusMovedPermanently))
	}
	return mux, nil
}

// hlsOrigin returns scheme://host[:port] of the HLS base URL.
func hlsOrigin(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("hls url %q: must be an absolute http or https URL", base)
	}
	if u.User != nil {
		// The URL goes into every page; it must not carry a credential.
		return "", fmt.Errorf("hls url: must not contain a user or password")
	}
	return u.Scheme + "://" + u.Host, nil
}

// contentSecurityPolicy allows scripts, styles and images from this origin only, status
// polls to this origin, and playlists and segments from the HLS origin. media-src needs
// blob: because hls.js plays through Media Source Extensions. hls.js runs without its
// Web Worker (see app.js), so no worker-src is granted.
func contentSecurityPolicy(hlsOrigin string) string {
	return fmt.Sprintf("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self' %[1]s; media-src %[1]s blob:; base-uri 'none'; form-action 'none'; "+
		"frame-ancestors 'none'", hlsOrigin)
}

// secure adds the headers every page and asset carries.
func secure(csp string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}
