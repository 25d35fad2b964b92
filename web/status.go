package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/stagedoor/stagedoor"
)

// ChannelStatus is the public view of a channel. It never carries a key or source id.
type ChannelStatus struct {
	Name      string     `json:"name"`
	Live      bool       `json:"live"`
	LiveSince *time.Time `json:"live_since"`
	HLSURL    string     `json:"hls_url"`
}

// StatusPath is where the public status API answers GET StatusPath+NAME; the channel
// pages poll it.
const StatusPath = "/api/v1/channels/"

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// status serves GET /api/v1/channels/{name}: 404 for a name nobody owns.
func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	notFound := map[string]string{"error": "no such channel"}
	if stagedoor.ValidUsername(name) != nil {
		writeJSON(w, http.StatusNotFound, notFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	c, err := h.ch.ChannelByName(ctx, name)
	if errors.Is(err, stagedoor.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, notFound)
		return
	}
	if err != nil {
		h.logger.Error("channel status", "user", name, "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
		return
	}
	st := ChannelStatus{Name: c.Name, HLSURL: stagedoor.HLSURL(h.hlsBase, c.Name)}
	if c.Live != nil {
		since := c.Live.Since
		st.Live, st.LiveSince = true, &since
	}
	writeJSON(w, http.StatusOK, st)
}
