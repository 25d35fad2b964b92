// Package mediamtx is a client for MediaMTX v1.21.0's control API: runtime paths, path
// configurations and the kick endpoints. The plugin, the RTMP front and the control panel
// share it. Its errors never contain a path name, which may be a stream key.
package mediamtx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrNotFound is returned when MediaMTX answers 404 (no such path or config).
var ErrNotFound = errors.New("not found in mediamtx")

// Client is a client for the MediaMTX v1.21.0 control API. Its errors never
// contain a path name, which may be a key.
type Client struct {
	// BaseURL is the API root, e.g. http://127.0.0.1:9997.
	BaseURL string
	// User and Password are the admin credentials Stagedoor's auth allows for action api.
	User, Password string
	// Client defaults to a client with a 5 s timeout.
	Client *http.Client
	// SelfCheckQuery, if set, is added to the query of OpenToAnonymous's request.
	// MediaMTX hands an API request's query to its auth call, so a per-run secret here
	// lets the auth server tell this probe's expected denial from a stranger's request.
	SelfCheckQuery string
}

// PathSource is the publisher of a path: its type and id (the kick id).
type PathSource struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// Path is a runtime path as /v3/paths/list reports it.
type Path struct {
	Name      string      `json:"name"`
	ConfName  string      `json:"confName"`
	Available bool        `json:"available"`
	Source    *PathSource `json:"source"`
	// AvailableTime is when the stream became available; nil while it is not.
	AvailableTime *time.Time `json:"availableTime"`
	// Readers are the path's readers (one per HLS viewer session, RTSP session, …);
	// MediaMTX leaves its own HLS muxer out.
	Readers []PathReader `json:"readers"`
	// InboundBytes is how much the publisher has sent since the path was created.
	InboundBytes uint64 `json:"inboundBytes"`
}

// PathReader is one reader of a path: its type (hlsSession, rtspSession, …) and id.
type PathReader struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// HLSSession is one HLS viewer session.
type HLSSession struct {
	ID    string `json:"id"`
	Path  string `json:"path"`
	Query string `json:"query"`
}

// PathConfig is the part of a path configuration Stagedoor reads back.
type PathConfig struct {
	Name   string `json:"name"`
	Source string `json:"source"`
}

func (m *Client) do(ctx context.Context, method, p string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(m.BaseURL, "/")+p, rd)
	if err != nil {
		return errors.New("build mediamtx request")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.SetBasicAuth(m.User, m.Password)
	c := m.Client
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	res, err := c.Do(req)
	if err != nil {
		if uerr, ok := errors.AsType[*url.Error](err); ok {
			return fmt.Errorf("mediamtx api %s: %w", method, uerr.Err) // the URL may name a key path
		}
		return fmt.Errorf("mediamtx api %s: %w", method, err)
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusNotFound:
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
		return ErrNotFound
	case res.StatusCode/100 != 2:
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
		return fmt.Errorf("mediamtx api %s: status %d", method, res.StatusCode)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("mediamtx api %s: decode: %w", method, err)
	}
	return nil
}

type page[T any] struct {
	PageCount int `json:"pageCount"`
	Items     []T `json:"items"`
}

func list[T any](ctx context.Context, m *Client, p string) ([]T, error) {
	var all []T
	for i := 0; ; i++ {
		var pg page[T]
		if err := m.do(ctx, http.MethodGet, fmt.Sprintf("%s?itemsPerPage=1000&page=%d", p, i), nil, &pg); err != nil {
			return nil, err
		}
		all = append(all, pg.Items...)
		if i+1 >= pg.PageCount {
			return all, nil
		}
	}
}

// Paths lists every runtime path.
func (m *Client) Paths(ctx context.Context) ([]Path, error) {
	return list[Path](ctx, m, "/v3/paths/list")
}

// PathByName returns one runtime path; ErrNotFound if MediaMTX has no such path.
func (m *Client) PathByName(ctx context.Context, name string) (Path, error) {
	var p Path
	err := m.do(ctx, http.MethodGet, "/v3/paths/get/"+name, nil, &p)
	return p, err
}

// HLSSessions lists the HLS viewer sessions.
func (m *Client) HLSSessions(ctx context.Context) ([]HLSSession, error) {
	return list[HLSSession](ctx, m, "/v3/hls/sessions/list")
}

// Viewers counts the readers of p, less the HLS sessions whose query carries the
// parameter hide (a control panel's own preview player, which is not an audience).
// It lists the HLS sessions only when p has an HLS reader.
func (m *Client) Viewers(ctx context.Context, p Path, hide string) (int, error) {
	n, hls := 0, false
	for _, r := range p.Readers {
		if r.Type != "hidden" {
			n++
		}
		hls = hls || r.Type == "hlsSession"
	}
	if !hls || hide == "" {
		return n, nil
	}
	ss, err := m.HLSSessions(ctx)
	if err != nil {
		return 0, err
	}
	for _, s := range ss {
		if s.Path == p.Name && hasParam(s.Query, hide) {
			n--
		}
	}
	return max(n, 0), nil
}

func hasParam(rawQuery, name string) bool {
	q, err := url.ParseQuery(rawQuery)
	return err == nil && q.Has(name)
}

// PathConfigs lists every configured path entry.
func (m *Client) PathConfigs(ctx context.Context) ([]PathConfig, error) {
	return list[PathConfig](ctx, m, "/v3/config/paths/list")
}

// ReplacePathConfig creates or replaces the configuration of path name.
func (m *Client) ReplacePathConfig(ctx context.Context, name string, conf any) error {
	return m.do(ctx, http.MethodPost, "/v3/config/paths/replace/"+name, conf, nil)
}

// DeletePathConfig removes the configuration of path name; a missing entry is not an error.
func (m *Client) DeletePathConfig(ctx context.Context, name string) error {
	err := m.do(ctx, http.MethodDelete, "/v3/config/paths/delete/"+name, nil, nil)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Applied returns once MediaMTX's path manager has every configuration change made before
// the call. A change's API answer comes before MediaMTX applies it: its core answers, then
// reloads, handing the new path configurations to the path manager, which looks up a new
// session's path configuration in the same order. This call is an empty patch of the
// global configuration (it changes nothing and reloads nothing), which MediaMTX's core
// takes only after it finished the earlier change's reload. Needed before a session that
// must see a removed path configuration: a publisher that looked up the old one is
// refused 2 s later ("configuration has changed").
func (m *Client) Applied(ctx context.Context) error {
	return m.do(ctx, http.MethodPatch, "/v3/config/global/patch", struct{}{}, nil)
}

// Ready reports whether the API answers.
func (m *Client) Ready(ctx context.Context) error {
	var pg page[Path]
	return m.do(ctx, http.MethodGet, "/v3/paths/list?itemsPerPage=1", nil, &pg)
}

// OpenToAnonymous reports whether the API answers a request without credentials, which
// it does when mediamtx.yml leaves authHTTPExclude at its default (api, metrics and
// pprof exempt from auth): then anyone who reaches the API port reads every key path.
func (m *Client) OpenToAnonymous(ctx context.Context) (bool, error) {
	anon := *m
	anon.User, anon.Password = "", ""
	p := "/v3/paths/list?itemsPerPage=1"
	if m.SelfCheckQuery != "" {
		p += "&" + m.SelfCheckQuery
	}
	var pg page[Path]
	err := anon.do(ctx, http.MethodGet, p, nil, &pg)
	switch {
	case err == nil:
		return true, nil
	case strings.Contains(err.Error(), "status 401"):
		return false, nil
	default:
		return false, err
	}
}

// kickRoutes maps MediaMTX source types to the kick endpoint of their connection or
// session (v1.21.0 names).
var kickRoutes = map[string]string{
	"rtmpConn":      "/v3/rtmp/conns/kick/",
	"rtmpsConn":     "/v3/rtmps/conns/kick/",
	"rtspSession":   "/v3/rtsp/sessions/kick/",
	"rtspsSession":  "/v3/rtsps/sessions/kick/",
	"srtConn":       "/v3/srt/conns/kick/",
	"webRTCSession": "/v3/webrtc/sessions/kick/",
	"moqSession":    "/v3/moq/sessions/kick/",
}

// Kick disconnects the publisher with this source type and id. An id MediaMTX no longer
// knows is not an error (the publisher is already gone).
func (m *Client) Kick(ctx context.Context, sourceType, id string) error {
	route, ok := kickRoutes[sourceType]
	if !ok {
		return fmt.Errorf("kick: no kick endpoint for source type %q", sourceType)
	}
	err := m.do(ctx, http.MethodPost, route+url.PathEscape(id), nil, nil)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}
