package panel

import (
	"net/http"
	"strings"

	"github.com/stagedoor/stagedoor"
)

// createChannel is POST /panel/channels (name, nonce): the new channel's first key is
// shown once, like a key added.
func (h *handler) createChannel(w http.ResponseWriter, r *http.Request, s *session) {
	if !h.spend(s, r.PostForm.Get("nonce")) {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	nu, err := h.ops.CreateUser(r.Context(), actor(r, s), strings.TrimSpace(r.PostForm.Get("name")))
	if h.actionError(w, err, "create channel") {
		return
	}
	h.showKey(w, r, s, stagedoor.IssuedKey{UserName: nu.Name, StreamKey: nu.StreamKey, Fingerprint: nu.Fingerprint, Label: "default"})
}

// ban is POST /panel/channels/{name}/ban: new publishes are refused, live streams kicked
// and the streamer's panel sessions end.
func (h *handler) ban(w http.ResponseWriter, r *http.Request, s *session) {
	h.setActive(w, r, s, false)
}

// unban is POST /panel/channels/{name}/unban.
func (h *handler) unban(w http.ResponseWriter, r *http.Request, s *session) {
	h.setActive(w, r, s, true)
}

func (h *handler) setActive(w http.ResponseWriter, r *http.Request, s *session, active bool) {
	name := r.PathValue("name")
	if h.actionError(w, h.ops.SetActive(r.Context(), actor(r, s), name, active), "set active") {
		return
	}
	afterChange(w, r, name)
}

// invite is POST /panel/channels/{name}/invite: the single-use link is shown once.
func (h *handler) invite(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	token, _, err := h.ops.Invite(r.Context(), actor(r, s), name)
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
		if r.TLS != nil {
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
	ks, err := h.ops.ResetAllKeys(r.Context(), actor(r, s), stagedoor.Revocation{KeepLive: r.PostForm.Get("keep_live") == "1"})
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
