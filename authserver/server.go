// Package authserver answers MediaMTX's external HTTP auth (authMethod: http): it decodes
// MediaMTX's JSON body strictly, asks the policy, and maps the verdict to a status
// (204 allow, 401 deny, 503 busy, 500 fault). Nothing else lives here.
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
	"github.com/stagedoor/stagedoor/policy"
)

// MaxBodyBytes caps an auth body; real MediaMTX bodies are under 2 KiB.
const MaxBodyBytes = 64 << 10

// DenyBody is the one body of every denial, whatever the reason: MediaMTX logs it.
const DenyBody = "denied"

// Decider is the policy: policy.Policy.Decide.
type Decider interface {
	Decide(ctx context.Context, a policy.Attempt) policy.Verdict
}

// Options configure NewHandler.
type Options struct {
	// OnDecision, if set, is called after every decision with its duration (metrics,
	// audit). It must not block.
	OnDecision func(policy.Attempt, policy.Verdict, time.Duration)
	// Note, if set, returns a note for a decision's log line (field "note"), "" for
	// none. Stagedoor explains its own expected denials with it; it must recognize them
	// by something a client cannot forge.
	Note func(policy.Attempt) string
}

type handler struct {
	logger *slog.Logger
	policy Decider
	opts   Options
}

// NewHandler returns the gin engine serving POST /mediamtx/auth. Every path through it
// denies unless the policy explicitly allows.
func NewHandler(logger *slog.Logger, pol Decider, opts Options) http.Handler {
	h := &handler{logger: logger.With("component", "authserver"), policy: pol, opts: opts}
	r := newEngine(h.logger)
	r.POST("/mediamtx/auth", denyUnlessWritten, h.auth)
	return r
}

// newEngine is gin without gin.Default: release mode, no trusted proxies, and a recovery
// that answers a panic with a deny.
func newEngine(logger *slog.Logger) *gin.Engine {

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
	req, v, status := h.evaluate(c)
	h.log(req, v)
	if h.opts.OnDecision != nil {
		h.opts.OnDecision(req.Attempt(), v, time.Since(start))
	}
	if v.Allow {
		c.Status(http.StatusNoContent) // the only 2xx in this package
		c.Writer.WriteHeaderNow()
		return
	}
	c.String(status, DenyBody)
}

// Status maps a refusing verdict to the status MediaMTX gets: 503 when busy (it says
// nothing about the credentials), 500 on a fault, 401 otherwise. MediaMTX treats every
// non-2xx as a refusal; the status only tells logs and operators why.
func Status(v policy.Verdict) int {
	switch {
	case v.Allow:
		return http.StatusNoContent
	case v.Busy:
		return http.StatusServiceUnavailable
	case v.Fault:
		return http.StatusInternalServerError
	}
	return http.StatusUnauthorized
}

// evaluate returns the request, the verdict and the status of a refusal.
func (h *handler) evaluate(c *gin.Context) (Request, policy.Verdict, int) {
	refuse := func(status int, reason string) (Request, policy.Verdict, int) {
		return Request{}, policy.Verdict{Reason: reason}, status
	}
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != "application/json" {
		return refuse(http.StatusUnsupportedMediaType, "content type")
	}
	buf := getBodyBuffer()
	defer putBodyBuffer(buf)
	body, err := readBody(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes), buf)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return refuse(http.StatusRequestEntityTooLarge, "body too large")
		}
		return refuse(http.StatusBadRequest, "read body")
	}
	req, err := DecodeRequest(body)
	if err != nil {
		return refuse(http.StatusBadRequest, "malformed body")
	}
	v := h.policy.Decide(c.Request.Context(), req.Attempt())
	return req, v, Status(v)
}

// bodyBuffers hold auth bodies while they are decoded (DecodeRequest copies what it
// keeps): a flood of oversized bodies then costs no garbage, and so no heap growth. A
// fixed free list, not a sync.Pool, so that a collection never empties it: at most
// cap × 64 KiB stay allocated, and callers beyond cap at once allocate their own.
var bodyBuffers = make(chan []byte, 8)

func getBodyBuffer() []byte {
	select {
	case b := <-bodyBuffers:
		return b
	default:
		return make([]byte, MaxBodyBytes+1)
	}
}

func putBodyBuffer(b []byte) {
	select {
	case bodyBuffers <- b:
	default:
	}
}

// readBody reads r to its end into buf. r is a MaxBytesReader for fewer bytes than buf
// holds, so it fails before buf is full.
func readBody(r io.Reader, buf []byte) ([]byte, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			return buf[:n], nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, errors.New("auth body fills its buffer")
}

// log writes allowlisted fields only: never password, token, query or a raw path.
func (h *handler) log(req Request, v policy.Verdict) {
	level := slog.LevelInfo
	switch {
	case v.Allow && (v.Reason == policy.ReasonAdmin || v.Reason == policy.ReasonRelay || v.Reason == policy.ReasonPeer):
		level = slog.LevelDebug // Stagedoor's own calls (and its peers'), several every reconcile
	case v.Busy || v.Fault:
		level = slog.LevelError
	}
	logger := h.logger
	if h.opts.Note != nil {
		if note := h.opts.Note(req.Attempt()); note != "" {
			logger = logger.With(slog.String("note", note)) // rare: no cost on other lines
		}
	}
	logger.LogAttrs(context.Background(), level, "auth",
		slog.String("action", req.Action),
		slog.String("protocol", req.Protocol),
		slog.String("ip", req.IP),
		slog.String("path_kind", v.PathKind),
		slog.String("user", v.User),
		slog.Bool("allow", v.Allow),
		slog.String("reason", v.Reason),
		slog.String("key_fp", v.KeyFP),
		slog.String("user_agent", req.UserAgent),
	)
}
