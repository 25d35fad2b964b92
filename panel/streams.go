package panel

import (
	"errors"
	"net/http"
	"strings"

	"github.com/stagedoor/stagedoor"
)

// streamRow is a ScaleEngine stream as the channel page lists it: by construction it has
// no field for the owner's password hash, so no template can render one by mistake.
type streamRow struct {
	Name         string
	AuthRequired bool
	Live         bool
}

// passwordPlaceholder stands in for the secret in encoder URLs shown without the hash.
const passwordPlaceholder = "<password>"

// channelStreams lists the channel's streams without their hashes.
func (h *handler) channelStreams(r *http.Request, name string) ([]streamRow, []stagedoor.Stream, error) {
	ss, err := h.ops.Streams(r.Context(), name)
	if err != nil {
		return nil, nil, err
	}
	rows := make([]streamRow, 0, len(ss))
	for _, s := range ss {
		rows = append(rows, streamRow{Name: s.Name, AuthRequired: s.AuthRequired, Live: s.Live != nil})
	}
	return rows, ss, nil
}

// addStream is POST /panel/channels/{name}/streams (stream, auth, nonce): a new stream
// name of the channel, authenticated unless auth is "off". The answer shows its encoder
// URLs with a placeholder for the password (never the hash: that is shown only when a
// password is set).
func (h *handler) addStream(w http.ResponseWriter, r *http.Request, s *session, name string) {
	if !h.spend(s, r.PostForm.Get("nonce")) {
		afterChange(w, r, name)
		return
	}
	st, err := h.ops.CreateStream(r.Context(), h.actor(r, s), strings.TrimSpace(r.PostForm.Get("stream")), name,
		r.PostForm.Get("auth") != "off")
	if h.actionError(w, err, "create stream") {
		return
	}
	v, ok := h.channelView(w, r, s, name)
	if !ok {
		return
	}
	v.Message = "Stream " + st.Name + " created."
	v.Forms = []stagedoor.EncoderForms{h.opts.URLs.Forms(st.Name, st.UserName, passwordPlaceholder, st.AuthRequired)}
	h.render(w, http.StatusOK, "channel", v)
}

// setPublishPassword is POST /panel/channels/{name}/publish-password (password, confirm,
// nonce): the channel's publish password for its ScaleEngine streams, set through the
// same manage call as `stagedoor user passwd`. The answer shows the bcrypt hash and every
// encoder URL form built on it, once; the password itself is never rendered, in this
// answer or an error.
func (h *handler) setPublishPassword(w http.ResponseWriter, r *http.Request, s *session, name string) {
	pw := r.PostForm.Get("password")
	if pw != r.PostForm.Get("confirm") {
		h.render(w, http.StatusBadRequest, "message", view{Title: "Not accepted", Message: "The two passwords differ; nothing was changed."})
		return
	}
	nonce := r.PostForm.Get("nonce")
	if !h.spend(s, nonce) {
		afterChange(w, r, name) // a reload re-posts the form: no second change, no hash
		return
	}
	hash, err := h.ops.SetPassword(r.Context(), h.actor(r, s), name, pw, 0)
	if _, ok := errors.AsType[*stagedoor.InvalidError](err); ok {
		// Refused by the password rule (the error names the field and the rule, never the
		// value): nothing changed, so the corrected form may be sent again.
		h.release(s, nonce)
	}
	if h.actionError(w, err, "set publish password") {
		return
	}
	v, ok := h.channelView(w, r, s, name)
	if !ok {
		return
	}
	v.NewHash = hash
	for _, st := range v.Streams {
		if st.AuthRequired {
			v.Forms = append(v.Forms, h.opts.URLs.Forms(st.Name, name, hash, true))
		}
	}
	h.render(w, http.StatusOK, "channel", v)
}

// setStreamAuth is POST /panel/channels/{name}/streams/auth (stream, auth "on" or "off").
// The stream must be the channel's: another channel's stream is 404, like its page.
func (h *handler) setStreamAuth(w http.ResponseWriter, r *http.Request, s *session, name string) {
	stream := r.PostForm.Get("stream")
	on := r.PostForm.Get("auth")
	if on != "on" && on != "off" {
		h.render(w, http.StatusBadRequest, "message", view{Title: "Not accepted", Message: "auth must be on or off; nothing was changed."})
		return
	}
	_, ss, err := h.channelStreams(r, name)
	if h.actionError(w, err, "list streams") {
		return
	}
	owned := false
	for _, st := range ss {
		owned = owned || st.Name == stream
	}
	if !owned {
		h.notFound(w)
		return
	}
	if h.actionError(w, h.ops.SetStreamAuth(r.Context(), h.actor(r, s), stream, on == "on"), "set stream auth") {
		return
	}
	afterChange(w, r, name)
}
