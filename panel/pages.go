package panel

import (
	"bytes"
	"embed"
	"errors"
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
	Channel  stagedoor.User
	Keys     []stagedoor.KeyInfo
	HLSURL   string
	Operator bool

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
	h.render(w, http.StatusOK, "login", view{Title: "Sign in"})
}

// loginRefused is the one answer to every failed sign-in, so that it says nothing of
// which part was wrong or whether the account exists.
const loginRefused = "Wrong username or password, or too many attempts: wait a little and try again."

// login is POST /panel/login.
func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		h.render(w, http.StatusBadRequest, "login", view{Title: "Sign in", Error: "The form could not be read."})
		return
	}
	name, pw := r.PostForm.Get("username"), r.PostForm.Get("password")
	refuse := func(status int, msg string) {
		h.render(w, status, "login", view{Title: "Sign in", Error: msg, Username: name})
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
	v := h.opts.Limiter.Verify("panel\x00"+name, clientIP(r), hash, pw)
	switch {
	case v.Busy || v.Fault:
		refuse(http.StatusServiceUnavailable, "Busy: try again in a moment.")
		return
	case !v.Allow || hash == h.dummyHash || !acct.Active:
		h.logger.Info("panel sign-in refused", "account", name, "ip", clientIP(r), "reason", v.Reason)
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
	h.logger.Info("panel sign-in", "account", name, "ip", clientIP(r))
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
	h.render(w, http.StatusOK, "invite", view{Title: "Set your panel password", Invite: inv})
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
	if err := r.ParseForm(); err != nil {
		h.render(w, http.StatusBadRequest, "invite", view{Title: "Set your panel password", Invite: inv, Error: "The form could not be read."})
		return
	}
	pw := r.PostForm.Get("password")
	if pw != r.PostForm.Get("confirm") {
		h.render(w, http.StatusBadRequest, "invite", view{Title: "Set your panel password", Invite: inv, Error: "The two passwords differ."})
		return
	}
	a, err := h.ops.AcceptInvite(r.Context(), actor(r, nil), token, inv.Channel, pw)
	if ie, ok := errors.AsType[*stagedoor.InvalidError](err); ok {
		h.render(w, http.StatusBadRequest, "invite", view{Title: "Set your panel password", Invite: inv, Error: ie.Error()})
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
	h.render(w, http.StatusOK, "login", view{Title: "Sign in", Message: "Password set. Sign in as " + a.Name + ".", Username: a.Name})
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

// channelView loads the channel page's data, or answers 404 (not the caller's to see,
// or no such channel) and returns false.
func (h *handler) channelView(w http.ResponseWriter, r *http.Request, s *session, name string) (view, bool) {
	if !mayManage(s, name) {
		h.notFound(w)
		return view{}, false
	}
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
	v := signedInView(s, u.Name)
	v.Channel, v.Keys, v.Streams = u, keys, streams
	v.HLSURL = h.opts.URLs.HLSFor(u.Name)
	v.Operator = s.Account.Role == stagedoor.RoleOperator
	v.Server, v.RTMPS = h.opts.URLs.RTMP, h.opts.URLs.RTMPS
	return v, true
}

// channelPage is GET /panel/channels/{name}.
func (h *handler) channelPage(w http.ResponseWriter, r *http.Request, s *session) {
	if v, ok := h.channelView(w, r, s, r.PathValue("name")); ok {
		h.render(w, http.StatusOK, "channel", v)
	}
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
func (h *handler) addKey(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	if !mayManage(s, name) {
		h.notFound(w)
		return
	}
	if !h.spend(s, r.PostForm.Get("nonce")) {
		afterChange(w, r, name) // a reload of the page that showed the key: no new key, no key
		return
	}
	k, err := h.ops.AddKey(r.Context(), actor(r, s), name, strings.TrimSpace(r.PostForm.Get("label")))
	if h.actionError(w, err, "add key") {
		return
	}
	h.showKey(w, r, s, k)
}

// revokeKey is POST /panel/channels/{name}/keys/revoke (fingerprint, keep_live).
func (h *handler) revokeKey(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	if !mayManage(s, name) {
		h.notFound(w)
		return
	}
	err := h.ops.RevokeKey(r.Context(), actor(r, s), name, r.PostForm.Get("fingerprint"),
		stagedoor.Revocation{KeepLive: r.PostForm.Get("keep_live") == "1"})
	if h.actionError(w, err, "revoke key") {
		return
	}
	afterChange(w, r, name)
}

// resetKeys is POST /panel/channels/{name}/keys/reset (keep_live, nonce): every key
// replaced by one new key, shown once.
func (h *handler) resetKeys(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	if !mayManage(s, name) {
		h.notFound(w)
		return
	}
	if !h.spend(s, r.PostForm.Get("nonce")) {
		afterChange(w, r, name)
		return
	}
	k, err := h.ops.ResetKeys(r.Context(), actor(r, s), name, stagedoor.Revocation{KeepLive: r.PostForm.Get("keep_live") == "1"})
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
	v := h.opts.Limiter.Verify("panel\x00"+s.Account.Name, clientIP(r), hash, cur)
	switch {
	case v.Busy || v.Fault:
		refuse(http.StatusServiceUnavailable, "Busy: try again in a moment.")
		return
	case !v.Allow:
		refuse(http.StatusForbidden, "The current password is wrong (or there were too many attempts).")
		return
	}
	err = h.ops.SetPanelPassword(r.Context(), actor(r, s), s.Account, pw)
	if ie, ok := errors.AsType[*stagedoor.InvalidError](err); ok {
		refuse(http.StatusBadRequest, ie.Error()+".")
		return
	}
	if err != nil {
		h.internalError(w, "set panel password", err)
		return
	}
	h.setCookie(w, r, "", -1)
	h.render(w, http.StatusOK, "login", view{Title: "Sign in", Message: "Password changed; every session was signed out. Sign in again.", Username: s.Account.Name})
}

// signOutEverywhere is POST /panel/signout-everywhere.
func (h *handler) signOutEverywhere(w http.ResponseWriter, r *http.Request, s *session) {
	if err := h.ops.SignOutEverywhere(r.Context(), actor(r, s), s.Account); err != nil {
		h.internalError(w, "sign out everywhere", err)
		return
	}
	h.setCookie(w, r, "", -1)
	h.render(w, http.StatusOK, "login", view{Title: "Sign in", Message: "Signed out everywhere.", Username: s.Account.Name})
}
