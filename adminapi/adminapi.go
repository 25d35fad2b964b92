// Package adminapi is Stagedoor's admin HTTP API on the public listener: users, keys,
// streams, ban/unban, audit and live channels, mirroring the CLI. Every request needs the
// admin bearer token; a wrong or missing token gets 401 and changes nothing.
package adminapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/gin-gonic/gin"
)

// Store is everything the admin API reads and changes.
type Store interface {
	CreateUser(ctx context.Context, name string) (stagedoor.NewUser, error)
	Users(ctx context.Context) ([]stagedoor.User, error)
	UserByName(ctx context.Context, name string) (stagedoor.User, error)
	SetActive(ctx context.Context, name string, active bool) error
	SetPasswordHash(ctx context.Context, name, hash string) error
	AddKey(ctx context.Context, name, label string) (stagedoor.IssuedKey, error)
	Keys(ctx context.Context, name string) ([]stagedoor.KeyInfo, error)
	RevokeKey(ctx context.Context, name, fingerprint string, r stagedoor.Revocation) error
	ResetKeysWith(ctx context.Context, name string, r stagedoor.Revocation) (stagedoor.IssuedKey, error)
	ResetAllKeys(ctx context.Context, r stagedoor.Revocation) ([]stagedoor.IssuedKey, error)
	CreateStream(ctx context.Context, name, owner string, authRequired bool) (stagedoor.Stream, error)
	Streams(ctx context.Context, owner string) ([]stagedoor.Stream, error)
	DeleteStream(ctx context.Context, name string) error
	Audit(ctx context.Context, f stagedoor.AuditFilter) ([]stagedoor.AuditEntry, error)
	LiveStates(ctx context.Context) ([]stagedoor.LiveState, error)
}

// Options configure the API.
type Options struct {
	// Token is the bearer token. Empty: every request is refused (API disabled).
	Token string
	// RTMPURL and HLSURL are printed with new keys, as the CLI does.
	RTMPURL, HLSURL string
	// OnChange is called after a change that may revoke a credential (ban, key
	// revocation), so that live streams are kicked at once.
	OnChange func()
	// OnAudit records admin changes in the audit trail.
	OnAudit func(stagedoor.AuditEntry)
}

type api struct {
	st   Store
	opts Options
	log  *slog.Logger
}

// Register mounts the API under /api/v1/admin on r.
func Register(r gin.IRouter, logger *slog.Logger, st Store, opts Options) {
	a := &api{st: st, opts: opts, log: logger.With("component", "adminapi")}
	g := r.Group("/api/v1/admin", a.auth)
	g.GET("/users", a.listUsers)
	g.POST("/users", a.createUser)
	g.GET("/users/:name", a.getUser)
	g.POST("/users/:name/ban", a.setActive(false))
	g.POST("/users/:name/unban", a.setActive(true))
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

func (a *api) changed(c *gin.Context, what, user string) {
	if a.opts.OnAudit != nil {
		a.opts.OnAudit(stagedoor.AuditEntry{At: time.Now(), Kind: "admin", User: user, IP: c.ClientIP(), Decision: "ok", Reason: what})
	}
	if a.opts.OnChange != nil {
		a.opts.OnChange()
	}
}

type userView struct {
	Name        string     `json:"name"`
	Active      bool       `json:"active"`
	HasPassword bool       `json:"has_password"`
	Live        bool       `json:"live"`
	LiveSince   *time.Time `json:"live_since"`
	CreatedAt   time.Time  `json:"created_at"`
	HLSURL      string     `json:"hls_url"`
}

func (a *api) hls(name string) string {
	return strings.TrimRight(a.opts.HLSURL, "/") + "/live/" + name + "/index.m3u8"
}

func (a *api) view(u stagedoor.User) userView {
	v := userView{Name: u.Name, Active: u.Active, HasPassword: u.HasPassword, CreatedAt: u.CreatedAt, HLSURL: a.hls(u.Name)}
	if u.Live != nil {
		v.Live, v.LiveSince = true, &u.Live.Since
	}
	return v
}

func (a *api) listUsers(c *gin.Context) {
	us, err := a.st.Users(c.Request.Context())
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
	nu, err := a.st.CreateUser(c.Request.Context(), in.Name)
	if err != nil {
		a.fail(c, err)
		return
	}
	a.changed(c, "user created", nu.Name)
	c.JSON(http.StatusCreated, gin.H{"name": nu.Name, "stream_key": nu.StreamKey, "fingerprint": nu.Fingerprint,
		"server_url": a.opts.RTMPURL, "hls_url": a.hls(nu.Name)})
}

func (a *api) getUser(c *gin.Context) {
	u, err := a.st.UserByName(c.Request.Context(), c.Param("name"))
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, a.view(u))
}

func (a *api) setActive(active bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		name := c.Param("name")
		if err := a.st.SetActive(c.Request.Context(), name, active); err != nil {
			a.fail(c, err)
			return
		}
		what := "user banned"
		if active {
			what = "user unbanned"
		}
		a.changed(c, what, name)
		c.JSON(http.StatusOK, gin.H{"name": name, "active": active})
	}
}

func (a *api) setPassword(c *gin.Context) {
	var in struct {
		Password string `json:"password"`
		Cost     int    `json:"cost"`
	}
	if !bind(c, &in) {
		return
	}
	if in.Cost == 0 {
		in.Cost = stagedoor.DefaultCost
	}
	if _, err := a.st.UserByName(c.Request.Context(), c.Param("name")); err != nil {
		a.fail(c, err) // before bcrypt: an unknown user costs nothing
		return
	}
	hash, err := stagedoor.HashPassword(in.Password, in.Cost)
	if err != nil {
		a.fail(c, err)
		return
	}
	name := c.Param("name")
	if err := a.st.SetPasswordHash(c.Request.Context(), name, hash); err != nil {
		a.fail(c, err)
		return
	}
	a.changed(c, "password set", name)
	c.JSON(http.StatusOK, gin.H{"name": name, "password_hash": hash})
}

type keyView struct {
	Fingerprint string     `json:"fingerprint"`
	Label       string     `json:"label"`
	CreatedAt   time.Time  `json:"created_at"`
	LastUsedAt  *time.Time `json:"last_used_at"`
}

func (a *api) listKeys(c *gin.Context) {
	ks, err := a.st.Keys(c.Request.Context(), c.Param("name"))
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
	k, err := a.st.AddKey(c.Request.Context(), c.Param("name"), in.Label)
	if err != nil {
		a.fail(c, err)
		return
	}
	a.changed(c, "key added "+k.Fingerprint, k.UserName)
	c.JSON(http.StatusCreated, gin.H{"stream_key": k.StreamKey, "fingerprint": k.Fingerprint, "label": k.Label})
}

func keepLive(c *gin.Context) stagedoor.Revocation {
	return stagedoor.Revocation{KeepLive: c.Query("keep_live") == "true"}
}

func (a *api) revokeKey(c *gin.Context) {
	name, fp := c.Param("name"), c.Param("fp")
	if err := a.st.RevokeKey(c.Request.Context(), name, fp, keepLive(c)); err != nil {
		a.fail(c, err)
		return
	}
	a.changed(c, "key revoked "+fp, name)
	c.JSON(http.StatusOK, gin.H{"name": name, "fingerprint": fp, "revoked": true})
}

func (a *api) resetKeys(c *gin.Context) {
	k, err := a.st.ResetKeysWith(c.Request.Context(), c.Param("name"), keepLive(c))
	if err != nil {
		a.fail(c, err)
		return
	}
	a.changed(c, "keys reset", k.UserName)
	c.JSON(http.StatusOK, gin.H{"name": k.UserName, "stream_key": k.StreamKey, "fingerprint": k.Fingerprint, "label": k.Label})
}

func (a *api) resetAll(c *gin.Context) {
	ks, err := a.st.ResetAllKeys(c.Request.Context(), keepLive(c))
	if err != nil {
		a.fail(c, err)
		return
	}
	a.changed(c, "all keys reset", "")
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
	ss, err := a.st.Streams(c.Request.Context(), c.Query("user"))
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
	s, err := a.st.CreateStream(c.Request.Context(), in.Name, in.User, !in.NoAuth)
	if err != nil {
		a.fail(c, err)
		return
	}
	a.changed(c, "stream created "+s.Name, s.UserName)
	c.JSON(http.StatusCreated, streamView{Name: s.Name, User: s.UserName, AuthRequired: s.AuthRequired, HLSURL: a.hls(s.Name)})
}

func (a *api) deleteStream(c *gin.Context) {
	name := c.Param("name")
	if err := a.st.DeleteStream(c.Request.Context(), name); err != nil {
		a.fail(c, err)
		return
	}
	a.changed(c, "stream removed "+name, "")
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
	es, err := a.st.Audit(c.Request.Context(), f)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, es)
}

func (a *api) live(c *gin.Context) {
	ls, err := a.st.LiveStates(c.Request.Context())
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

// NewHandler returns a gin engine serving only the admin API.
func NewHandler(logger *slog.Logger, st Store, opts Options) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	_ = r.SetTrustedProxies(nil)
	r.Use(gin.CustomRecovery(func(c *gin.Context, _ any) {
		c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": "internal error"})
	}))
	Register(r, logger, st, opts)
	return r
}
