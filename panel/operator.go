package panel

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/manage"
)

// createChannel is POST /panel/channels (name, nonce): the new channel's first key is
// shown once, like a key added.
func (h *handler) createChannel(w http.ResponseWriter, r *http.Request, s *session) {
	if !h.spend(s, r.PostForm.Get("nonce")) {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	nu, err := h.ops.CreateUser(r.Context(), h.actor(r, s), strings.TrimSpace(r.PostForm.Get("name")))
	if h.actionError(w, err, "create channel") {
		return
	}
	h.showKey(w, r, s, stagedoor.IssuedKey{UserName: nu.Name, StreamKey: nu.StreamKey, Fingerprint: nu.Fingerprint, Label: "default"})
}

// ban is POST /panel/channels/{name}/ban: new publishes are refused, live streams kicked
// and the streamer's panel sessions end.
func (h *handler) ban(w http.ResponseWriter, r *http.Request, s *session, name string) {
	h.setActive(w, r, s, name, false)
}

// unban is POST /panel/channels/{name}/unban.
func (h *handler) unban(w http.ResponseWriter, r *http.Request, s *session, name string) {
	h.setActive(w, r, s, name, true)
}

func (h *handler) setActive(w http.ResponseWriter, r *http.Request, s *session, name string, active bool) {
	if h.actionError(w, h.ops.SetActive(r.Context(), h.actor(r, s), name, active), "set active") {
		return
	}
	afterChange(w, r, name)
}

// invite is POST /panel/channels/{name}/invite: the single-use link is shown once.
func (h *handler) invite(w http.ResponseWriter, r *http.Request, s *session, name string) {
	token, _, err := h.ops.Invite(r.Context(), h.actor(r, s), name)
	if h.actionError(w, err, "invite") {
		return
	}
	v, ok := h.channelView(w, r, s, name)
	if !ok {
		return
	}
	base := h.opts.BaseURL
	if base == "" {
		scheme := "http"
		if h.isTLS(r) {
			scheme = "https"
		}
		base = scheme + "://" + r.Host + Prefix
	}
	v.InviteURL = InviteURL(base, token)
	h.render(w, http.StatusOK, "channel", v)
}

// breach is POST /panel/breach: every key of every channel reset, after a confirmation
// (the field confirm must say RESET); without it, the confirmation page.
func (h *handler) breach(w http.ResponseWriter, r *http.Request, s *session) {
	if r.PostForm.Get("confirm") != "RESET" {
		v := signedInView(s, "Reset every key?")
		v.Operator = true
		h.render(w, http.StatusOK, "breach", v)
		return
	}
	ks, err := h.ops.ResetAllKeys(r.Context(), h.actor(r, s), stagedoor.Revocation{KeepLive: r.PostForm.Get("keep_live") == "1"})
	if err != nil {
		h.internalError(w, "reset all keys", err)
		return
	}
	v := signedInView(s, "Every key reset")
	v.Operator = true
	v.Keysets = len(ks)
	h.render(w, http.StatusOK, "breach", v)
}

// InviteURL is the link of invite token under the panel's base URL: the one form the CLI
// prints and the panel shows.
func InviteURL(base, token string) string {
	return strings.TrimRight(base, "/") + "/invite/" + token
}

// liveNow is GET /panel/live: every name live now, with its viewers and a kick button.
func (h *handler) liveNow(w http.ResponseWriter, r *http.Request, s *session) {
	h.renderLiveNow(w, r, s, view{})
}

func (h *handler) renderLiveNow(w http.ResponseWriter, r *http.Request, s *session, msg view) {
	states, err := h.ops.Live(r.Context())
	if err != nil {
		h.internalError(w, "live now", err)
		return
	}
	v := signedInView(s, "Live now")
	v.Operator, v.Kicked, v.NotKicked = true, msg.Kicked, msg.NotKicked
	for _, l := range states {
		v.LiveNow = append(v.LiveNow, h.liveStatus(r.Context(), l.Name, l.UserName, &l))
	}
	h.render(w, http.StatusOK, "live", v)
}

// kick is POST /panel/channels/{name}/kick: the publisher live on the name is
// disconnected now, through the operator-action service (audited, like the CLI's and the
// admin API's actions). No credential changes: an encoder that reconnects with a valid
// one is admitted again; ban the channel or reset its keys to keep it out.
func (h *handler) kick(w http.ResponseWriter, r *http.Request, s *session, name string) {
	was, err := h.ops.Kick(r.Context(), h.actor(r, s), name)
	if errors.Is(err, manage.ErrNoService) {
		h.render(w, http.StatusServiceUnavailable, "message", view{Title: "Not kicked", Message: "Kicking needs the running service; nothing was changed."})
		return
	}
	if h.actionError(w, err, "kick") {
		return
	}
	msg := view{Kicked: name}
	if !was {
		msg = view{NotKicked: name}
	}
	h.renderLiveNow(w, r, s, msg)
}

// auditFilter is the audit page's form, as given (to show it again).
type auditFilter struct {
	User, Kind, Since, Until string
	Limit                    int
}

// auditKinds are the kinds the audit page filters by.
var auditKinds = []string{"publish", "kick", "admin", "webhook"}

// auditPage is GET /panel/audit?user=&kind=&since=&until=&limit=: the audit trail,
// newest first. since and until are a duration back from now (2h, 30m) or a time
// (2026-03-01T20:00, UTC); limit is 1 to 1000, default 100.
func (h *handler) auditPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	f := auditFilter{User: strings.TrimSpace(q.Get("user")), Kind: q.Get("kind"),
		Since: strings.TrimSpace(q.Get("since")), Until: strings.TrimSpace(q.Get("until")), Limit: 100}
	v := signedInView(s, "Audit trail")
	v.Operator = true
	sf := stagedoor.AuditFilter{User: f.User}
	var problems []string
	if f.Kind != "" {
		if !slices.Contains(auditKinds, f.Kind) {
			problems = append(problems, "unknown action")
		}
		sf.Kind = f.Kind
	}
	now := h.opts.Now()
	for _, t := range []struct {
		in  string
		out *time.Time
	}{{f.Since, &sf.Since}, {f.Until, &sf.Until}} {
		if t.in == "" {
			continue
		}
		at, ok := parseWhen(t.in, now)
		if !ok {
			problems = append(problems, "a time is neither a duration (2h) nor a date (2026-03-01T20:00)")
			continue
		}
		*t.out = at
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			problems = append(problems, "limit must be 1 to 1000")
		} else {
			f.Limit = n
		}
	}
	sf.Limit = f.Limit
	v.Filter = f
	if len(problems) > 0 {
		v.Error = strings.Join(problems, "; ") + "."
		h.render(w, http.StatusBadRequest, "audit", v)
		return
	}
	es, err := h.ops.Audit(r.Context(), sf)
	if err != nil {
		h.internalError(w, "audit", err)
		return
	}
	v.Audit = es
	h.render(w, http.StatusOK, "audit", v)
}

// parseWhen reads a duration back from now ("2h") or a UTC time ("2026-03-01T20:00", as
// a datetime-local field sends it).
func parseWhen(s string, now time.Time) (time.Time, bool) {
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), true
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// operators is GET /panel/operators: the operator accounts, and a form to add one.
func (h *handler) operators(w http.ResponseWriter, r *http.Request, s *session) {
	h.renderOperators(w, r, s, http.StatusOK, "", "")
}

func (h *handler) renderOperators(w http.ResponseWriter, r *http.Request, s *session, status int, msg, problem string) {
	accts, err := h.ops.PanelAccounts(r.Context())
	if err != nil {
		h.internalError(w, "panel accounts", err)
		return
	}
	v := signedInView(s, "Operators")
	v.Operator, v.Message, v.Error = true, msg, problem
	for _, a := range accts {
		if a.Role == stagedoor.RoleOperator {
			v.Accounts = append(v.Accounts, a)
		}
	}
	h.render(w, status, "operators", v)
}

// addOperator is POST /panel/operators (name, password, confirm): a new operator,
// through the same service call (and rule) as `stagedoor operator add`.
func (h *handler) addOperator(w http.ResponseWriter, r *http.Request, s *session) {
	name, pw := strings.TrimSpace(r.PostForm.Get("name")), r.PostForm.Get("password")
	if pw != r.PostForm.Get("confirm") {
		h.renderOperators(w, r, s, http.StatusBadRequest, "", "The two passwords differ; nothing was changed.")
		return
	}
	a, err := h.ops.CreateOperator(r.Context(), h.actor(r, s), name, pw)
	if ie, ok := errors.AsType[*stagedoor.InvalidError](err); ok {
		h.renderOperators(w, r, s, http.StatusBadRequest, "", ie.Error()+"; nothing was changed.")
		return
	}
	if errors.Is(err, stagedoor.ErrConflict) {
		h.renderOperators(w, r, s, http.StatusConflict, "", "That name is taken; nothing was changed.")
		return
	}
	if err != nil {
		h.internalError(w, "create operator", err)
		return
	}
	h.renderOperators(w, r, s, http.StatusOK, "Operator "+a.Name+" created.", "")
}
