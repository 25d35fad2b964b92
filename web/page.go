package web

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/stagedoor/stagedoor"
)

//go:embed templates/*.html
var templateFS embed.FS

// pages is parsed once; html/template escapes every value by context, so a name can
// never become markup, a script or a URL scheme.
var pages = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// page is the data of every template; each page uses the fields it needs.
type page struct {
	Title    string
	HLSJS    bool // load hls.js: a channel page, and hls.js is embedded
	Name     string
	Live     bool
	Since    time.Time
	HLSURL   string
	Status   string
	Channels []liveChannel
}

type liveChannel struct {
	Name  string
	Since time.Time
}

// lookupTimeout bounds each store read, like the status API's.
const lookupTimeout = 2 * time.Second

func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	defer cancel()
	states, err := h.ch.LiveStates(ctx)
	if err != nil {
		h.internalError(w, "live channels", "", err)
		return
	}
	p := page{Title: "Live now · Stagedoor"}
	for _, l := range states {
		p.Channels = append(p.Channels, liveChannel{Name: l.Name, Since: l.Since})
	}
	h.render(w, http.StatusOK, "index", p)
}

func (h *handler) channel(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if stagedoor.ValidUsername(name) != nil {
		h.notFound(w)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	defer cancel()
	c, err := h.ch.ChannelByName(ctx, name)
	if errors.Is(err, stagedoor.ErrNotFound) {
		h.notFound(w)
		return
	}
	if err != nil {
		h.internalError(w, "channel page", name, err)
		return
	}
	p := page{
		Title:  c.Name + " · Stagedoor",
		HLSJS:  h.assets[HLSJS] != nil,
		Name:   c.Name,
		HLSURL: stagedoor.HLSURL(h.hlsBase, c.Name),
		Status: StatusPath + c.Name,
	}
	if c.Live != nil {
		p.Live, p.Since = true, c.Live.Since
	}
	h.render(w, http.StatusOK, "channel", p)
}

func (h *handler) notFound(w http.ResponseWriter) {
	h.render(w, http.StatusNotFound, "notfound", page{Title: "No such channel · Stagedoor"})
}

// internalError logs err once, here at the boundary, and shows the viewer nothing of it.
func (h *handler) internalError(w http.ResponseWriter, what, name string, err error) {
	h.logger.Error(what, "user", name, "err", err)
	h.render(w, http.StatusInternalServerError, "error", page{Title: "Error · Stagedoor"})
}

// render executes a template into a buffer first, so that a failure is a clean 500
// instead of half a page.
func (h *handler) render(w http.ResponseWriter, status int, name string, p page) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, p); err != nil {
		h.logger.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
