package panel_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/manage"
	"github.com/stagedoor/stagedoor/panel"
)

// fakeMeter stands in for MediaMTX's numbers (the real one is driven end to end).
type fakeMeter struct {
	mu   sync.Mutex
	live map[string]panel.Live
}

func (m *fakeMeter) Live(_ context.Context, name string) (panel.Live, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.live[name]
	return l, ok, nil
}

// kicker records the service's kicks: the names asked for.
type kicker struct {
	mu    sync.Mutex
	names []string
}

func (k *kicker) kick(_ context.Context, name string) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.names = append(k.names, name)
	return true, nil
}

func TestPreSessionCSRF(t *testing.T) {
	f := newFixture(t)
	t.Run("LoginWithoutTokenRefused", func(t *testing.T) {
		b := f.browser()
		b.get("/panel/login") // the cookie, but the token is not sent
		if got := b.post("/panel/login", url.Values{"username": {"benw"}, "password": {benwPass}}); got != http.StatusForbidden {
			t.Fatalf("login without the form's token: %d, want 403", got)
		}
		for _, c := range b.res.Cookies() {
			if c.Name == panel.CookieName {
				t.Error("a refused login set a session cookie")
			}
		}
		if got := b.get("/panel/channels/benw"); got != http.StatusSeeOther {
			t.Errorf("after a refused login the dashboard answers %d, want 303 to the sign-in page", got)
		}
	})
	t.Run("TokenOfAnotherBrowserRefused", func(t *testing.T) {
		attacker, victim := f.browser(), f.browser()
		tok := attacker.preToken("/panel/login")
		victim.get("/panel/login")
		if got := victim.post("/panel/login", url.Values{"username": {"benw"}, "password": {benwPass}, "csrf": {tok}}); got != http.StatusForbidden {
			t.Errorf("login with another browser's token: %d, want 403", got)
		}
	})
	t.Run("InviteWithoutTokenChangesNothing", func(t *testing.T) {
		if _, err := f.ops.CreateUser(t.Context(), opActor, "carol"); err != nil {
			t.Fatal(err)
		}
		tok, _, err := f.ops.Invite(t.Context(), opActor, "carol")
		if err != nil {
			t.Fatal(err)
		}
		b := f.browser()
		b.get("/panel/invite/" + tok)
		if got := b.post("/panel/invite/"+tok, url.Values{"password": {"carol password"}, "confirm": {"carol password"}}); got != http.StatusForbidden {
			t.Fatalf("invite without the form's token: %d, want 403", got)
		}
		if _, _, err := f.db.PanelAccount(t.Context(), "carol"); err == nil {
			t.Error("the refused invite created carol's account")
		}
		if got := b.acceptInvite(tok, "carol password", "carol password"); got != http.StatusOK {
			t.Errorf("the invite with its token after a refused post: %d, want 200 (still usable)", got)
		}
	})
}

var opActor = manage.Actor{Via: manage.ViaCLI}

func TestTrustedProxy(t *testing.T) {
	f := newFixture(t, func(o *panel.Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	pre, tok := preForm(t, f.panel)
	login := func(peer, xff, proto string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/panel/login",
			strings.NewReader(url.Values{"username": {"benw"}, "password": {benwPass}, "csrf": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(pre)
		req.RemoteAddr = peer
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		if proto != "" {
			req.Header.Set("X-Forwarded-Proto", proto)
		}
		rec := httptest.NewRecorder()
		f.panel.ServeHTTP(rec, req)
		return rec
	}
	secure := func(rec *httptest.ResponseRecorder) bool {
		for _, c := range rec.Result().Cookies() {
			if c.Name == panel.CookieName {
				return c.Secure
			}
		}
		t.Fatalf("no session cookie (status %d)", rec.Code)
		return false
	}
	if !secure(login("10.1.2.3:4000", "198.51.100.7", "https")) {
		t.Error("behind a trusted proxy that says https, the cookie is not Secure")
	}
	if secure(login("192.0.2.9:4000", "198.51.100.7", "https")) {
		t.Error("an untrusted peer's X-Forwarded-Proto made the cookie Secure")
	}
	if secure(login("10.1.2.3:4000", "", "http")) {
		t.Error("a trusted proxy that says http got a Secure cookie")
	}

	// The client's address in the audit: the last X-Forwarded-For hop that is not a
	// trusted proxy, never what the client wrote before it; an untrusted peer's header
	// is ignored.
	for _, tt := range []struct{ peer, xff, want string }{
		{"10.1.2.3:4000", "203.0.113.66, 198.51.100.7, 10.9.9.9", "198.51.100.7"},
		{"192.0.2.9:4000", "198.51.100.7", "192.0.2.9"},
	} {
		rec := login(tt.peer, tt.xff, "https")
		var sess *http.Cookie
		for _, c := range rec.Result().Cookies() {
			if c.Name == panel.CookieName {
				sess = c
			}
		}
		jar := []*http.Cookie{sess}
		get := httptest.NewRequest(http.MethodGet, "/panel/channels/benw", nil)
		get.AddCookie(jar[0])
		page := httptest.NewRecorder()
		f.panel.ServeHTTP(page, get)
		m := csrfRE.FindStringSubmatch(page.Body.String())
		n := nonceRE.FindStringSubmatch(page.Body.String())
		if m == nil || n == nil {
			t.Fatalf("no form on the dashboard (%d)", page.Code)
		}
		post := httptest.NewRequest(http.MethodPost, "/panel/channels/benw/keys",
			strings.NewReader(url.Values{"csrf": {m[1]}, "nonce": {n[1]}, "label": {"proxy test"}}.Encode()))
		post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		post.AddCookie(jar[0])
		post.RemoteAddr = tt.peer
		post.Header.Set("X-Forwarded-For", tt.xff)
		n0 := f.auditLen()
		f.panel.ServeHTTP(httptest.NewRecorder(), post)
		es := f.auditSince(n0)
		if len(es) != 1 || es[0].IP != tt.want {
			t.Errorf("peer %s, X-Forwarded-For %q: audit %+v, want one entry from %s", tt.peer, tt.xff, es, tt.want)
		}
	}
}

func TestLiveStatusAndPreview(t *testing.T) {
	meter := &fakeMeter{live: map[string]panel.Live{}}
	f := newFixture(t, func(o *panel.Options) {
		o.Meter = meter
		o.HLSJS = []byte("/* hls.js */")
	})
	b := f.browser()
	b.mustLogin("benw", benwPass)
	if got := b.get("/panel/channels/benw"); got != http.StatusOK {
		t.Fatal(got)
	}
	if !strings.Contains(b.body, `id="live-badge" class="badge offline"`) || !strings.Contains(b.body, `id="live-viewers">–<`) {
		t.Errorf("offline dashboard lacks the offline badge or shows numbers")
	}
	if !strings.Contains(b.body, `src="/panel/static/hls.min.js"`) || !strings.Contains(b.body,
		`data-preview="http://stream.example:8888/live/benw/index.m3u8?`+panel.PreviewParam+`=1"`) {
		t.Error("dashboard lacks hls.js or the marked preview URL")
	}
	if got := b.get("/panel/static/hls.min.js"); got != http.StatusOK || b.body != "/* hls.js */" {
		t.Errorf("GET hls.min.js: %d %q", got, b.body)
	}

	since := f.clock.Now().Add(-90 * time.Minute)
	if err := f.db.SetLive(t.Context(), stagedoor.LiveState{NodeID: "local", Kind: stagedoor.LiveDirect, Name: "benw", UserID: f.userID("benw"), UserName: "benw", SourceID: "S", SourceType: "srtConn", Since: since}); err != nil {
		t.Fatal(err)
	}
	meter.mu.Lock()
	meter.live["benw"] = panel.Live{Viewers: 3, Bitrate: 2_500_000, Since: since.Add(-5 * time.Minute)}
	meter.mu.Unlock()
	b.get("/panel/channels/benw")
	for _, want := range []string{`class="badge live"`, `id="live-viewers">3<`, `id="live-bitrate">2500 kbit/s<`,
		`id="live-uptime">1:35:00<`, `id="live-protocol">SRT<`} {
		if !strings.Contains(b.body, want) {
			t.Errorf("live dashboard (no script) lacks %s", want)
		}
	}
	if got := b.get("/panel/channels/benw/live"); got != http.StatusOK {
		t.Fatalf("live JSON: %d", got)
	}
	var st struct {
		Live     bool   `json:"live"`
		Viewers  int    `json:"viewers"`
		Bitrate  int64  `json:"bitrate"`
		Protocol string `json:"protocol"`
		Uptime   string `json:"uptime"`
	}
	if err := json.Unmarshal([]byte(b.body), &st); err != nil || !st.Live || st.Viewers != 3 || st.Bitrate != 2_500_000 || st.Protocol != "SRT" || st.Uptime != "1:35:00" {
		t.Errorf("live JSON %s (%v)", b.body, err)
	}
	// Another streamer: 404 for benw's numbers.
	a := f.browser()
	a.mustLogin("alice", alicePass)
	if got := a.get("/panel/channels/benw/live"); got != http.StatusNotFound || strings.Contains(a.body, "viewers") {
		t.Errorf("alice reads benw's live JSON: %d", got)
	}
}

// TestLiveStatusWithoutMeter is the panel of a replica without MediaMTX (no Meter): a
// name live on another node shows live, an uptime and the ingest from the database, and no
// numbers (measured false), page and JSON alike.
func TestLiveStatusWithoutMeter(t *testing.T) {
	f := newFixture(t)
	if err := f.db.SetLive(t.Context(), stagedoor.LiveState{NodeID: "node-a", Kind: stagedoor.LiveDirect, Name: "benw", UserID: f.userID("benw"), UserName: "benw", SourceID: "S", SourceType: "srtConn"}); err != nil {
		t.Fatal(err)
	}
	b := f.browser()
	b.mustLogin("benw", benwPass)
	b.get("/panel/channels/benw")
	for _, want := range []string{`class="badge live"`, `id="live-viewers">–<`, `id="live-protocol">SRT<`} {
		if !strings.Contains(b.body, want) {
			t.Errorf("live dashboard without a meter lacks %s", want)
		}
	}
	if strings.Contains(b.body, `id="live-uptime">–<`) {
		t.Error("live dashboard without a meter shows no uptime")
	}
	if got := b.get("/panel/channels/benw/live"); got != http.StatusOK {
		t.Fatalf("live JSON: %d", got)
	}
	var st struct {
		Live     bool `json:"live"`
		Measured bool `json:"measured"`
		Viewers  int  `json:"viewers"`
	}
	if err := json.Unmarshal([]byte(b.body), &st); err != nil || !st.Live || st.Measured || st.Viewers != 0 {
		t.Errorf("live JSON without a meter %s (%v), want live, not measured", b.body, err)
	}
}

func TestPublishAttempts(t *testing.T) {
	f := newFixture(t)
	at := f.clock.Now()
	entries := []stagedoor.AuditEntry{
		{At: at, Kind: "publish", User: "benw", KeyFP: "1a2b3c4d", IP: "198.51.100.7", Protocol: "rtmp", Decision: "allow", Reason: "stream key"},
		{At: at.Add(time.Second), Kind: "publish", User: "benw", IP: "203.0.113.9", Protocol: "srt", Decision: "deny", Reason: "<script>alert(1)</script>"},
		{At: at, Kind: "publish", User: "alice", IP: "192.0.2.1", Protocol: "rtmp", Decision: "deny", Reason: "alice's attempt"},
		{At: at, Kind: "admin", User: "benw", Protocol: "cli", Decision: "ok", Reason: "not a publish attempt"},
	}
	if err := f.db.AppendAudit(t.Context(), entries); err != nil {
		t.Fatal(err)
	}
	b := f.browser()
	b.mustLogin("benw", benwPass)
	b.get("/panel/channels/benw")
	_, section, _ := strings.Cut(b.body, `id="attempts"`)
	for _, want := range []string{"accepted", "stream key", "198.51.100.7", "1a2b3c4d", "refused", "203.0.113.9", "srt",
		"&lt;script&gt;alert(1)&lt;/script&gt;"} {
		if !strings.Contains(section, want) {
			t.Errorf("publish attempts lack %q", want)
		}
	}
	for _, not := range []string{"alice's attempt", "not a publish attempt", "<script>alert"} {
		if strings.Contains(section, not) {
			t.Errorf("publish attempts show %q", not)
		}
	}
}

func TestOperatorKick(t *testing.T) {
	k := &kicker{}
	f := newFixture(t)
	f.ops.Kicker = k.kick
	if err := f.db.SetLive(t.Context(), stagedoor.LiveState{NodeID: "local", Kind: stagedoor.LiveDirect, Name: "benw", UserID: f.userID("benw"), UserName: "benw", SourceID: "S", SourceType: "rtmpConn", Since: f.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	// A streamer has no kick: 404 for their own channel too, nothing kicked.
	s := f.browser()
	s.mustLogin("benw", benwPass)
	csrf, _ := s.form("/panel/channels/benw")
	if got := s.post("/panel/channels/benw/kick", url.Values{"csrf": {csrf}}); got != http.StatusNotFound {
		t.Errorf("streamer kick: %d, want 404", got)
	}
	if got := s.get("/panel/live"); got != http.StatusNotFound {
		t.Errorf("streamer GET /panel/live: %d, want 404", got)
	}
	op := f.browser()
	op.mustLogin("boss", opPass)
	csrf, _ = op.form("/panel/live")
	if !strings.Contains(op.body, `action="/panel/channels/benw/kick"`) {
		t.Fatal("live-now page lacks benw's kick button")
	}
	// Without the token: refused, nothing kicked.
	if got := op.post("/panel/channels/benw/kick", url.Values{}); got != http.StatusForbidden {
		t.Errorf("kick without the token: %d, want 403", got)
	}
	n0 := f.auditLen()
	if got := op.post("/panel/channels/benw/kick", url.Values{"csrf": {csrf}}); got != http.StatusOK || !strings.Contains(op.body, "Kicked the publisher of benw") {
		t.Errorf("operator kick: %d", got)
	}
	k.mu.Lock()
	names := append([]string(nil), k.names...)
	k.mu.Unlock()
	if len(names) != 1 || names[0] != "benw" {
		t.Errorf("kicks %v, want [benw] (none for the refused posts)", names)
	}
	es := f.auditSince(n0)
	if len(es) != 1 || es[0].Protocol != "panel" || es[0].User != "benw" || !strings.Contains(es[0].Reason, "kicked benw (by boss)") {
		t.Errorf("audit of the kick = %+v", es)
	}
	if got := op.post("/panel/channels/nobody/kick", url.Values{"csrf": {csrf}}); got != http.StatusNotFound {
		t.Errorf("kick of an unknown name: %d, want 404", got)
	}
}

func TestAuditPage(t *testing.T) {
	f := newFixture(t)
	at := f.clock.Now().Add(-3 * time.Hour)
	if err := f.db.AppendAudit(t.Context(), []stagedoor.AuditEntry{
		{At: at, Kind: "publish", User: "benw", Decision: "deny", Reason: "old benw attempt"},
		{At: f.clock.Now(), Kind: "publish", User: "alice", Decision: "allow", Reason: "new alice attempt"},
		{At: f.clock.Now(), Kind: "kick", User: "benw", Decision: "kicked", Reason: "<b>new benw kick</b>"},
	}); err != nil {
		t.Fatal(err)
	}
	op := f.operatorOnly("/panel/audit")
	for _, tt := range []struct {
		query     string
		want, not []string
	}{
		{"", []string{"old benw attempt", "new alice attempt", "&lt;b&gt;new benw kick&lt;/b&gt;"}, []string{"<b>new"}},
		{"?user=benw", []string{"old benw attempt", "new benw kick"}, []string{"new alice attempt"}},
		{"?kind=publish", []string{"old benw attempt", "new alice attempt"}, []string{"new benw kick"}},
		{"?since=1h", []string{"new alice attempt", "new benw kick"}, []string{"old benw attempt"}},
		{"?until=" + url.QueryEscape(f.clock.Now().Add(-time.Hour).Format("2006-01-02T15:04")), []string{"old benw attempt"}, []string{"new alice attempt"}},
		{"?user=benw&kind=kick&limit=1", []string{"new benw kick"}, []string{"old benw attempt"}},
	} {
		if got := op.get("/panel/audit" + tt.query); got != http.StatusOK {
			t.Errorf("GET /panel/audit%s: %d", tt.query, got)
			continue
		}
		_, table, _ := strings.Cut(op.body, `<table id="audit">`)
		for _, w := range tt.want {
			if !strings.Contains(table, w) {
				t.Errorf("audit%s lacks %q", tt.query, w)
			}
		}
		for _, n := range tt.not {
			if strings.Contains(table, n) {
				t.Errorf("audit%s shows %q", tt.query, n)
			}
		}
	}
	for _, bad := range []string{"?kind=nope", "?since=yesterday", "?limit=0"} {
		if got := op.get("/panel/audit" + bad); got != http.StatusBadRequest {
			t.Errorf("GET /panel/audit%s: %d, want 400", bad, got)
		}
	}
}

func TestOperatorsPage(t *testing.T) {
	f := newFixture(t)
	op := f.operatorOnly("/panel/operators")
	csrf, _ := op.form("/panel/operators")
	if !strings.Contains(op.body, "<td>boss</td>") || strings.Contains(op.body, "<td>benw</td>") {
		t.Error("operators page does not list exactly the operators")
	}
	for _, tt := range []struct {
		name, pw, confirm string
		want              int
	}{
		{"deputy", "short", "short", http.StatusBadRequest},
		{"deputy", "deputy password 1", "deputy password 2", http.StatusBadRequest},
		{"Not A Name", "deputy password 1", "deputy password 1", http.StatusBadRequest},
		{"benw", "deputy password 1", "deputy password 1", http.StatusConflict},
	} {
		if got := op.post("/panel/operators", url.Values{"csrf": {csrf}, "name": {tt.name}, "password": {tt.pw}, "confirm": {tt.confirm}}); got != tt.want {
			t.Errorf("add %q/%q: %d, want %d", tt.name, tt.pw, got, tt.want)
		}
		if _, _, err := f.db.PanelAccount(t.Context(), "deputy"); err == nil {
			t.Fatalf("a refused form created deputy")
		}
	}
	if got := op.post("/panel/operators", url.Values{"name": {"deputy"}, "password": {"deputy password 1"}, "confirm": {"deputy password 1"}}); got != http.StatusForbidden {
		t.Errorf("add without the token: %d, want 403", got)
	}
	if got := op.post("/panel/operators", url.Values{"csrf": {csrf}, "name": {"deputy"}, "password": {"deputy password 1"}, "confirm": {"deputy password 1"}}); got != http.StatusOK {
		t.Fatalf("add deputy: %d", got)
	}
	if !strings.Contains(op.body, "<td>deputy</td>") {
		t.Error("the answer does not list the new operator")
	}
	d := f.browser()
	d.mustLogin("deputy", "deputy password 1")
	if got := d.get("/panel/channels/alice"); got != http.StatusOK {
		t.Errorf("the new operator opens alice's channel: %d", got)
	}
}

func TestSessionsPruned(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	b.mustLogin("benw", benwPass)
	if n, err := f.panel.Prune(t.Context()); err != nil || n != 0 {
		t.Fatalf("prune of a fresh session = %d, %v; want 0", n, err)
	}
	f.clock.Add(31 * time.Minute)
	if n, err := f.panel.Prune(t.Context()); err != nil || n != 1 {
		t.Errorf("prune after the idle timeout = %d, %v; want 1", n, err)
	}
}

func TestHLSJSAbsentIsNative(t *testing.T) {
	h, err := panel.NewHandler(testutil.Discard(), newFixture(t).ops, nil, panel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/panel/static/hls.min.js", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("hls.min.js without HLSJS: %d, want 404", rec.Code)
	}
}

func (f *fixture) userID(name string) int64 {
	f.t.Helper()
	u, err := f.db.UserByName(f.t.Context(), name)
	if err != nil {
		f.t.Fatal(err)
	}
	return u.ID
}

// operatorOnly checks that a streamer gets 404 for the page at path and returns a
// browser signed in as the operator.
func (f *fixture) operatorOnly(path string) *browser {
	f.t.Helper()
	s := f.browser()
	s.mustLogin("benw", benwPass)
	if got := s.get(path); got != http.StatusNotFound {
		f.t.Errorf("streamer GET %s: %d, want 404", path, got)
	}
	op := f.browser()
	op.mustLogin("boss", opPass)
	return op
}
