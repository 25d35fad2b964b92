package authserver

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/gin-gonic/gin"
)

// Channels is the read-only lookup behind the public status API.
type Channels interface {
	// ChannelByName returns stagedoor.ErrNotFound for a name nobody owns.
	ChannelByName(ctx context.Context, name string) (stagedoor.Channel, error)
}

// ChannelStatus is the public view of a channel. It never carries a key or source id.
type ChannelStatus struct {
	Name      string     `json:"name"`
	Live      bool       `json:"live"`
	LiveSince *time.Time `json:"live_since"`
	HLSURL    string     `json:"hls_url"`
}

// HLSURL returns the public playlist URL of a channel under hlsBase (http://host:8888).
func HLSURL(hlsBase, name string) string {
	return strings.TrimRight(hlsBase, "/") + "/live/" + name + "/index.m3u8"
}

// NewPublicHandler serves the public listener: GET /api/v1/channels/{name}.
func NewPublicHandler(logger *slog.Logger, ch Channels, hlsBase string) http.Handler {
	logger = logger.With("component", "public")
	r := newEngine(logger)
	r.GET("/api/v1/channels/:name", func(c *gin.Context) {
		name := c.Param("name")
		notFound := gin.H{"error": "no such channel"}
		if stagedoor.ValidUsername(name) != nil {
			c.JSON(http.StatusNotFound, notFound)
			return
		}
		ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		defer cancel()
		u, err := ch.ChannelByName(ctx, name)
		if errors.Is(err, stagedoor.ErrNotFound) {
			c.JSON(http.StatusNotFound, notFound)
			return
		}
		if err != nil {
			logger.Error("channel status", "user", name, "err", err)
			c.JSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
			return
		}
		st := ChannelStatus{Name: u.Name, HLSURL: HLSURL(hlsBase, u.Name)}
		if u.Live != nil {
			st.Live = true
			since := u.Live.Since
			st.LiveSince = &since
		}
		c.JSON(http.StatusOK, st)
	})
	return r
}

// Pinger is what the health check needs.
type Pinger interface {
	Ping(ctx context.Context) error
}

// HealthHandler answers GET /healthz: 200 when the database answers within 2 s, else 503.
func HealthHandler(p Pinger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		if err := p.Ping(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"unhealthy"}` + "\n"))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
}
