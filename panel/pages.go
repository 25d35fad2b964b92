package panel

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/stagedoor/stagedoor"
)

//go:embed templates/*.html static/*
var files embed.FS

// templates are parsed once; html/template escapes every value by context.
var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
}).ParseFS(files, "templates/*.html"))

// view is the data of every page; each uses the fields it needs.
type view struct {
	Title     string
	Message   string
	Error     string
	LoginLink bool
	Username  string

	// Signed in.
	Account stagedoor.PanelAccount
	CSRF    string
	Nonce   string

	// Channel page.
	Channel    stagedoor.User
	Keys       []stagedoor.KeyInfo
	HLSURL     string
	PreviewURL string
	Live       liveStatus
	Attempts   []stagedoor.AuditEntry
	HLSJS      bool
	Operator   bool

	// A secret shown once, in the response of the POST that made it.
	NewKey     *stagedoor.IssuedKey
	Server     string
	RTMPS      string
	InviteURL  string
	InviteName string

	// ScaleEngine streams: the list (never a hash), and after a password is set, the
	// hash and the encoder URL forms built on it (once, like a new key).
	Streams []streamRow
	NewHash string
	Forms   []stagedoor.EncoderForms

	// Operator home.
	Query    string
	Channels []stagedoor.User
	Keysets  int

	// Invite page.
	Invite stagedoor.PanelInvite

	// Operator pages: live now, the audit trail and its filters, the operators.
	LiveNow   []liveStatus
	Audit     []stagedoor.AuditEntry
	Filter    auditFilter
	Accounts  []stagedoor.PanelAccount
	Kicked    string
	NotKicked string
}

func (h *handler) render(w http.ResponseWriter, status int, name string, v view) {
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, v); err != nil {
		h.logger.Error("render panel page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (h *handler) notFound(w http.ResponseWriter) {
	h.render(w, http.StatusNotFound, "message", view{Title: "Not found", Message: "There is nothing here."})
}

func (h *handler) internalError(w http.ResponseWriter, what string, err error) {
	h.logger.Error(what, "err", err)
	h.render(w, http.StatusInternalServerError, "message", view{Title: "Error", Message: "Something went wrong; nothing may have changed. Try again."})
}

func (h *handler) static(w http.ResponseWriter, r *http.Request) {
	a, ok := assets[r.PathValue("file")]
	if !ok {
		a, ok = h.assets[r.PathValue("file")]
	}
	if !ok {
		h.notFound(w)
		return
	}
	w.Header().Set("Content-Type", a.ctype)
	_, _ = w.Write(a.body) // #nosec G705 -- an embedded file chosen from a fixed list, not input
}

type asset struct {
	ctype string
	body  []byte
}

// assets are the panel's only static files.
var assets = map[string]asset{
	"panel.css": {"text/css; charset=utf-8", mustRead("static/panel.css")},
	"panel.js":  {"text/javascript; charset=utf-8", mustRead("static/panel.js")},
}

func mustRead(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

// signedInView is the part of every signed-in page.
func signedInView(s *session, title string) view {
	return view{Title: title, Account: s.Account, CSRF: s.csrf, Nonce: stagedoor.NewPanelToken()}
}

// loginForm is GET /panel/login.
func (h *handler) loginForm(w http.ResponseWriter, r *http.Request) {
	if h.session(r) != nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	h.render(w, http.StatusOK, "login", view{Title: "Sign in", CSRF: h.preToken(w, r)})
}

// loginRefused is the one answer to every failed sign-in, so that it says nothing of
// which part was wrong or whether the account exists.
const loginRefused = "Wrong username or password, or too many attempts: wait a little and try again."

// login is POST /panel/login.
// The form and its pre-session token were checked by preSession.
func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	name, pw := r.PostForm.Get("username"), r.PostForm.Get("password")
	refuse := func(status int, msg string) {
		h.render(w, status, "login", view{Title: "Sign in", Error: msg, Username: name, CSRF: h.preToken(w, r)})
	}
	if stagedoor.ValidUsername(name) != nil || stagedoor.ValidPassword(pw) != nil {
		// A hash-shaped password never verifies here: the limiter would compare it with
		// the stored hash itself, and a leaked database must not sign anyone in.
		refuse(http.StatusUnauthorized, loginRefused)
		return
	}
	acct, hash, err := h.st.PanelAccount(r.Context(), name)
	switch {
	case errors.Is(err, stagedoor.ErrNotFound):
		hash = h.dummyHash
	case err != nil:
		h.internalError(w, "panel login lookup", err)
		return
	}
	v := h.opts.Limiter.Verify("panel\x00"+name, h.clientIP(r), hash, pw)
	switch {
	case v.Busy || v.Fault:
		refuse(http.StatusServiceUnavailable, "Busy: try again in a moment.")
		return
	case !v.Allow || hash == h.dummyHash || !acct.Active:
		h.logger.Info("panel sign-in refused", "account", name, "ip", h.clientIP(r), "reason", v.Reason)
		refuse(http.StatusUnauthorized, loginRefused)
		return
	}
	id := stagedoor.NewPanelToken()
	if err := h.st.CreatePanelSession(r.Context(), name, stagedoor.TokenDigest(id)); err != nil {
		if errors.Is(err, stagedoor.ErrInactive) || errors.Is(err, stagedoor.ErrNotFound) {
			refuse(http.StatusUnauthorized, loginRefused)
			return
		}
		h.internalError(w, "create panel session", err)
		return
	}
	h.logger.Info("panel sign-in", "account", name, "ip", h.clientIP(r))
	h.setCookie(w, r, id, 0)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

// logout is POST /panel/logout: this browser only.
func (h *handler) logout(w http.ResponseWriter, r *http.Request, s *session) {
	if err := h.st.EndPanelSession(r.Context(), s.digest); err != nil {
		h.internalError(w, "end panel session", err)
		return
	}
	h.setCookie(w, r, "", -1)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// inviteForm is GET /panel/invite/{token}.
func (h *handler) inviteForm(w http.ResponseWriter, r *http.Request) {
	inv, err := h.st.PanelInvite(r.Context(), stagedoor.TokenDigest(r.PathValue("token")))
	if errors.Is(err, stagedoor.ErrNotFound) {
		h.render(w, http.StatusNotFound, "message", view{Title: "Invite not valid",
			Message: "This invite link was used already, has expired or never existed. Ask your operator for a new one.", LoginLink: true})
		return
	}
	if err != nil {
		h.internalError(w, "panel invite lookup", err)
		return
	}
	h.render(w, http.StatusOK, "invite", view{Title: "Set your panel password", Invite: inv, CSRF: h.preToken(w, r)})
}

// acceptInvite is POST /panel/invite/{token}: the token in the URL is the credential,
// spent by the first password that is accepted.
func (h *handler) acceptInvite(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	inv, err := h.st.PanelInvite(r.Context(), stagedoor.TokenDigest(token))
	if errors.Is(err, stagedoor.ErrNotFound) {
		h.render(w, http.StatusNotFound, "message", view{Title: "Invite not valid",
			Message: "This invite link was used already, has expired or never existed. Ask your operator for a new one.", LoginLink: true})
		return
	}
	if err != nil {
		h.internalError(w, "panel invite lookup", err)
		return
	}
	if !h.prePosted(w, r) {
		return
	}
	again := func(msg string) {
		h.render(w, http.StatusBadRequest, "invite", view{Title: "Set your panel password", Invite: inv, Error: msg, CSRF: h.preToken(w, r)})
	}
	pw := r.PostForm.Get("password")
	if pw != r.PostForm.Get("confirm") {
		again("The two passwords differ.")
		return
	}
	a, err := h.ops.AcceptInvite(r.Context(), h.actor(r, nil), token, inv.Channel, pw)
	if ie, ok := errors.AsType[*stagedoor.InvalidError](err); ok {
		again(ie.Error())
		return
	}
	if errors.Is(err, stagedoor.ErrNotFound) || errors.Is(err, stagedoor.ErrConflict) {
		h.render(w, http.StatusNotFound, "message", view{Title: "Invite not valid", Message: "This invite link cannot be used. Ask your operator for a new one."})
		return
	}
	if err != nil {
		h.internalError(w, "accept panel invite", err)
		return
	}
	h.render(w, http.StatusOK, "login", view{Title: "Sign in", Message: "Password set. Sign in as " + a.Name + ".", Username: a.Name, CSRF: h.preToken(w, r)})
}

// home is GET /panel/: a streamer's own channel, or an operator's channel list.
func (h *handler) home(w http.ResponseWriter, r *http.Request, s *session) {
	if s.Account.Role != stagedoor.RoleOperator {
		afterChange(w, r, s.Account.Channel)
		return
	}
	users, err := h.ops.Users(r.Context())
	if err != nil {
		h.internalError(w, "list channels", err)
		return
	}
	v := signedInView(s, "Channels")
	v.Operator = true
	v.Query = strings.TrimSpace(r.URL.Query().Get("q"))
	for _, u := range users {
		if v.Query == "" || strings.Contains(u.Name, strings.ToLower(v.Query)) {
			v.Channels = append(v.Channels, u)
		}
	}
	h.render(w, http.StatusOK, "home", v)
}

// channelView loads the channel page's data (the caller checked that s may see it), or
// answers 404 (no such channel) and returns false.
func (h *handler) channelView(w http.ResponseWriter, r *http.Request, s *session, name string) (view, bool) {
	u, err := h.ops.User(r.Context(), name)
	if errors.Is(err, stagedoor.ErrNotFound) {
		h.notFound(w)
		return view{}, false
	}
	if err != nil {
		h.internalError(w, "channel", err)
		return view{}, false
	}
	keys, err := h.ops.Keys(r.Context(), name)
	if err != nil {
		h.internalError(w, "keys", err)
		return view{}, false
	}
	streams, _, err := h.channelStreams(r, name)
	if err != nil {
		h.internalError(w, "streams", err)
		return view{}, false
	}
	attempts, err := h.ops.Audit(r.Context(), stagedoor.AuditFilter{User: name, Kind: "publish", Limit: attemptsShown})
	if err != nil {
		h.internalError(w, "publish attempts", err)
		return view{}, false
	}
	v := signedInView(s, u.Name)
	v.Channel, v.Keys, v.Streams, v.Attempts = u, keys, streams, attempts
	v.HLSURL = h.opts.URLs.HLSFor(u.Name)
	v.PreviewURL = previewURL(v.HLSURL)
	v.Operator = s.Account.Role == stagedoor.RoleOperator
	v.Server, v.RTMPS = h.opts.URLs.RTMP, h.opts.URLs.RTMPS
	v.Live = h.liveStatus(r.Context(), u.Name, u.Name, u.Live)
	v.HLSJS = h.assets["hls.min.js"].body != nil
	return v, true
}

// attemptsShown is how many recent publish attempts the channel page lists.
const attemptsShown = 20

// previewURL is the HLS URL the panel's preview plays: marked, so that the viewers
// shown leave it out.
func previewURL(hls string) string {
	return hls + "?" + PreviewParam + "=1"
}

// liveStatus is the channel's live state with MediaMTX's numbers, when it is live and
// a Meter can read them. A Meter that fails leaves the numbers out (logged), never the
// page.
func (h *handler) liveStatus(ctx context.Context, name, owner string, live *stagedoor.LiveState) liveStatus {
	st := liveStatus{Channel: name, Owner: owner}
	if live == nil {
		return st
	}
	st.Live, st.Since, st.Protocol = true, live.Since, protocolName(live.SourceType)
	st.Uptime = formatUptime(h.opts.Now().Sub(st.Since))
	if h.opts.Meter == nil {
		return st
	}
	l, ok, err := h.opts.Meter.Live(ctx, name)
	if err != nil {
		h.logger.Warn("read live numbers from mediamtx", "name", name, "err", err)
		return st
	}
	if ok {
		st.Measured, st.Viewers, st.Bitrate = true, l.Viewers, l.Bitrate
		if !l.Since.IsZero() {
			st.Since = l.Since
		}
	}
	st.Uptime = formatUptime(h.opts.Now().Sub(st.Since))
	return st
}

// liveStatus is the live part of a channel page, and the JSON its script refreshes.
type liveStatus struct {
	Channel string `json:"channel"`
	// Owner is the channel whose page shows the name (a stream name's owner).
	Owner    string    `json:"-"`
	Live     bool      `json:"live"`
	Since    time.Time `json:"since"`
	Uptime   string    `json:"uptime"`
	Protocol string    `json:"protocol"`
	// Measured: Viewers and Bitrate come from MediaMTX.
	Measured bool  `json:"measured"`
	Viewers  int   `json:"viewers"`
	Bitrate  int64 `json:"bitrate"`
}

// Kbps is the bitrate in kbit/s for the page.
func (l liveStatus) Kbps() int64 { return l.Bitrate / 1000 }

// protocolName is the ingest protocol of a MediaMTX source type.
func protocolName(sourceType string) string {
	switch sourceType {
	case "rtmpConn":
		return "RTMP"
	case "rtmpsConn":
		return "RTMPS"
	case "srtConn":
		return "SRT"
	case "rtspSession":
		return "RTSP"
	case "rtspsSession":
		return "RTSPS"
	case "webRTCSession":
		return "WebRTC (WHIP)"
	case "":
		return "unknown"
	}
	return sourceType
}

func formatUptime(d time.Duration) string {
	d = max(d, 0).Truncate(time.Second)
	h, m, sec := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	return fmt.Sprintf("%d:%02d:%02d", h, m, sec)
}

// channelPage is GET /panel/channels/{name}.
func (h *handler) channelPage(w http.ResponseWriter, r *http.Request, s *session, name string) {
	if v, ok := h.channelView(w, r, s, name); ok {
		h.render(w, http.StatusOK, "channel", v)
	}
}

// liveJSON is GET /panel/channels/{name}/live: the live part of the channel page, for
// its script to refresh the badge and numbers without a reload.
func (h *handler) liveJSON(w http.ResponseWriter, r *http.Request, s *session, name string) {
	u, err := h.ops.User(r.Context(), name)
	if errors.Is(err, stagedoor.ErrNotFound) {
		h.notFound(w)
		return
	}
	if err != nil {
		h.internalError(w, "channel", err)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(h.liveStatus(r.Context(), u.Name, u.Name, u.Live))
}

// afterChange sends the browser to the channel page (after a POST: redirect, GET).
func afterChange(w http.ResponseWriter, r *http.Request, name string) {
	// #nosec G710 -- a path under /panel/ on this origin; the name is one path segment, escaped
	http.Redirect(w, r, Prefix+"channels/"+url.PathEscape(name), http.StatusSeeOther)
}

// showKey answers the POST that made k with the channel page and k on it, once.
func (h *handler) showKey(w http.ResponseWriter, r *http.Request, s *session, k stagedoor.IssuedKey) {
	v, ok := h.channelView(w, r, s, k.UserName)
	if !ok {
		return
	}
	v.NewKey = &k
	h.render(w, http.StatusOK, "channel", v)
}

// addKey is POST /panel/channels/{name}/keys (label, nonce).
func (h *handler) addKey(w http.ResponseWriter, r *http.Request, s *session, name string) {
	if !h.spend(s, r.PostForm.Get("nonce")) {
		afterChange(w, r, name) // a reload of the page that showed the key: no new key, no key
		return
	}
	k, err := h.ops.AddKey(r.Context(), h.actor(r, s), name, strings.TrimSpace(r.PostForm.Get("label")))
	if h.actionError(w, err, "add key") {
		return
	}
	h.showKey(w, r, s, k)
}

// revokeKey is POST /panel/channels/{name}/keys/revoke (fingerprint, keep_live).
func (h *handler) revokeKey(w http.ResponseWriter, r *http.Request, s *session, name string) {
	err := h.ops.RevokeKey(r.Context(), h.actor(r, s), name, r.PostForm.Get("fingerprint"),
		stagedoor.Revocation{KeepLive: r.PostForm.Get("keep_live") == "1"})
	if h.actionError(w, err, "revoke key") {
		return
	}
	afterChange(w, r, name)
}

// resetKeys is POST /panel/channels/{name}/keys/reset (keep_live, nonce): every key
// replaced by one new key, shown once.
func (h *handler) resetKeys(w http.ResponseWriter, r *http.Request, s *session, name string) {
	if !h.spend(s, r.PostForm.Get("nonce")) {
		afterChange(w, r, name)
		return
	}
	k, err := h.ops.ResetKeys(r.Context(), h.actor(r, s), name, stagedoor.Revocation{KeepLive: r.PostForm.Get("keep_live") == "1"})
	if h.actionError(w, err, "reset keys") {
		return
	}
	h.showKey(w, r, s, k)
}

// actionError answers a failed action and reports whether there was one.
func (h *handler) actionError(w http.ResponseWriter, err error, what string) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, stagedoor.ErrNotFound) {
		h.notFound(w)
		return true
	}
	if errors.Is(err, stagedoor.ErrConflict) {
		h.render(w, http.StatusConflict, "message", view{Title: "Taken", Message: "That name is taken; nothing was changed."})
		return true
	}
	if ie, ok := errors.AsType[*stagedoor.InvalidError](err); ok {
		h.render(w, http.StatusBadRequest, "message", view{Title: "Not accepted", Message: ie.Error() + "; nothing was changed."})
		return true
	}
	h.internalError(w, what, err)
	return true
}

// changePassword is POST /panel/password (current, password, confirm). The current
// password is verified through the login limiter; every session of the account ends.
func (h *handler) changePassword(w http.ResponseWriter, r *http.Request, s *session) {
	refuse := func(status int, msg string) {
		h.render(w, status, "message", view{Title: "Password not changed", Message: msg + " Nothing was changed."})
	}
	cur, pw := r.PostForm.Get("current"), r.PostForm.Get("password")
	if pw != r.PostForm.Get("confirm") {
		refuse(http.StatusBadRequest, "The two new passwords differ.")
		return
	}
	_, hash, err := h.st.PanelAccount(r.Context(), s.Account.Name)
	if err != nil {
		h.internalError(w, "panel account", err)
		return
	}
	if stagedoor.ValidPassword(cur) != nil {
		refuse(http.StatusForbidden, "The current password is wrong.")
		return
	}
	v := h.opts.Limiter.Verify("panel\x00"+s.Account.Name, h.clientIP(r), hash, cur)
	switch {
	case v.Busy || v.Fault:
		refuse(http.StatusServiceUnavailable, "Busy: try again in a moment.")
		return
	case !v.Allow:
		refuse(http.StatusForbidden, "The current password is wrong (or there were too many attempts).")
		return
	}
	err = h.ops.SetPanelPassword(r.Context(), h.actor(r, s), s.Account, pw)
	if ie, ok := errors.AsType[*stagedoor.InvalidError](err); ok {
		refuse(http.StatusBadRequest, ie.Error()+".")
		return
	}
	if err != nil {
		h.internalError(w, "set panel password", err)
		return
	}
	h.setCookie(w, r, "", -1)
	h.render(w, http.StatusOK, "login", view{Title: "Sign in", Message: "Password changed; every session was signed out. Sign in again.", Username: s.Account.Name, CSRF: h.preToken(w, r)})
}

// signOutEverywhere is POST /panel/signout-everywhere.
func (h *handler) signOutEverywhere(w http.ResponseWriter, r *http.Request, s *session) {
	if err := h.ops.SignOutEverywhere(r.Context(), h.actor(r, s), s.Account); err != nil {
		h.internalError(w, "sign out everywhere", err)
		return
	}
	h.setCookie(w, r, "", -1)
	h.render(w, http.StatusOK, "login", view{Title: "Sign in", Message: "Signed out everywhere.", Username: s.Account.Name, CSRF: h.preToken(w, r)})
}
