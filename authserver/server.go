// Package authserver answers MediaMTX's external HTTP auth (authMethod: http) and
// serves Stagedoor's public status API.
package authserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// MaxBodyBytes caps an auth body; real MediaMTX bodies are under 2 KiB.
const MaxBodyBytes = 64 << 10

// DenyBody is the one body of every denial, whatever the reason: MediaMTX logs it.
const DenyBody = "denied"

// Options configure NewHandler.
type Options struct {
	// Policy is the auth policy.
	Policy Policy
	// Timeout bounds every decision, database waits included. Default 2 s.
	Timeout time.Duration
	// OnDecision, if set, is called after every decision with its duration (metrics,
	// audit). It must not block.
	OnDecision func(Request, Decision, time.Duration)
	// Healthy, if set, is asked before every decision; while it returns an error every
	// request is denied with 503 (see Health).
	Healthy func() error
}

type handler struct {
	logger *slog.Logger
	creds  Credentials
	opts   Options
}

// NewHandler returns the gin engine serving POST /mediamtx/auth. Every path through it
// denies unless the policy explicitly allows.
func NewHandler(logger *slog.Logger, creds Credentials, opts Options) http.Handler {
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	h := &handler{logger: logger.With("component", "authserver"), creds: creds, opts: opts}
	r := newEngine(h.logger)
	r.POST("/mediamtx/auth", denyUnlessWritten, h.auth)
	return r
}

// newEngine is gin without gin.Default: release mode, no trusted proxies, and a recovery
// that answers a panic with a deny.
func newEngine(logger *slog.Logger) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	_ = r.SetTrustedProxies(nil)
	r.Use(func(c *gin.Context) {
		defer func() {
			if v := recover(); v != nil {
				logger.Error("panic in handler", "route", c.FullPath())
				c.Abort()
				if !c.Writer.Written() {
					c.String(http.StatusInternalServerError, DenyBody)
				}
			}
		}()
		c.Next()
	})
	return r
}

// denyUnlessWritten guards against fail-open by omission: a handler that returns without
// writing would answer 200, which MediaMTX reads as allow. The one allow site writes
// its status explicitly; anything else unwritten becomes a deny.
func denyUnlessWritten(c *gin.Context) {
	c.Next()
	if !c.Writer.Written() {
		c.String(http.StatusUnauthorized, DenyBody)
	}
}

func (h *handler) auth(c *gin.Context) {
	start := time.Now()
	req, d := h.evaluate(c)
	h.log(req, d)
	if h.opts.OnDecision != nil {
		h.opts.OnDecision(req, d, time.Since(start))
	}
	if d.Allow {
		c.Status(http.StatusNoContent) // the only 2xx in this package
		c.Writer.WriteHeaderNow()
		return
	}
	c.String(d.Status, DenyBody)
}

func (h *handler) evaluate(c *gin.Context) (Request, Decision) {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != "application/json" {
		return Request{}, deny(http.StatusUnsupportedMediaType, "content type")
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return Request{}, deny(http.StatusRequestEntityTooLarge, "body too large")
		}
		return Request{}, deny(http.StatusBadRequest, "read body")
	}
	req, err := DecodeRequest(body)
	if err != nil {
		return Request{}, deny(http.StatusBadRequest, "malformed body")
	}
	if h.opts.Healthy != nil && h.opts.Healthy() != nil {
		return req, deny(http.StatusServiceUnavailable, reasonUnhealthy)
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), h.opts.Timeout)
	defer cancel()
	return req, Decide(ctx, req, h.creds, h.opts.Policy)
}

// log writes allowlisted fields only: never password, token, query or a raw path.
func (h *handler) log(req Request, d Decision) {
	level := slog.LevelInfo
	switch {
	case d.Allow && (d.Reason == reasonAdmin || d.Reason == reasonRelay):
		level = slog.LevelDebug // Stagedoor's own calls, several every reconcile
	case d.Status >= 500:
		level = slog.LevelError
	}
	h.logger.LogAttrs(context.Background(), level, "auth",
		slog.String("action", req.Action),
		slog.String("protocol", req.Protocol),
		slog.String("ip", req.IP),
		slog.String("path_kind", d.PathKind),
		slog.String("user", d.User),
		slog.Bool("allow", d.Allow),
		slog.String("reason", d.Reason),
		slog.String("key_fp", d.KeyFP),
		slog.String("user_agent", req.UserAgent),
	)
}
