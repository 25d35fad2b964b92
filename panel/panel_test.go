package panel_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"
	"github.com/stagedoor/stagedoor/internal/testdb"
	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/manage"
	"github.com/stagedoor/stagedoor/panel"
	"github.com/stagedoor/stagedoor/policy"
	"github.com/stagedoor/stagedoor/store"
)

const (
	opPass    = "operator password 1"
	benwPass  = "benw panel password"
	alicePass = "alice panel password"
)

var keyRE = regexp.MustCompile(`sk_[A-Za-z0-9_-]{43}`)

type fixture struct {
	t        *testing.T
	db       *store.DB
	ops      *manage.Service
	srv      *httptest.Server
	panel    *panel.Handler
	clock    *testutil.Clock
	mu       sync.Mutex
	nChanges int // policy-changed signals; read with changes()
	audit    []stagedoor.AuditEntry
}

// changes is how many policy-changed signals the service has sent.
func (f *fixture) changes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nChanges
}

// newFixture: a real SQLite store with channels benw and alice, each with a streamer
// account, and an operator "boss"; the panel on an httptest server; one hand-moved
// clock for the store and the panel.
func newFixture(t *testing.T, tweak ...func(*panel.Options)) *fixture {
	t.Helper()
	f := &fixture{t: t, db: testdb.MustOpen(t), clock: testutil.NewClock(time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC))}
	f.db.Now = f.clock.Now
	f.ops = &manage.Service{
		Store: f.db,
		URLs:  stagedoor.URLs{RTMP: "rtmp://stream.example:1935/live", HLS: "http://stream.example:8888"},
		Now:   f.clock.Now,
		Record: func(ctx context.Context, e stagedoor.AuditEntry) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.audit = append(f.audit, e)
			return f.db.AppendAudit(ctx, []stagedoor.AuditEntry{e}) // what the audit page reads
		},
		Changed: func(context.Context) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.nChanges++
		},
	}
	ctx := t.Context()
	for _, c := range []struct{ name, pw string }{{"benw", benwPass}, {"alice", alicePass}} {
		if _, err := f.ops.CreateUser(ctx, manage.Actor{Via: manage.ViaCLI}, c.name); err != nil {
			t.Fatal(err)
		}
		tok, _, err := f.ops.Invite(ctx, manage.Actor{Via: manage.ViaCLI}, c.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ops.AcceptInvite(ctx, manage.Actor{Via: manage.ViaCLI}, tok, c.name, c.pw); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.ops.CreateOperator(ctx, manage.Actor{Via: manage.ViaCLI}, "boss", opPass); err != nil {
		t.Fatal(err)
	}
	lim := policy.NewPasswords()
	lim.Now = f.clock.Now
	opts := panel.Options{URLs: f.ops.URLs, Now: f.clock.Now, Limiter: lim}
	for _, tw := range tweak {
		tw(&opts)
	}
	h, err := panel.NewHandler(testutil.Discard(), f.ops, f.db, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.panel = h
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	f   *fixture
	c   *http.Client
	res *http.Response
	// body of the last response.
	body string
	// all is every response body this browser received, in order.
	all []string
}

func (f *fixture) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{f: f, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (b *browser) do(req *http.Request) int {
	b.f.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.f.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	b.res, b.body = res, string(raw)
	b.all = append(b.all, b.body)
	return res.StatusCode
}

func (b *browser) get(path string) int {
	b.f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.f.srv.URL+path, nil)
	return b.do(req)
}

func (b *browser) post(path string, form url.Values) int {
	b.f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// login fills the sign-in form as a browser does: GET /panel/login (which sets the
// pre-session cookie and puts its token in the form), then POST it.
func (b *browser) login(name, pw string) int {
	b.f.t.Helper()
	return b.post("/panel/login", url.Values{"username": {name}, "password": {pw}, "csrf": {b.preToken("/panel/login")}})
}

// preToken GETs a sign-in or invite page and returns the token of its form ("" when the
// page has no form).
func (b *browser) preToken(path string) string {
	b.f.t.Helper()
	b.get(path)
	if m := csrfRE.FindStringSubmatch(b.body); m != nil {
		return m[1]
	}
	return ""
}

// acceptInvite posts the invite form of token as a browser does (GET, then POST with
// the form's token).
func (b *browser) acceptInvite(token, pw, confirm string) int {
	b.f.t.Helper()
	path := "/panel/invite/" + token
	return b.post(path, url.Values{"password": {pw}, "confirm": {confirm}, "csrf": {b.preToken(path)}})
}

func (b *browser) mustLogin(name, pw string) {
	b.f.t.Helper()
	if got := b.login(name, pw); got != http.StatusSeeOther {
		b.f.t.Fatalf("login %s: status %d, want 303\n%s", name, got, b.body)
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
var nonceRE = regexp.MustCompile(`name="nonce" value="([^"]+)"`)

// form returns the csrf and nonce of the page at path.
func (b *browser) form(path string) (csrf, nonce string) {
	b.f.t.Helper()
	if got := b.get(path); got != http.StatusOK {
		b.f.t.Fatalf("GET %s: %d", path, got)
	}
	m := csrfRE.FindStringSubmatch(b.body)
	if m == nil {
		b.f.t.Fatalf("no csrf field on %s", path)
	}
	n := nonceRE.FindStringSubmatch(b.body)
	if n == nil {
		return m[1], ""
	}
	return m[1], n[1]
}

func keyFPs(t *testing.T, db *store.DB, name string) []string {
	t.Helper()
	keys, err := db.Keys(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		out = append(out, k.Fingerprint)
	}
	return out
}

func TestHeadersOnEveryResponse(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	check := func(what string) {
		t.Helper()
		h := b.res.Header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "frame-ancestors 'none'", "script-src 'self'", "base-uri 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", what, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP allows inline: %q", what, csp)
		}
		if h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: headers %v", what, h)
		}
	}
	b.get("/panel/login")
	check("login page")
	b.login("benw", "wrong password!")
	check("refused login")
	b.get("/panel/nothing")
	check("404")
	b.mustLogin("benw", benwPass)
	check("login redirect")
	b.get("/panel/channels/benw")
	check("dashboard")
	b.get("/panel/static/panel.js")
	check("script")
	for _, page := range []string{"/panel/login", "/panel/channels/benw"} {
		b.get(page)
		if strings.Contains(b.body, "<script>") || strings.Contains(b.body, " style=") || strings.Contains(b.body, "<style") {
			t.Errorf("%s has inline script or style", page)
		}
	}
}

func TestCookieFlags(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	b.mustLogin("benw", benwPass)
	cs := b.res.Cookies()
	if len(cs) != 1 {
		t.Fatalf("cookies = %v", cs)
	}
	c := cs[0]
	if c.Name != panel.CookieName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/panel/" || len(c.Value) != 43 {
		t.Errorf("cookie = %+v, want HttpOnly, SameSite=Strict, Path=/panel/, 43-character opaque value", c)
	}
	if c.Secure {
		t.Error("Secure set on a plain-HTTP response (the browser would drop the cookie)")
	}
	if strings.Contains(c.Value, "benw") {
		t.Error("cookie carries the account name")
	}

	// Over TLS the cookie is Secure.
	h, err := panel.NewHandler(testutil.Discard(), f.ops, f.db, panel.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tls := httptest.NewTLSServer(h)
	defer tls.Close()
	cl := tls.Client()
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	pre, tok := preForm(t, h)
	req, _ := http.NewRequest(http.MethodPost, tls.URL+"/panel/login",
		strings.NewReader(url.Values{"username": {"benw"}, "password": {benwPass}, "csrf": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(pre)
	res, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if cs := res.Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Errorf("TLS cookies = %+v, want one Secure cookie", cs)
	}
}

// preForm GETs the sign-in page from h and returns its pre-session cookie and the
// form's token.
func preForm(t *testing.T, h http.Handler) (*http.Cookie, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/panel/login", nil))
	cs := rec.Result().Cookies()
	m := csrfRE.FindStringSubmatch(rec.Body.String())
	if len(cs) != 1 || cs[0].Name != panel.PreCookieName || m == nil {
		t.Fatalf("GET /panel/login: cookies %v, token found %v", cs, m != nil)
	}
	c := cs[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/panel/" {
		t.Errorf("pre-session cookie %+v, want HttpOnly, SameSite=Strict, Path=/panel/", c)
	}
	return c, m[1]
}

func TestLoginRefusals(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	benwKey, err := f.db.AddKey(t.Context(), "benw", "obs")
	if err != nil {
		t.Fatal(err)
	}
	pubHash, err := f.ops.SetPassword(t.Context(), manage.Actor{Via: manage.ViaCLI}, "benw", "publish password", 0)
	if err != nil {
		t.Fatal(err)
	}
	_, panelHash, _ := f.db.PanelAccount(t.Context(), "benw")
	for _, tt := range []struct{ name, user, pw string }{
		{"WrongPassword", "benw", "not the password"},
		{"UnknownAccount", "nobody", benwPass},
		{"StreamKey", "benw", benwKey.StreamKey},
		{"PublishPassword", "benw", "publish password"},
		{"PublishHash", "benw", pubHash},
		{"PanelHashItself", "benw", panelHash},
		{"Empty", "benw", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := b.login(tt.user, tt.pw); got != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", got)
			}
			if len(b.res.Cookies()) != 0 {
				t.Error("a refused login set a cookie")
			}
		})
	}
	if got := b.get("/panel/channels/benw"); got != http.StatusSeeOther {
		t.Errorf("dashboard without a session: %d, want 303 to login", got)
	}
}

// TestLoginLimiterNeverLocksOutOwner: an address guessing at benw's password is slowed
// and then blocked, and the owner still signs in from a clean address.
func TestLoginLimiterNeverLocksOutOwner(t *testing.T) {
	f := newFixture(t)
	lim := policy.NewPasswords()
	lim.Now = f.clock.Now
	var mu sync.Mutex
	addr := "198.51.100.1:1234"
	h, err := panel.NewHandler(testutil.Discard(), f.ops, f.db, panel.Options{Now: f.clock.Now, Limiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	pre, tok := preForm(t, h)
	from := func(a string, name, pw string) (int, []*http.Cookie) {
		mu.Lock()
		defer mu.Unlock()
		req := httptest.NewRequest(http.MethodPost, "/panel/login", strings.NewReader(url.Values{"username": {name}, "password": {pw}, "csrf": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(pre)
		req.RemoteAddr = a
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Result().Cookies()
	}
	for i := range 30 {
		from(addr, "benw", "guess number "+string(rune('a'+i)))
		f.clock.Add(time.Second)
	}
	// The attacker's address is now refused even with the right password.
	if code, _ := from(addr, "benw", benwPass); code == http.StatusSeeOther {
		t.Error("the guessing address signed in: it was never slowed")
	}
	// The owner, from a clean address, is not.
	code, cookies := from("203.0.113.5:5555", "benw", benwPass)
	if code != http.StatusSeeOther || len(cookies) != 1 {
		t.Errorf("owner from a clean address: status %d, want 303 with a session", code)
	}
	if lim.BcryptRuns() > 12 {
		t.Errorf("bcrypt ran %d times for 31 attempts from one address: the limiter did not cut in", lim.BcryptRuns())
	}
}

func TestCSRFRefusedChangesNothing(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	b.mustLogin("benw", benwPass)
	csrf, nonce := b.form("/panel/channels/benw")
	changes := f.changes()
	before := keyFPs(t, f.db, "benw")
	_, hashBefore, _ := f.db.PanelAccount(t.Context(), "benw")
	for _, tt := range []struct {
		path string
		form url.Values
	}{
		{"/panel/channels/benw/keys", url.Values{"label": {"x"}, "nonce": {nonce}}},
		{"/panel/channels/benw/keys/reset", url.Values{"nonce": {nonce}}},
		{"/panel/channels/benw/keys/revoke", url.Values{"fingerprint": {before[0]}}},
		{"/panel/password", url.Values{"current": {benwPass}, "password": {"another password!"}, "confirm": {"another password!"}}},
		{"/panel/signout-everywhere", url.Values{}},
		{"/panel/logout", url.Values{}},
	} {
		for name, token := range map[string]string{"Missing": "", "Wrong": csrf[:len(csrf)-2] + "xx", "OtherSession": otherCSRF(t, f)} {
			form := url.Values{}
			for k, v := range tt.form {
				form[k] = v
			}
			if token != "" {
				form.Set("csrf", token)
			}
			if got := b.post(tt.path, form); got != http.StatusForbidden {
				t.Errorf("POST %s with %s token: %d, want 403", tt.path, name, got)
			}
			if keyRE.MatchString(b.body) {
				t.Errorf("POST %s with %s token showed a key", tt.path, name)
			}
		}
	}
	if after := keyFPs(t, f.db, "benw"); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("keys changed: %v -> %v", before, after)
	}
	if _, h, _ := f.db.PanelAccount(t.Context(), "benw"); h != hashBefore {
		t.Error("panel password changed")
	}
	if got := b.get("/panel/channels/benw"); got != http.StatusOK {
		t.Errorf("session ended by refused POSTs: %d", got)
	}
	// A cross-site browser POST is refused even with the right token.
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/panel/channels/benw/keys",
		strings.NewReader(url.Values{"csrf": {csrf}, "label": {"x"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if got := b.do(req); got != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", got)
	}
	if f.changes() != changes {
		t.Errorf("policy-changed signals: %d, want none", f.changes()-changes)
	}
}

// otherCSRF is a valid token of alice's session: not benw's.
func otherCSRF(t *testing.T, f *fixture) string {
	a := f.browser()
	a.mustLogin("alice", alicePass)
	c, _ := a.form("/panel/channels/alice")
	return c
}

// TestStreamerSeesOnlyOwnChannel: every page and action naming alice's channel answers
// benw 404 and changes nothing, whatever the form fields say; and benw's own actions
// never reach alice's channel through forged fields.
func TestStreamerSeesOnlyOwnChannel(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	b.mustLogin("benw", benwPass)
	csrf, nonce := b.form("/panel/channels/benw")
	aliceKeys := keyFPs(t, f.db, "alice")
	forged := url.Values{"csrf": {csrf}, "nonce": {nonce}, "label": {"x"}, "fingerprint": {aliceKeys[0]},
		"name": {"alice"}, "user": {"alice"}, "channel": {"alice"}, "confirm": {"RESET"}}
	if got := b.get("/panel/channels/alice"); got != http.StatusNotFound || strings.Contains(b.body, aliceKeys[0]) {
		t.Errorf("GET alice's page: %d, want 404 without her keys", got)
	}
	for _, p := range []string{
		"/panel/channels/alice/keys", "/panel/channels/alice/keys/reset", "/panel/channels/alice/keys/revoke",
		"/panel/channels/alice/ban", "/panel/channels/alice/unban", "/panel/channels/alice/invite",
		"/panel/channels", "/panel/breach", "/panel/channels/benw/ban", "/panel/channels/benw/invite",
	} {
		forged.Set("nonce", stagedoor.NewPanelToken())
		if got := b.post(p, forged); got != http.StatusNotFound {
			t.Errorf("POST %s as streamer benw: %d, want 404", p, got)
		}
		if keyRE.MatchString(b.body) {
			t.Errorf("POST %s showed a key", p)
		}
	}
	// benw's own revoke with alice's fingerprint: not found in benw's keys.
	if got := b.post("/panel/channels/benw/keys/revoke", forged); got != http.StatusNotFound {
		t.Errorf("revoke of alice's fingerprint on benw's channel: %d, want 404", got)
	}
	if after := keyFPs(t, f.db, "alice"); strings.Join(after, ",") != strings.Join(aliceKeys, ",") {
		t.Errorf("alice's keys changed: %v -> %v", aliceKeys, after)
	}
	if u, _ := f.db.UserByName(t.Context(), "alice"); !u.Active {
		t.Error("alice was banned")
	}
	if us, _ := f.db.Users(t.Context()); len(us) != 2 {
		t.Errorf("users = %d, want 2", len(us))
	}
	// benw adding a key with forged channel fields: the key is benw's.
	forged.Set("nonce", stagedoor.NewPanelToken())
	if got := b.post("/panel/channels/benw/keys", forged); got != http.StatusOK {
		t.Fatalf("add own key: %d", got)
	}
	k := keyRE.FindString(b.body)
	if o, err := f.db.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(k)); err != nil || o.UserName != "benw" {
		t.Errorf("key owner = %+v %v, want benw", o, err)
	}
	if got := b.get("/panel/"); got != http.StatusSeeOther || b.res.Header.Get("Location") != "/panel/channels/benw" {
		t.Errorf("streamer home: %d %s, want a redirect to their own channel", got, b.res.Header.Get("Location"))
	}
}

// TestKeyShownOnce: the key is in the POST's response with the OBS fields, and in no
// later response: not the page, not a reload (re-POST of the same form), not the list.
func TestKeyShownOnce(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	b.mustLogin("benw", benwPass)
	csrf, nonce := b.form("/panel/channels/benw")
	form := url.Values{"csrf": {csrf}, "nonce": {nonce}, "label": {"<script>alert(1)</script>"}}
	if got := b.post("/panel/channels/benw/keys", form); got != http.StatusOK {
		t.Fatalf("add key: %d %s", got, b.body)
	}
	key := keyRE.FindString(b.body)
	if key == "" {
		t.Fatal("no key in the add response")
	}
	for _, want := range []string{`value="rtmp://stream.example:1935/live"`, `value="` + key + `"`, ">Server<", ">Stream Key<"} {
		if !strings.Contains(b.body, want) {
			t.Errorf("add response lacks %q", want)
		}
	}
	if strings.Contains(b.body, "<script>alert(1)</script>") || !strings.Contains(b.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("label not escaped in the add response")
	}
	if o, err := f.db.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(key)); err != nil || o.UserName != "benw" {
		t.Errorf("shown key does not verify for benw: %v", err)
	}
	nKeys := len(keyFPs(t, f.db, "benw"))

	// Reload: the browser re-posts the same form.
	if got := b.post("/panel/channels/benw/keys", form); got != http.StatusSeeOther {
		t.Errorf("re-POST: %d, want 303", got)
	}
	if keyRE.MatchString(b.body) || len(keyFPs(t, f.db, "benw")) != nKeys {
		t.Error("a re-POST showed a key or made another")
	}
	for _, p := range []string{"/panel/channels/benw", "/panel/channels/benw", "/panel/"} {
		b.get(p)
		if strings.Contains(b.body, key) || keyRE.MatchString(b.body) {
			t.Errorf("GET %s shows a key", p)
		}
	}
	b.get("/panel/channels/benw")
	if strings.Contains(b.body, "<script>alert(1)</script>") || !strings.Contains(b.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("label not escaped in the key list")
	}
	// Reset: one new key, shown once; the old ones stop.
	csrf, nonce = b.form("/panel/channels/benw")
	if got := b.post("/panel/channels/benw/keys/reset", url.Values{"csrf": {csrf}, "nonce": {nonce}}); got != http.StatusOK {
		t.Fatalf("reset: %d", got)
	}
	nk := keyRE.FindString(b.body)
	if nk == "" || nk == key {
		t.Fatal("reset showed no new key")
	}
	if _, err := f.db.UserByKeyDigest(t.Context(), stagedoor.KeyDigest(key)); err == nil {
		t.Error("old key still verifies after reset")
	}
	b.get("/panel/channels/benw")
	if keyRE.MatchString(b.body) {
		t.Error("the reset key is on the page after")
	}
	// Revoke with keep-live: the key goes, audited via the panel with the account.
	fps := keyFPs(t, f.db, "benw")
	csrf, _ = b.form("/panel/channels/benw")
	if got := b.post("/panel/channels/benw/keys/revoke", url.Values{"csrf": {csrf}, "fingerprint": {fps[0]}, "keep_live": {"1"}}); got != http.StatusSeeOther {
		t.Fatalf("revoke: %d", got)
	}
	if len(keyFPs(t, f.db, "benw")) != 0 {
		t.Error("key not revoked")
	}
	if ri, err := f.db.RevokedKey(t.Context(), stagedoor.KeyDigest(nk)); err != nil || !ri.KeepLive {
		t.Errorf("revocation = %+v %v, want keep-live", ri, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var panelEntries []string
	for _, e := range f.audit {
		if e.Protocol == manage.ViaPanel {
			panelEntries = append(panelEntries, e.Reason)
			if e.IP != "127.0.0.1" || e.User != "benw" {
				t.Errorf("panel audit entry %+v: want IP 127.0.0.1, user benw", e)
			}
		}
	}
	if len(panelEntries) != 3 || !strings.HasSuffix(panelEntries[2], ", keep-live (by benw)") {
		t.Errorf("panel audit reasons = %q", panelEntries)
	}
	if f.nChanges < 3 { // f.mu is held
		t.Errorf("policy-changed signals = %d, want one per key action", f.nChanges)
	}
}

func TestSessionTimeouts(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	b.mustLogin("benw", benwPass)
	// Used every 20 minutes: the idle timeout never strikes, the absolute one does.
	for range 40 {
		f.clock.Add(20 * time.Minute)
		if got := b.get("/panel/channels/benw"); got != http.StatusOK {
			break
		}
	}
	if got := b.get("/panel/channels/benw"); got != http.StatusSeeOther {
		t.Errorf("after 12 h of use: %d, want 303 to login", got)
	}
	if f.clock.Now().Sub(time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)) != 12*time.Hour {
		t.Errorf("session ended at %v, want at exactly 12 h", f.clock.Now())
	}

	b.mustLogin("benw", benwPass)
	f.clock.Add(29 * time.Minute)
	if got := b.get("/panel/channels/benw"); got != http.StatusOK {
		t.Errorf("after 29 idle minutes: %d, want 200", got)
	}
	f.clock.Add(30 * time.Minute)
	if got := b.get("/panel/channels/benw"); got != http.StatusSeeOther {
		t.Errorf("after 30 idle minutes: %d, want 303 to login", got)
	}
}

func TestSessionsEnd(t *testing.T) {
	f := newFixture(t)
	t.Run("SignOutEverywhere", func(t *testing.T) {
		one, two := f.browser(), f.browser()
		one.mustLogin("benw", benwPass)
		two.mustLogin("benw", benwPass)
		other := f.browser()
		other.mustLogin("alice", alicePass)
		csrf, _ := one.form("/panel/channels/benw")
		if got := one.post("/panel/signout-everywhere", url.Values{"csrf": {csrf}}); got != http.StatusOK {
			t.Fatalf("sign out everywhere: %d", got)
		}
		for i, b := range []*browser{one, two} {
			if got := b.get("/panel/channels/benw"); got != http.StatusSeeOther {
				t.Errorf("browser %d after sign-out everywhere: %d, want 303", i, got)
			}
		}
		if got := other.get("/panel/channels/alice"); got != http.StatusOK {
			t.Errorf("alice signed out by benw: %d", got)
		}
	})
	t.Run("PasswordChange", func(t *testing.T) {
		one, two := f.browser(), f.browser()
		one.mustLogin("benw", benwPass)
		two.mustLogin("benw", benwPass)
		csrf, _ := one.form("/panel/channels/benw")
		if got := one.post("/panel/password", url.Values{"csrf": {csrf}, "current": {"wrong password!"},
			"password": {"brand new password"}, "confirm": {"brand new password"}}); got != http.StatusForbidden {
			t.Errorf("change with a wrong current password: %d, want 403", got)
		}
		if got := one.post("/panel/password", url.Values{"csrf": {csrf}, "current": {benwPass},
			"password": {"short"}, "confirm": {"short"}}); got != http.StatusBadRequest {
			t.Errorf("change to a weak password: %d, want 400", got)
		}
		if got := one.post("/panel/password", url.Values{"csrf": {csrf}, "current": {benwPass},
			"password": {"brand new password"}, "confirm": {"brand new password"}}); got != http.StatusOK {
			t.Fatalf("change password: %d %s", got, one.body)
		}
		for i, b := range []*browser{one, two} {
			if got := b.get("/panel/channels/benw"); got != http.StatusSeeOther {
				t.Errorf("browser %d after password change: %d, want 303", i, got)
			}
		}
		if got := one.login("benw", benwPass); got != http.StatusUnauthorized {
			t.Errorf("old password: %d, want 401", got)
		}
		one.mustLogin("benw", "brand new password")
	})
	t.Run("Ban", func(t *testing.T) {
		s := f.browser()
		s.mustLogin("alice", alicePass)
		op := f.browser()
		op.mustLogin("boss", opPass)
		csrf, _ := op.form("/panel/channels/alice")
		if got := op.post("/panel/channels/alice/ban", url.Values{"csrf": {csrf}}); got != http.StatusSeeOther {
			t.Fatalf("ban: %d", got)
		}
		if got := s.get("/panel/channels/alice"); got != http.StatusSeeOther {
			t.Errorf("banned streamer's session: %d, want 303", got)
		}
		if got := s.login("alice", alicePass); got != http.StatusUnauthorized {
			t.Errorf("banned streamer signs in: %d, want 401", got)
		}
		if u, _ := f.db.UserByName(t.Context(), "alice"); u.Active {
			t.Error("alice not banned")
		}
	})
	t.Run("Logout", func(t *testing.T) {
		b := f.browser()
		b.mustLogin("boss", opPass)
		csrf, _ := b.form("/panel/")
		if got := b.post("/panel/logout", url.Values{"csrf": {csrf}}); got != http.StatusSeeOther {
			t.Fatalf("logout: %d", got)
		}
		if got := b.get("/panel/"); got != http.StatusSeeOther {
			t.Errorf("after logout: %d, want 303", got)
		}
	})
}

func TestInvite(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if _, err := f.ops.CreateUser(ctx, manage.Actor{Via: manage.ViaCLI}, "carol"); err != nil {
		t.Fatal(err)
	}
	tok, _, err := f.ops.Invite(ctx, manage.Actor{Via: manage.ViaCLI}, "carol")
	if err != nil {
		t.Fatal(err)
	}
	b := f.browser()
	if got := b.get("/panel/invite/" + tok); got != http.StatusOK || !strings.Contains(b.body, "carol") {
		t.Fatalf("invite page: %d", got)
	}
	if got := b.acceptInvite(tok, "weak", "weak"); got != http.StatusBadRequest {
		t.Errorf("weak password: %d, want 400", got)
	}
	if got := b.acceptInvite(tok, "carol password", "carol passwort"); got != http.StatusBadRequest {
		t.Errorf("mismatch: %d, want 400", got)
	}
	if got := b.acceptInvite(tok, "carol password", "carol password"); got != http.StatusOK {
		t.Fatalf("set password: %d %s", got, b.body)
	}
	if got := b.get("/panel/invite/" + tok); got != http.StatusNotFound {
		t.Errorf("used invite page: %d, want 404", got)
	}
	if got := b.acceptInvite(tok, "mallory password", "mallory password"); got != http.StatusNotFound {
		t.Errorf("second use: %d, want 404", got)
	}
	if got := b.login("carol", "mallory password"); got != http.StatusUnauthorized {
		t.Errorf("second use's password signs in: %d", got)
	}
	b.mustLogin("carol", "carol password")

	// Expiry.
	tok2, _, err := f.ops.Invite(ctx, manage.Actor{Via: manage.ViaCLI}, "carol")
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Add(stagedoor.InviteTTL)
	if got := b.get("/panel/invite/" + tok2); got != http.StatusNotFound {
		t.Errorf("expired invite page: %d, want 404", got)
	}
	if got := b.acceptInvite(tok2, "late password!", "late password!"); got != http.StatusNotFound {
		t.Errorf("expired invite: %d, want 404", got)
	}
	if got := b.get("/panel/invite/not-a-token"); got != http.StatusNotFound {
		t.Errorf("unknown invite: %d, want 404", got)
	}
}

func TestOperatorPages(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	b.mustLogin("boss", opPass)
	if got := b.get("/panel/?q=ali"); got != http.StatusOK || !strings.Contains(b.body, "/panel/channels/alice") || strings.Contains(b.body, "/panel/channels/benw") {
		t.Errorf("search: %d", got)
	}
	csrf, nonce := b.form("/panel/")
	if got := b.post("/panel/channels", url.Values{"csrf": {csrf}, "nonce": {nonce}, "name": {"dave"}}); got != http.StatusOK || !keyRE.MatchString(b.body) {
		t.Fatalf("create channel: %d", got)
	}
	csrf, _ = b.form("/panel/channels/dave")
	if got := b.post("/panel/channels/dave/invite", url.Values{"csrf": {csrf}}); got != http.StatusOK {
		t.Fatalf("invite: %d", got)
	}
	m := regexp.MustCompile(`/panel/invite/([A-Za-z0-9_-]{43})`).FindStringSubmatch(b.body)
	if m == nil {
		t.Fatal("no invite link shown")
	}
	if inv, err := f.db.PanelInvite(t.Context(), stagedoor.TokenDigest(m[1])); err != nil || inv.Channel != "dave" {
		t.Errorf("shown invite: %+v %v", inv, err)
	}
	// Breach: without the confirmation nothing changes.
	before := keyFPs(t, f.db, "benw")
	if got := b.post("/panel/breach", url.Values{"csrf": {csrf}}); got != http.StatusOK || !strings.Contains(b.body, "Type RESET") {
		t.Errorf("breach without confirm: %d", got)
	}
	if after := keyFPs(t, f.db, "benw"); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Error("keys reset without confirmation")
	}
	if got := b.post("/panel/breach", url.Values{"csrf": {csrf}, "confirm": {"RESET"}}); got != http.StatusOK || !strings.Contains(b.body, "3 channels") {
		t.Errorf("breach: %d %s", got, b.body)
	}
	if after := keyFPs(t, f.db, "benw"); len(after) != 1 || after[0] == before[0] {
		t.Errorf("benw's keys after breach: %v (before %v)", after, before)
	}
	if keyRE.MatchString(b.body) {
		t.Error("breach page shows keys")
	}
}
