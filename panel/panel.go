// Package panel is the control panel in the browser, served under /panel/ (on the public
// listener, or on one of its own): operators and streamers sign in with panel accounts
// (never with a stream key or a publish password) and act through the operator-action
// service (manage), so every change has the same audit entry, policy-changed signal and
// kicks as the CLI's. Live numbers (viewers, bitrate) come from MediaMTX through a Meter.
//
// Security, each rule tested in panel_test.go and pages_test.go:
//   - sessions: an opaque 256-bit id in a cookie (HttpOnly, SameSite=Strict, Path=/panel/,
//     Secure over TLS or behind a trusted proxy that says https); the store keeps only its
//     digest; idle and absolute timeouts, expired sessions pruned; a password change, a
//     ban and "sign out everywhere" end them;
//   - CSRF: every state-changing form carries a token derived from the session id (a
//     one-way hash, so the page never reveals the id), and the sign-in and invite forms
//     one derived from a pre-session cookie; a POST without it is refused with 403 and
//     changes nothing; cross-origin POSTs are also refused by the browser's
//     Sec-Fetch-Site/Origin headers (http.CrossOriginProtection);
//   - proxies: X-Forwarded-For and X-Forwarded-Proto are read only from the peers in
//     Options.TrustedProxies;
//   - login: bcrypt through a policy.Passwords limiter of its own, so an address that
//     failed is slowed and then blocked, a clean address is never locked out by others'
//     failures, and bcrypt runs at a bounded rate;
//   - a streamer's requests for any channel but their own get 404, whatever the URL or
//     the form fields say: the channel comes only from the URL and is checked, by own,
//     against the session's account; operator pages and actions are 404 to streamers;
//   - a new stream key is in the response of the POST that made it and nowhere else; so
//     is a new publish password's bcrypt hash, and the password itself is never rendered;
//   - html/template everywhere; a strict CSP with no inline script or style;
//     Referrer-Policy no-referrer, nosniff, Cache-Control no-store on every response.
package panel

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/manage"
	"github.com/stagedoor/stagedoor/policy"
)

// Store is what the panel reads and writes itself: accounts to sign in, sessions and
// invites to look up. Every other change goes through manage.
type Store interface {
	// PanelAccount returns an account and its password hash; stagedoor.ErrNotFound.
	PanelAccount(ctx context.Context, name string) (stagedoor.PanelAccount, string, error)
	// CreatePanelSession records a session by digest; stagedoor.ErrInactive for a
	// banned streamer.
	CreatePanelSession(ctx context.Context, name string, d stagedoor.Digest) error
	// PanelSession returns a live session; stagedoor.ErrNotFound.
	PanelSession(ctx context.Context, d stagedoor.Digest) (stagedoor.PanelSession, error)
	TouchPanelSession(ctx context.Context, d stagedoor.Digest) error
	EndPanelSession(ctx context.Context, d stagedoor.Digest) error
	// PanelInvite returns a usable invite; stagedoor.ErrNotFound when unknown, used or
	// expired.
	PanelInvite(ctx context.Context, d stagedoor.Digest) (stagedoor.PanelInvite, error)
	// PrunePanelSessions deletes sessions created before createdBefore or not seen
	// since seenBefore.
	PrunePanelSessions(ctx context.Context, createdBefore, seenBefore time.Time) (int64, error)
}

// Live is what MediaMTX reports of a stream live now.
type Live struct {
	// Viewers is how many read it now, the panel's own preview players left out.
	Viewers int
	// Bitrate is the publisher's inbound rate, bits per second.
	Bitrate int64
	// Since is when MediaMTX saw the stream become available.
	Since time.Time
}

// Meter reads MediaMTX's view of a public name.
type Meter interface {
	// Live returns the stream live on the public name; false when MediaMTX carries none.
	Live(ctx context.Context, name string) (Live, bool, error)
}

// PreviewParam marks the panel's preview player in its HLS query, so that a Meter can
// leave it out of the viewers.
const PreviewParam = "stagedoor_preview"

// Options configure NewHandler. Zero values take the defaults given.
type Options struct {
	// URLs are the public addresses shown with new keys (the OBS "Server" field).
	URLs stagedoor.URLs
	// BaseURL is the panel's public URL (https://HOST/panel/), for invite links. Empty:
	// built from each request, which behind a TLS-terminating proxy says http.
	BaseURL string
	// IdleTimeout ends a session not used for this long. Default 30 min.
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session this long after sign-in, used or not. Default 12 h.
	AbsoluteTimeout time.Duration
	// Limiter verifies panel passwords. Default: policy.NewPasswords(), its own, so that
	// guesses at panel passwords never spend the publishers' bcrypt budget.
	Limiter *policy.Passwords
	// Now is the clock of session timeouts; tests move it (and the store's) by hand.
	// Default time.Now.
	Now func() time.Time
	// Meter reads viewers and bitrate from MediaMTX. Nil: the channel page shows the
	// live state only.
	Meter Meter
	// HLSJS is hls.min.js for the preview player (the web package's copy), served at
	// /panel/static/hls.min.js. Nil: the preview uses the browser's native HLS.
	HLSJS []byte
	// TrustedProxies are the reverse proxies whose X-Forwarded-For and
	// X-Forwarded-Proto are believed (the client's address for the login limiter and the
	// audit; https makes the cookie Secure). Empty: no header is trusted.
	TrustedProxies []netip.Prefix
}

// CookieName is the session cookie.
const CookieName = "stagedoor_panel"

// Prefix is where the panel is mounted.
const Prefix = "/panel/"

// touchEvery bounds session writes: seen_at moves at most once a minute per session.
const touchEvery = time.Minute

type handler struct {
	logger *slog.Logger
	ops    *manage.Service
	st     Store
	opts   Options
	// dummyHash is verified for unknown account names, so that they cost what a wrong
	// password costs and the limiter counts them the same.
	dummyHash string

	// assets are the static files beyond the fixed ones (hls.min.js, when given).
	assets map[string]asset

	mu   sync.Mutex
	once map[string]time.Time // spent form nonces (see spend), by session and nonce
}

// Handler is the panel: an http.Handler to mount at Prefix, and the session pruner
// (Run).
type Handler struct {
	http.Handler
	h *handler
}

// Run deletes expired sessions every interval until ctx ends; errors are logged.
func (p *Handler) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := p.Prune(ctx); err != nil && ctx.Err() == nil {
			p.h.logger.Error("prune panel sessions", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Prune deletes the sessions past their idle or absolute timeout and says how many.
func (p *Handler) Prune(ctx context.Context) (int64, error) {
	now := p.h.opts.Now()
	return p.h.st.PrunePanelSessions(ctx, now.Add(-p.h.opts.AbsoluteTimeout), now.Add(-p.h.opts.IdleTimeout))
}

// NewHandler returns the panel; mount it at Prefix. ops and st are required.
func NewHandler(logger *slog.Logger, ops *manage.Service, st Store, opts Options) (*Handler, error) {
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 30 * time.Minute
	}
	if opts.AbsoluteTimeout == 0 {
		opts.AbsoluteTimeout = 12 * time.Hour
	}
	if opts.Limiter == nil {
		opts.Limiter = policy.NewPasswords()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	dummy, err := stagedoor.HashPassword(stagedoor.NewPanelToken()[:40], stagedoor.DefaultCost)
	if err != nil {
		return nil, err
	}
	h := &handler{logger: logger.With("component", "panel"), ops: ops, st: st, opts: opts,
		dummyHash: dummy, once: map[string]time.Time{}}

	if opts.HLSJS != nil {
		h.assets = map[string]asset{"hls.min.js": {"text/javascript; charset=utf-8", opts.HLSJS}}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /panel/static/{file}", h.static)
	mux.HandleFunc("GET /panel/login", h.loginForm)
	mux.HandleFunc("POST /panel/login", h.preSession(h.login))
	mux.HandleFunc("GET /panel/invite/{token}", h.inviteForm)
	mux.HandleFunc("POST /panel/invite/{token}", h.acceptInvite)

	mux.HandleFunc("GET /panel/{$}", h.signedIn(h.home))
	mux.HandleFunc("GET /panel/channels/{name}", h.signedIn(h.own(h.channelPage)))
	mux.HandleFunc("GET /panel/channels/{name}/live", h.signedIn(h.own(h.liveJSON)))
	mux.HandleFunc("POST /panel/logout", h.posted(h.logout))
	mux.HandleFunc("POST /panel/password", h.posted(h.changePassword))
	mux.HandleFunc("POST /panel/signout-everywhere", h.posted(h.signOutEverywhere))
	mux.HandleFunc("POST /panel/channels/{name}/keys", h.posted(h.own(h.addKey)))
	mux.HandleFunc("POST /panel/channels/{name}/keys/revoke", h.posted(h.own(h.revokeKey)))
	mux.HandleFunc("POST /panel/channels/{name}/keys/reset", h.posted(h.own(h.resetKeys)))
	mux.HandleFunc("POST /panel/channels/{name}/streams", h.posted(h.own(h.addStream)))
	mux.HandleFunc("POST /panel/channels/{name}/streams/auth", h.posted(h.own(h.setStreamAuth)))
	mux.HandleFunc("POST /panel/channels/{name}/publish-password", h.posted(h.own(h.setPublishPassword)))
	// Operators only (a streamer gets 404).
	mux.HandleFunc("POST /panel/channels", h.posted(h.operator(h.createChannel)))
	mux.HandleFunc("POST /panel/channels/{name}/ban", h.posted(h.operator(h.own(h.ban))))
	mux.HandleFunc("POST /panel/channels/{name}/unban", h.posted(h.operator(h.own(h.unban))))
	mux.HandleFunc("POST /panel/channels/{name}/invite", h.posted(h.operator(h.own(h.invite))))
	mux.HandleFunc("POST /panel/channels/{name}/kick", h.posted(h.operator(h.own(h.kick))))
	mux.HandleFunc("POST /panel/breach", h.posted(h.operator(h.breach)))
	mux.HandleFunc("GET /panel/live", h.signedIn(h.operator(h.liveNow)))
	mux.HandleFunc("GET /panel/audit", h.signedIn(h.operator(h.auditPage)))
	mux.HandleFunc("GET /panel/operators", h.signedIn(h.operator(h.operators)))
	mux.HandleFunc("POST /panel/operators", h.posted(h.operator(h.addOperator)))
	mux.HandleFunc("/panel/", func(w http.ResponseWriter, r *http.Request) { h.notFound(w) })

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.render(w, http.StatusForbidden, "message", view{Title: "Refused", Message: "Cross-origin request refused."})
	}))
	return &Handler{Handler: secure(contentSecurityPolicy(opts.URLs.HLS), cop.Handler(mux)), h: h}, nil
}

// contentSecurityPolicy: everything from this origin only, no inline script or style,
// forms post only here, never framed; the preview player reads the HLS origin (media
// through blob: URLs of Media Source Extensions, hls.js without its worker).
func contentSecurityPolicy(hlsBase string) string {
	media := ""
	if u, err := url.Parse(hlsBase); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
		media = " " + u.Scheme + "://" + u.Host
	}
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; " +
		"connect-src 'self'" + media + "; media-src" + media + " blob:; " +
		"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

// secure sets the headers of every panel response.
func secure(csp string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cache-Control", "no-store")
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		next.ServeHTTP(w, r)
	})
}

// session is a signed-in request.
type session struct {
	stagedoor.PanelSession
	digest stagedoor.Digest
	csrf   string
}

// csrfToken is the session's CSRF token: a one-way function of the session id, so the
// page that carries it reveals nothing that signs in, and no table is needed.
func csrfToken(id string) string {
	d := sha256.Sum256([]byte("stagedoor panel csrf\x00" + id))
	return base64.RawURLEncoding.EncodeToString(d[:])
}

// session returns the request's live session, or nil. An expired session is ended.
func (h *handler) session(r *http.Request) *session {
	c, err := r.Cookie(CookieName)
	if err != nil || len(c.Value) != 43 {
		return nil
	}
	d := stagedoor.TokenDigest(c.Value)
	ps, err := h.st.PanelSession(r.Context(), d)
	if err != nil {
		if !errors.Is(err, stagedoor.ErrNotFound) {
			h.logger.Error("panel session lookup", "err", err)
		}
		return nil
	}
	now := h.opts.Now()
	if now.Sub(ps.CreatedAt) >= h.opts.AbsoluteTimeout || now.Sub(ps.SeenAt) >= h.opts.IdleTimeout {
		if err := h.st.EndPanelSession(r.Context(), d); err != nil {
			h.logger.Error("end expired panel session", "err", err)
		}
		return nil
	}
	if now.Sub(ps.SeenAt) >= touchEvery {
		if err := h.st.TouchPanelSession(r.Context(), d); err != nil {
			h.logger.Error("touch panel session", "err", err)
		}
	}
	return &session{PanelSession: ps, digest: d, csrf: csrfToken(c.Value)}
}

type sessionHandler func(w http.ResponseWriter, r *http.Request, s *session)

// signedIn serves GETs for signed-in accounts and sends others to the login page.
func (h *handler) signedIn(next sessionHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := h.session(r)
		if s == nil {
			http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
			return
		}
		next(w, r, s)
	}
}

// posted serves state-changing POSTs: a session and its CSRF token are required, and a
// request without both is refused with 403 before anything is read or changed.
func (h *handler) posted(next sessionHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := h.session(r)
		if s == nil {
			h.render(w, http.StatusForbidden, "message", view{Title: "Signed out", Message: "Your session has ended. Sign in again.", LoginLink: true})
			return
		}
		if err := r.ParseForm(); err != nil {
			h.render(w, http.StatusBadRequest, "message", view{Title: "Bad request", Message: "The form could not be read."})
			return
		}
		if !tokenEqual(r.PostForm.Get("csrf"), s.csrf) {
			h.csrfRefused(w)
			return
		}
		next(w, r, s)
	}
}

// operator lets operators through and answers 404 to everyone else.
func (h *handler) operator(next sessionHandler) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		if s.Account.Role != stagedoor.RoleOperator {
			h.notFound(w)
			return
		}
		next(w, r, s)
	}
}

// channelHandler serves a request about the channel named in the URL.
type channelHandler func(w http.ResponseWriter, r *http.Request, s *session, name string)

// own lets the request through only when the session may manage the channel named in
// the URL ({name}); everyone else gets 404, whatever the form fields say. It is the one
// check of every channel route.
func (h *handler) own(next channelHandler) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		name := r.PathValue("name")
		if !mayManage(s, name) {
			h.notFound(w)
			return
		}
		next(w, r, s, name)
	}
}

// PreCookieName is the pre-session cookie: a random value whose one-way hash the login
// and invite forms carry (a double-submit token), so that a POST to them from another
// site, which can neither read the cookie nor the form, is refused.
const PreCookieName = "stagedoor_panel_pre"

// preToken returns the request's pre-session token, setting a fresh cookie when it has
// none; the form carries csrfToken of it.
func (h *handler) preToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(PreCookieName); err == nil && len(c.Value) == 43 {
		return csrfToken(c.Value)
	}
	v := stagedoor.NewPanelToken()
	http.SetCookie(w, &http.Cookie{ // #nosec G124 -- HttpOnly and SameSite always; Secure over TLS or a trusted proxy's https
		Name: PreCookieName, Value: v, Path: Prefix, MaxAge: int(preTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: h.isTLS(r),
	})
	return csrfToken(v)
}

// preTTL is how long a sign-in or invite form stays usable.
const preTTL = 12 * time.Hour

// preOK reports whether a POST carries the pre-session token of its cookie.
func preOK(r *http.Request) bool {
	c, err := r.Cookie(PreCookieName)
	if err != nil || len(c.Value) != 43 {
		return false
	}
	return tokenEqual(r.PostForm.Get("csrf"), csrfToken(c.Value))
}

// preSession refuses a POST without the pre-session token before anything is read or
// changed.
func (h *handler) preSession(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.prePosted(w, r) {
			next(w, r)
		}
	}
}

// prePosted reads a sign-in or invite form and reports whether it carries the
// pre-session token; if not, it has answered (400 or 403).
func (h *handler) prePosted(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		h.render(w, http.StatusBadRequest, "message", view{Title: "Bad request", Message: "The form could not be read."})
		return false
	}
	if !preOK(r) {
		h.csrfRefused(w)
		return false
	}
	return true
}

func (h *handler) csrfRefused(w http.ResponseWriter) {
	h.render(w, http.StatusForbidden, "message", view{Title: "Refused", Message: "The form's security token is missing or wrong; nothing was changed. Reload the page and try again."})
}

func tokenEqual(got, want string) bool {
	return len(got) == len(want) && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// mayManage reports whether the session may see and change channel: an operator any
// channel, a streamer only their own.
func mayManage(s *session, channel string) bool {
	return s.Account.Role == stagedoor.RoleOperator ||
		(s.Account.Role == stagedoor.RoleStreamer && s.Account.Channel != "" && s.Account.Channel == channel)
}

// actor is the audit trail's view of the request: via the panel, from its address,
// naming the panel account when there is one.
func (h *handler) actor(r *http.Request, s *session) manage.Actor {
	a := manage.Actor{Via: manage.ViaPanel, IP: h.clientIP(r)}
	if s != nil {
		a.Name = s.Account.Name
	}
	return a
}

// peer is the address the request came from, and whether it is a trusted proxy.
func (h *handler) peer(r *http.Request) (string, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return host, h.trusted(host)
}

func (h *handler) trusted(host string) bool {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range h.opts.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientIP is the client's address: the peer's, or, when the peer is a trusted proxy,
// the last address in X-Forwarded-For that is not a trusted proxy (the ones before it
// were written by the client and prove nothing).
func (h *handler) clientIP(r *http.Request) string {
	host, trusted := h.peer(r)
	if !trusted {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		ip, err := netip.ParseAddr(hop)
		if err != nil {
			break // garbage: stop at the last address we can vouch for
		}
		if !h.trusted(ip.String()) {
			return ip.Unmap().String()
		}
		host = ip.Unmap().String()
	}
	return host
}

// isTLS reports whether the browser reached the panel over TLS: Stagedoor serves TLS
// itself, or a trusted proxy says so in X-Forwarded-Proto.
func (h *handler) isTLS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	_, trusted := h.peer(r)
	return trusted && strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")), "https")
}

func (h *handler) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	// Secure when the browser uses TLS: on plain HTTP it would drop the cookie.
	http.SetCookie(w, &http.Cookie{ // #nosec G124 -- HttpOnly and SameSite always; Secure over TLS or a trusted proxy's https
		Name: CookieName, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: h.isTLS(r),
	})
}

// spend records a form nonce of a session as used and reports whether it was fresh: a
// reload of the page that showed a new key re-posts the same nonce and gets no key.
func (h *handler) spend(s *session, nonce string) bool {
	if nonce == "" {
		return true
	}
	now := h.opts.Now()
	k := string(s.digest[:]) + "\x00" + nonce
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.once) > 10_000 {
		for k, t := range h.once {
			if now.Sub(t) > h.opts.AbsoluteTimeout {
				delete(h.once, k)
			}
		}
		if len(h.once) > 10_000 {
			clear(h.once) // bounded memory beats reload protection of old forms
		}
	}
	if _, used := h.once[k]; used {
		return false
	}
	h.once[k] = now
	return true
}

// release makes a spent nonce fresh again: the action it was spent for was refused and
// changed nothing, so the corrected form may be sent again.
func (h *handler) release(s *session, nonce string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.once, string(s.digest[:])+"\x00"+nonce)
}
