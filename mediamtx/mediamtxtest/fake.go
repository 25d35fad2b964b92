// Package mediamtxtest is a fake of the part of MediaMTX v1.21.0's control API that
// Stagedoor calls, with state: tests set which paths are available with which source,
// then deliver hooks in any order, which a real MediaMTX cannot do on demand.
package mediamtxtest

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stagedoor/stagedoor/mediamtx"
)

// Server is the fake API. Like MediaMTX with `authHTTPExclude: []`, it refuses calls
// without the credentials it was made with.
type Server struct {
	// URL is the API root, e.g. http://127.0.0.1:PORT.
	URL string
	// Replaced, Deleted and Kicked count path-config replaces, deletes and kicks;
	// Unexpected counts requests to routes Stagedoor should not call. PathNotFound
	// counts paths/get calls for a path MediaMTX does not have: each is an ERR line in
	// MediaMTX's log, which an operator reads as a fault.
	Replaced, Deleted, Kicked, Unexpected, PathNotFound atomic.Int64

	user, password string
	t              testing.TB

	blockMu sync.Mutex
	blocks  map[string]*block // "METHOD /path" -> a hold on that route; see Block

	mu      sync.Mutex
	paths   map[string]mediamtx.Path // runtime paths that are available, by name
	configs map[string]string        // path config name -> source
	kicks   []string                 // "sourceType/id" per kick
	calls   []string
}

// New serves a fake until the test ends. An empty password accepts any non-empty user
// (for callers whose admin password is generated where the test cannot see it).
func New(t testing.TB, user, password string) *Server {
	f := &Server{user: user, password: password, t: t, blocks: map[string]*block{},
		paths: map[string]mediamtx.Path{}, configs: map[string]string{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// Client returns a client of this fake with its credentials.
func (f *Server) Client() *mediamtx.Client {
	return &mediamtx.Client{BaseURL: f.URL, User: f.user, Password: f.password}
}

// SetSource makes path available with a publisher of this type and id; an empty id
// removes the path.
func (f *Server) SetSource(path, sourceType, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == "" {
		delete(f.paths, path)
		return
	}
	f.paths[path] = mediamtx.Path{Name: path, ConfName: "~^live/", Available: true,
		Source: &mediamtx.PathSource{Type: sourceType, ID: id}}
}

// Config returns the source configured for path name, and whether there is an entry.
func (f *Server) Config(name string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.configs[name]
	return s, ok
}

// SetConfig adds a path configuration, as an earlier run might have left it.
func (f *Server) SetConfig(name, source string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.configs[name] = source
}

// Calls returns every authenticated request so far as "METHOD /path".
func (f *Server) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// Kicks returns every kick so far as "sourceType/id"; a kicked source's path is gone.
func (f *Server) Kicks() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.kicks...)
}

// block holds the requests of one route until released.
type block struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	first   bool        // only the first request is held (BlockFirst)
	taken   atomic.Bool // the first request has come
}

// Block makes every request to route ("METHOD /path", e.g. "GET /v3/paths/list") hang
// before the fake reads or changes anything, until release is called or the caller gives
// up: an API call that hangs, a fault a real MediaMTX cannot produce on demand. entered
// receives once per request that reached the hold. Release is idempotent and also runs
// when the test ends; requests to other routes are served meanwhile.
func (f *Server) Block(route string) (entered <-chan struct{}, release func()) {
	return f.block(route, false)
}

// BlockFirst is Block for the first request to route only; later ones are served: one
// call that hangs while MediaMTX keeps answering others, as its API does.
func (f *Server) BlockFirst(route string) (entered <-chan struct{}, release func()) {
	return f.block(route, true)
}

func (f *Server) block(route string, first bool) (entered <-chan struct{}, release func()) {
	b := &block{entered: make(chan struct{}, 64), release: make(chan struct{}), first: first}
	release = func() {
		b.once.Do(func() {
			f.blockMu.Lock()
			if f.blocks[route] == b {
				delete(f.blocks, route)
			}
			f.blockMu.Unlock()
			close(b.release)
		})
	}
	f.blockMu.Lock()
	f.blocks[route] = b
	f.blockMu.Unlock()
	f.t.Cleanup(release) // before the server's Close (cleanups run last-in first-out)
	return b.entered, release
}

// hold waits while the request's route is blocked; false if the caller gave up meanwhile.
func (f *Server) hold(r *http.Request) bool {
	f.blockMu.Lock()
	b := f.blocks[r.Method+" "+r.URL.Path]
	f.blockMu.Unlock()
	if b == nil || b.first && !b.taken.CompareAndSwap(false, true) {
		return true
	}
	select {
	case b.entered <- struct{}{}:
	default:
	}
	select {
	case <-b.release:
		return true
	case <-r.Context().Done():
		return false
	}
}

func (f *Server) authorized(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	if !ok || u == "" {
		return false
	}
	return f.password == "" || (u == f.user && p == f.password)
}

// kickTypes maps the kick routes' protocol segment to MediaMTX source types.
var kickTypes = map[string]string{
	"rtmp": "rtmpConn", "rtmps": "rtmpsConn", "rtsp": "rtspSession", "rtsps": "rtspsSession",
	"srt": "srtConn", "webrtc": "webRTCSession", "moq": "moqSession",
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ServeHTTP implements the API routes Stagedoor uses.
func (f *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(r) {
		http.Error(w, `{"error":"authentication error"}`, http.StatusUnauthorized)
		return
	}
	if !f.hold(r) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet && p == "/v3/paths/list":
		items := make([]mediamtx.Path, 0, len(f.paths))
		for _, x := range f.paths {
			items = append(items, x)
		}
		writeJSON(w, map[string]any{"pageCount": 1, "itemCount": len(items), "items": items})
	case r.Method == http.MethodGet && strings.HasPrefix(p, "/v3/paths/get/"):
		x, ok := f.paths[strings.TrimPrefix(p, "/v3/paths/get/")]
		if !ok {
			f.PathNotFound.Add(1)
			http.Error(w, `{"error":"path not found"}`, http.StatusNotFound)
			return
		}
		writeJSON(w, x)
	case r.Method == http.MethodGet && p == "/v3/config/paths/list":
		items := make([]mediamtx.PathConfig, 0, len(f.configs))
		for n, s := range f.configs {
			items = append(items, mediamtx.PathConfig{Name: n, Source: s})
		}
		writeJSON(w, map[string]any{"pageCount": 1, "itemCount": len(items), "items": items})
	case r.Method == http.MethodPost && strings.HasPrefix(p, "/v3/config/paths/replace/"):
		var c struct {
			Source string `json:"source"`
		}
		if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
			http.Error(w, `{"error":"bad body"}`, http.StatusBadRequest)
			return
		}
		f.configs[strings.TrimPrefix(p, "/v3/config/paths/replace/")] = c.Source
		f.Replaced.Add(1)
	case r.Method == http.MethodPatch && p == "/v3/config/global/patch":
		// An empty patch: Client.Applied.
	case r.Method == http.MethodDelete && strings.HasPrefix(p, "/v3/config/paths/delete/"):
		name := strings.TrimPrefix(p, "/v3/config/paths/delete/")
		if _, ok := f.configs[name]; !ok {
			http.Error(w, `{"error":"path configuration not found"}`, http.StatusNotFound)
			return
		}
		delete(f.configs, name)
		f.Deleted.Add(1)
	case r.Method == http.MethodPost && strings.Contains(p, "/kick/"):
		// /v3/{proto}/{conns|sessions}/kick/{id}
		parts := strings.Split(strings.TrimPrefix(p, "/v3/"), "/")
		typ, ok := kickTypes[parts[0]]
		if !ok || len(parts) != 4 {
			f.Unexpected.Add(1)
			http.NotFound(w, r)
			return
		}
		f.Kicked.Add(1)
		f.kicks = append(f.kicks, typ+"/"+parts[3])
		for name, x := range f.paths {
			if x.Source != nil && x.Source.Type == typ && x.Source.ID == parts[3] {
				delete(f.paths, name)
			}
		}
	default:
		f.Unexpected.Add(1)
		http.NotFound(w, r)
	}
}

// Configs returns a copy of every path configuration: name -> source.
func (f *Server) Configs() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.configs)
}
