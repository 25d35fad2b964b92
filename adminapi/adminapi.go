// Package adminapi is Stagedoor's admin HTTP API on the public listener: users, keys,
// streams, ban/unban, audit and live channels, mirroring the CLI. Every request needs the
// admin bearer token; a wrong or missing token gets 401 and changes nothing.
package adminapi

import (
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/manage"

	"github.com/gin-gonic/gin"
)

// Options configure the API.
type Options struct {
	// Token is the bearer token. Empty: every request is refused (API disabled).
	Token string
}

type api struct {
	ops  *manage.Service
	opts Options
	log  *slog.Logger
}

// Register mounts the API under /api/v1/admin on r.
// Every change goes through ops, which audits it and signals it.
func Register(r gin.IRouter, logger *slog.Logger, ops *manage.Service, opts Options) {
	a := &api{ops: ops, opts: opts, log: logger.With("component", "adminapi")}
	g := r.Group("/api/v1/admin", a.auth)
	g.GET("/users", a.listUsers)
	g.POST("/users", a.createUser)
	g.GET("/users/:name", a.getUser)
	g.POST("/users/:name/ban", a.setActive(false))
	g.POST("/users/:name/unban", a.setActive(true))
	g.POST("/users/:name/kick", a.kick)
	g.PUT("/users/:name/password", a.setPassword)
	g.GET("/users/:name/keys", a.listKeys)
	g.POST("/users/:name/keys", a.addKey)
	g.DELETE("/users/:name/keys/:fp", a.revokeKey)
	g.POST("/users/:name/keys/reset", a.resetKeys)
	g.POST("/keys/reset-all", a.resetAll)
	g.GET("/streams", a.listStreams)
	g.POST("/streams", a.createStream)
	g.DELETE("/streams/:name", a.deleteStream)
	g.GET("/audit", a.audit)
	g.GET("/live", a.live)
}

func (a *api) auth(c *gin.Context) {
	tok, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if a.opts.Token == "" || !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(a.opts.Token)) != 1 {
		c.Header("WWW-Authenticate", `Bearer realm="stagedoor"`)
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "unauthorized"})
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Next()
}

// fail answers an error: expected outcomes with their status, anything else 500 with a
// generic message (details only in our log).
func (a *api) fail(c *gin.Context, err error) {
	if ie, ok := errors.AsType[*stagedoor.InvalidError](err); ok {
		c.JSON(http.StatusBadRequest, gin.H{"error": ie.Error()})
		return
	}
	switch {
	case errors.Is(err, stagedoor.ErrNotFound):
		c.JSON(http.StatusNotFound, gin.H{"error": "not found"})
	case errors.Is(err, stagedoor.ErrConflict):
		c.JSON(http.StatusConflict, gin.H{"error": "already exists"})
	default:
		a.log.Error("admin request failed", "route", c.FullPath(), "err", err)
		c.JSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
	}
}

// bind decodes a JSON body of at most 64 KiB into v; an empty body leaves v as is.
func bind(c *gin.Context, v any) bool {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10)
	if c.Request.ContentLength == 0 {
		return true
	}
	if err := c.ShouldBindJSON(v); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": "malformed JSON body"})
		return false
	}
	return true
}

// actor is the caller, for the audit trail.
func actor(c *gin.Context) manage.Actor { return manage.Actor{Via: manage.ViaAPI, IP: c.ClientIP()} }

type userView struct {
	Name        string     `json:"name"`
	Active      bool       `json:"active"`
	HasPassword bool       `json:"has_password"`
	Live        bool       `json:"live"`
	LiveSince   *time.Time `json:"live_since"`
	CreatedAt   time.Time  `json:"created_at"`
	HLSURL      string     `json:"hls_url"`
}

func (a *api) hls(name string) string { return a.ops.URLs.HLSFor(name) }

func (a *api) view(u stagedoor.User) userView {
	v := userView{Name: u.Name, Active: u.Active, HasPassword: u.HasPassword, CreatedAt: u.CreatedAt, HLSURL: a.hls(u.Name)}
	if u.Live != nil {
		v.Live, v.LiveSince = true, &u.Live.Since
	}
	return v
}

func (a *api) listUsers(c *gin.Context) {
	us, err := a.ops.Users(c.Request.Context())
	if err != nil {
		a.fail(c, err)
		return
	}
	out := make([]userView, 0, len(us))
	for _, u := range us {
		out = append(out, a.view(u))
	}
	c.JSON(http.StatusOK, out)
}

func (a *api) createUser(c *gin.Context) {
	var in struct {
		Name string `json:"name"`
	}
	if !bind(c, &in) {
		return
	}
	nu, err := a.ops.CreateUser(c.Request.Context(), actor(c), in.Name)
	if err != nil {
		a.fail(c, err)
		return
	}
	out := gin.H{"name": nu.Name, "stream_key": nu.StreamKey, "fingerprint": nu.Fingerprint,
		"server_url": a.ops.URLs.RTMP, "hls_url": a.hls(nu.Name)}
	if a.ops.URLs.RTMPS != "" {
		out["rtmps_server_url"] = a.ops.URLs.RTMPS
	}
	c.JSON(http.StatusCreated, out)
}

func (a *api) getUser(c *gin.Context) {
	u, err := a.ops.User(c.Request.Context(), c.Param("name"))
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, a.view(u))
}

func (a *api) setActive(active bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		name := c.Param("name")
		if err := a.ops.SetActive(c.Request.Context(), actor(c), name, active); err != nil {
			a.fail(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"name": name, "active": active})
	}
}

// kick disconnects the publisher live on the name now: {"name", "kicked": was one live}.
func (a *api) kick(c *gin.Context) {
	name := c.Param("name")
	was, err := a.ops.Kick(c.Request.Context(), actor(c), name)
	if errors.Is(err, manage.ErrNoService) {
		c.JSON(http.StatusServiceUnavailable, gin.H{"error": "kicking needs the running service"})
		return
	}
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"name": name, "kicked": was})
}

func (a *api) setPassword(c *gin.Context) {
	var in struct {
		Password string `json:"password"`
		Cost     int    `json:"cost"`
	}
	if !bind(c, &in) {
		return
	}
	name := c.Param("name")
	hash, err := a.ops.SetPassword(c.Request.Context(), actor(c), name, in.Password, in.Cost)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"name": name, "password_hash": hash})
}

type keyView struct {
	Fingerprint string     `json:"fingerprint"`
	Label       string     `json:"label"`
	CreatedAt   time.Time  `json:"created_at"`
	LastUsedAt  *time.Time `json:"last_used_at"`
}

func (a *api) listKeys(c *gin.Context) {
	ks, err := a.ops.Keys(c.Request.Context(), c.Param("name"))
	if err != nil {
		a.fail(c, err)
		return
	}
	out := make([]keyView, 0, len(ks))
	for _, k := range ks {
		out = append(out, keyView{Fingerprint: k.Fingerprint, Label: k.Label, CreatedAt: k.CreatedAt, LastUsedAt: k.LastUsedAt})
	}
	c.JSON(http.StatusOK, out)
}

func (a *api) addKey(c *gin.Context) {
	var in struct {
		Label string `json:"label"`
	}
	if !bind(c, &in) {
		return
	}
	k, err := a.ops.AddKey(c.Request.Context(), actor(c), c.Param("name"), in.Label)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"stream_key": k.StreamKey, "fingerprint": k.Fingerprint, "label": k.Label})
}

func keepLive(c *gin.Context) stagedoor.Revocation {
	return stagedoor.Revocation{KeepLive: c.Query("keep_live") == "true"}
}

func (a *api) revokeKey(c *gin.Context) {
	name, fp := c.Param("name"), c.Param("fp")
	if err := a.ops.RevokeKey(c.Request.Context(), actor(c), name, fp, keepLive(c)); err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"name": name, "fingerprint": fp, "revoked": true})
}

func (a *api) resetKeys(c *gin.Context) {
	k, err := a.ops.ResetKeys(c.Request.Context(), actor(c), c.Param("name"), keepLive(c))
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"name": k.UserName, "stream_key": k.StreamKey, "fingerprint": k.Fingerprint, "label": k.Label})
}

func (a *api) resetAll(c *gin.Context) {
	ks, err := a.ops.ResetAllKeys(c.Request.Context(), actor(c), keepLive(c))
	if err != nil {
		a.fail(c, err)
		return
	}
	out := make([]gin.H, 0, len(ks))
	for _, k := range ks {
		out = append(out, gin.H{"name": k.UserName, "stream_key": k.StreamKey, "fingerprint": k.Fingerprint})
	}
	c.JSON(http.StatusOK, out)
}

type streamView struct {
	Name         string `json:"name"`
	User         string `json:"user"`
	AuthRequired bool   `json:"auth_required"`
	Live         bool   `json:"live"`
	HLSURL       string `json:"hls_url"`
}

func (a *api) listStreams(c *gin.Context) {
	ss, err := a.ops.Streams(c.Request.Context(), c.Query("user"))
	if err != nil {
		a.fail(c, err)
		return
	}
	out := make([]streamView, 0, len(ss))
	for _, s := range ss {
		out = append(out, streamView{Name: s.Name, User: s.UserName, AuthRequired: s.AuthRequired, Live: s.Live != nil, HLSURL: a.hls(s.Name)})
	}
	c.JSON(http.StatusOK, out)
}

func (a *api) createStream(c *gin.Context) {
	var in struct {
		Name   string `json:"name"`
		User   string `json:"user"`
		NoAuth bool   `json:"no_auth"`
	}
	if !bind(c, &in) {
		return
	}
	s, err := a.ops.CreateStream(c.Request.Context(), actor(c), in.Name, in.User, !in.NoAuth)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, streamView{Name: s.Name, User: s.UserName, AuthRequired: s.AuthRequired, HLSURL: a.hls(s.Name)})
}

func (a *api) deleteStream(c *gin.Context) {
	name := c.Param("name")
	if err := a.ops.DeleteStream(c.Request.Context(), actor(c), name); err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"name": name, "removed": true})
}

func (a *api) audit(c *gin.Context) {
	f := stagedoor.AuditFilter{User: c.Query("user")}
	if s := c.Query("since"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			c.JSON(http.StatusBadRequest, gin.H{"error": "since must be a duration like 1h"})
			return
		}
		f.Since = time.Now().Add(-d)
	}
	es, err := a.ops.Audit(c.Request.Context(), f)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, es)
}

func (a *api) live(c *gin.Context) {
	ls, err := a.ops.Live(c.Request.Context())
	if err != nil {
		a.fail(c, err)
		return
	}
	out := make([]gin.H, 0, len(ls))
	for _, l := range ls {
		out = append(out, gin.H{"name": l.Name, "user": l.UserName, "live_since": l.Since, "protocol": l.SourceType, "hls_url": a.hls(l.Name)})
	}
	c.JSON(http.StatusOK, out)
}

// NewHandler returns a gin engine serving only the admin API, for the public router to
// mount under /api/v1/admin/.
func NewHandler(logger *slog.Logger, ops *manage.Service, opts Options) http.Handler {
	r := gin.New()
	_ = r.SetTrustedProxies(nil)
	r.Use(gin.CustomRecovery(func(c *gin.Context, _ any) {
		c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
	}))
	Register(r, logger, ops, opts)
	return r
}
