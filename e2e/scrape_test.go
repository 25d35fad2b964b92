package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/plugin"
	"github.com/stagedoor/stagedoor/webhook"
)

// scrapeWindow is T11's fragment length: any 12-character substring of a secret found
// somewhere counts as a leak of that secret, so a truncated, split or partly re-encoded
// copy is caught as well as a whole one.
const scrapeWindow = 12

// Credential classes; a source may be allowed to hold a class (the DB holds the hash).
const (
	classKey      = "stream key"
	classPassword = "plaintext password"
	classHash     = "bcrypt hash"
	classRelay    = "relay password"
	classHook     = "hook secret"
	classAdminPW  = "MediaMTX admin password"
	classToken    = "admin API token"
	classWebhook  = "webhook signing secret"
	// classTried is every wrong credential sent in the session (guesses and near misses
	// of real ones): a log of a denial must not record what was tried either.
	classTried = "wrong credential tried"
)

// scrapeSecret is one credential the scrape looks for. Reports name it and give its
// fingerprint, never its value.
type scrapeSecret struct {
	class string
	name  string
	value string
	forms []string // value and the encodings it travels in
}

// scraper finds secrets, whole or as any scrapeWindow-long fragment, in text.
type scraper struct {
	mu      sync.Mutex
	secrets []*scrapeSecret
	windows map[string]*scrapeSecret // fragment -> the first secret registered with it
}

func newScraper() *scraper { return &scraper{windows: map[string]*scrapeSecret{}} }

// add registers a secret with its encoded forms. Real credentials are added before the
// wrong ones tried, so a fragment a near miss shares with its original counts as the
// original.
func (sc *scraper) add(class, name, value string, forms ...string) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if len(value) < scrapeWindow {
		panic(fmt.Sprintf("secret %s is shorter than %d characters", name, scrapeWindow))
	}
	s := &scrapeSecret{class: class, name: name, value: value}
	for _, f := range append([]string{value}, forms...) {
		if f != "" && !contains(s.forms, f) {
			s.forms = append(s.forms, f)
		}
	}
	sc.secrets = append(sc.secrets, s)
	for _, f := range s.forms {
		for i := 0; i+scrapeWindow <= len(f); i++ {
			if _, ok := sc.windows[f[i:i+scrapeWindow]]; !ok {
				sc.windows[f[i:i+scrapeWindow]] = s
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

type scrapeHit struct {
	s     *scrapeSecret
	whole bool
	off   int
}

// find returns the first hit of each secret in text. Secrets of the allowed classes are
// blanked out first (same length, so offsets hold), so that neither they nor anything
// that is merely part of them (a truncated hash tried as a password) counts.
func (sc *scraper) find(text string, allowed []string) []scrapeHit {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, s := range sc.secrets {
		if contains(allowed, s.class) {
			for _, f := range s.forms {
				text = strings.ReplaceAll(text, f, strings.Repeat("\x00", len(f)))
			}
		}
	}
	var hits []scrapeHit
	seen := map[*scrapeSecret]bool{}
	for _, s := range sc.secrets {
		if contains(allowed, s.class) {
			continue
		}
		for _, f := range s.forms {
			if i := strings.Index(text, f); i >= 0 {
				hits = append(hits, scrapeHit{s: s, whole: true, off: i})
				seen[s] = true
				break
			}
		}
	}
	for i := 0; i+scrapeWindow <= len(text); i++ {
		s, ok := sc.windows[text[i:i+scrapeWindow]]
		if ok && !seen[s] && !contains(allowed, s.class) {
			seen[s] = true
			hits = append(hits, scrapeHit{s: s, off: i})
		}
	}
	return hits
}

// mask replaces every whole secret known so far, for messages that quote output.
func (sc *scraper) mask(text string) string {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, s := range sc.secrets {
		for _, f := range s.forms {
			text = strings.ReplaceAll(text, f, "<"+s.class+">")
		}
	}
	return text
}

func (h scrapeHit) String() string {
	how := "a " + strconv.Itoa(scrapeWindow) + "-character fragment of"
	if h.whole {
		how = "the whole"
	}
	return fmt.Sprintf("%s %s: %s (fp %s) at byte %d", how, h.s.class, h.s.name, stagedoor.Fingerprint(h.s.value), h.off)
}

// evidence is one thing an attacker or a log reader could see.
type evidence struct {
	where   string
	text    string
	allowed []string // classes that legitimately live here
}

// collector gathers evidence from the test and from the webhook receiver's goroutines.
type collector struct {
	mu       sync.Mutex
	items    []evidence
	excluded []evidence // legitimately carries secrets; kept to prove the scanner sees them
}

func (c *collector) add(where, text string, allowed ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.items = append(c.items, evidence{where: where, text: text, allowed: allowed})
}

// snapshot returns what was collected so far.
func (c *collector) snapshot() (items, excluded []evidence) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]evidence(nil), c.items...), append([]evidence(nil), c.excluded...)
}

func (c *collector) exclude(where, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.excluded = append(c.excluded, evidence{where: where, text: text})
}

// do sends req and records the whole answer (status line, headers and body) under where.
func (c *collector) do(t testing.TB, client *http.Client, where string, req *http.Request) (int, string) {
	t.Helper()
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var b strings.Builder
	b.WriteString(res.Status + "\n")
	_ = res.Header.Write(&b)
	b.Write(body)
	c.add(where, b.String())
	return res.StatusCode, string(body)
}

// procSampler reads the argv of every process on the machine, /proc/<pid>/cmdline, over
// and over, keeping each distinct (pid, argv) it saw. Short-lived processes such as
// `stagedoor hook available` are caught when a round falls inside their life.
type procSampler struct {
	mu     sync.Mutex
	seen   map[string]procEntry
	rounds int
	stop   chan struct{}
	done   chan struct{}
}

type procEntry struct {
	pid  int
	argv []string
}

func startProcSampler(every time.Duration) *procSampler {
	p := &procSampler{seen: map[string]procEntry{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			p.round()
			select {
			case <-p.stop:
				p.round()
				return
			case <-time.After(every):
			}
		}
	}()
	return p
}

func (p *procSampler) round() {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 { // gone, not ours to read, or a kernel thread
			continue
		}
		k := e.Name() + "\x00" + string(b)
		p.mu.Lock()
		if _, ok := p.seen[k]; !ok {
			p.seen[k] = procEntry{pid: pid, argv: strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")}
		}
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.rounds++
	p.mu.Unlock()
}

func (p *procSampler) roundsDone() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rounds
}

func (p *procSampler) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

func (p *procSampler) entries() []procEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]procEntry, 0, len(p.seen))
	for _, e := range p.seen {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

func randomSecret(t testing.TB) string {
	t.Helper()
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// nearMiss returns s with the character at i changed: the typo of a real credential.
func nearMiss(s string, i int) string {
	b := []byte(s)
	if b[i] == 'a' {
		b[i] = 'b'
	} else {
		b[i] = 'a'
	}
	return string(b)
}

// TestSecretScrape is T11 and T12 of docs/threats.md on one stack: a scripted session
// (key publish, plaintext and hash publish over RTMP; at the same time live sessions over
// SRT, RTSP and WHIP with a stream key as the password or Bearer token and with a bcrypt
// hash as the password (Basic on RTSP and WHIP), which `key reset` and `user passwd` then
// kick; key rotation with `key add` and `key reset` plus an admin-API key, hooks and
// webhooks firing on every go-live and offline, then 50 wrong attempts), after which
// every surface (read while the streams are live, after the kicks and at the end) is
// searched for every secret, whole and as
// any 12-character fragment. While streams are live, the argv of every process on the
// machine (/proc/*/cmdline, sampled all session long, and `ps -ww -eo pid,args`) is
// searched as well. /proc/*/environ is not: it legitimately holds the relay and hook
// secrets for MediaMTX and its hooks, and is readable only by the service user.
//
// Searched: all output of `stagedoor run` (MediaMTX's log at the shipped level and hook
// output included), every auth reply to bodies posted as MediaMTX posts them, the public
// status API and pages, the public HLS playlists, the admin API, /metrics and /healthz,
// webhook deliveries, CLI stderr, the stdout of CLI commands that do not issue a
// credential, and the database files after shutdown (which may hold the bcrypt hash:
// that is the credential column; keys are stored only as digests).
//
// Not searched, by design: the stdout of CLI commands that issue a credential (user add,
// key add, key reset, user passwd, stream add) and the admin API's answer to key
// creation, which show the new key or hash once because the operator must hand it on;
// and the argv of our own ffmpeg publishers, which stand in for the streamer's encoder.
// The scanner is shown to find the secrets in exactly those, so the search is not vacuous.
func TestSecretScrape(t *testing.T) {
	began := time.Now()
	sc := newScraper()
	col := &collector{}
	client := &http.Client{Timeout: 20 * time.Second}

	relayPass, hookSecret := randomSecret(t), randomSecret(t)
	adminPass, adminTok, whSecret := randomSecret(t), randomSecret(t), randomSecret(t)
	sc.add(classRelay, "relay password", relayPass)
	sc.add(classHook, "hook secret", hookSecret)
	sc.add(classAdminPW, "MediaMTX admin password", adminPass)
	sc.add(classToken, "admin API token", adminTok)
	sc.add(classWebhook, "webhook signing secret", whSecret)

	var whMu sync.Mutex
	whEvents := map[string]int{}
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s\n", r.Method, r.URL)
		_ = r.Header.Write(&b)
		b.Write(body)
		ev := r.Header.Get(webhook.HeaderEvent)
		col.add("webhook delivery "+ev, b.String())
		whMu.Lock()
		whEvents[ev]++
		whMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hooks.Close()

	// Every internal secret is chosen here, so that the test knows them all; the
	// positive controls below prove that the stack really uses these values.
	s := startStack(t, stackOptions{
		args: []string{"--webhook-url", hooks.URL + "/hooks"},
		env: []string{
			"STAGEDOOR_RELAY_PASSWORD=" + relayPass, // overrides the harness's guessable one
			"STAGEDOOR_HOOK_SECRET=" + hookSecret,   // `run` would otherwise make a fresh one
			"STAGEDOOR_ADMIN_PASSWORD=" + adminPass,
			"STAGEDOOR_ADMIN_TOKEN=" + adminTok,
			"STAGEDOOR_WEBHOOK_SECRET=" + whSecret,
		},
	})
	s.relayPass, s.adminPass = relayPass, adminPass
	procs := startProcSampler(100 * time.Millisecond)
	defer procs.halt()

	// Our publishers: their argv holds the key or password, as the encoder's config does.
	var pubMu sync.Mutex
	pubPIDs := map[int]bool{}
	track := func(p *publisher) *publisher {
		pubMu.Lock()
		pubPIDs[p.cmd.Process.Pid] = true
		pubMu.Unlock()
		return p
	}

	// cli runs the CLI with stdin. Its stderr is always searched; its stdout too, unless
	// the command issues a credential, which it prints once by design for the operator.
	cli := func(issues bool, stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(s.bin, append(args, "--db", s.db)...)
		cmd.Env = s.cliEnv()
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		what := "cli `stagedoor " + strings.Join(args, " ") + "`"
		col.add(what+" stderr", stderr.String())
		if issues {
			col.exclude(what+" stdout (issues a credential)", stdout.String())
		} else {
			col.add(what+" stdout", stdout.String())
		}
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, sc.mask(stderr.String()))
		}
		return stdout.String()
	}
	get := func(where, u string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return col.do(t, client, where, req)
	}
	admin := func(method, path, token string, body any) (int, string) {
		t.Helper()
		return col.do(t, client, "admin API "+method+" "+path, s.adminRequest(method, path, token, body))
	}
	// auth posts a body as MediaMTX does (token is a copy of password) straight to the
	// internal auth endpoint and checks the decision.
	authN := 0
	auth := func(what string, allow bool, user, pass, ip, action, path, protocol, query string) {
		t.Helper()
		authN++
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", authN, authN)
		b, _ := json.Marshal(map[string]any{
			"user": user, "password": pass, "token": pass, "ip": ip, "action": action, "path": path,
			"protocol": protocol, "id": id, "query": query, "userAgent": "FMLE/3.0 (compatible; Lavf59.27.100)",
		})
		req, _ := http.NewRequest(http.MethodPost, s.url(s.internal, "/mediamtx/auth"), bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		code, _ := col.do(t, client, "auth reply: "+what, req)
		if got := code/100 == 2; got != allow {
			t.Errorf("auth %s: status %d, allow = %v, want %v", what, code, got, allow)
		}
	}
	hookPost := func(what, secret string, want int) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, s.url(s.internal, "/internal/hook"),
			strings.NewReader(`{"event":"unavailable","path":"live/nosuchname","source_id":"e2e-scrape"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(plugin.HookSecretHeader, secret)
		if code, _ := col.do(t, client, "hook endpoint reply: "+what, req); code != want {
			t.Errorf("hook endpoint %s: %d, want %d", what, code, want)
		}
	}
	// fetchHLS plays nothing: it fetches a public playlist and its media playlists, as a
	// viewer's player does, and keeps their text.
	fetchHLS := func(name string) {
		t.Helper()
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
		base, _ := url.Parse(s.hlsURL(name))
		_, body := get("public HLS playlist "+name, base.String())
		n := 0
		for _, line := range strings.Split(body, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") || n >= 2 {
				continue
			}
			ref, err := url.Parse(line)
			if err != nil {
				continue
			}
			u := base.ResolveReference(ref)
			if strings.HasSuffix(u.Path, ".m3u8") {
				n++
				req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
				col.do(t, c, "public HLS media playlist "+name, req)
			}
		}
	}
	// The sessions on SRT, RTSP and WHIP: three key users with the key as the password
	// (the Bearer token on WHIP) on their public names, and bob's streams with his
	// bcrypt hash as the password (Basic on RTSP and WHIP).
	otherLive := []string{"key_srt", "key_rtsp", "key_whip", "hash_srt", "hash_rtsp", "hash_whip"}
	// surfaces reads everything public and admin while the session is in some state.
	surfaces := func(round string, keys ...string) {
		t.Helper()
		for _, name := range append([]string{"benw", "alice", "scrape_plain", "scrape_hash", "nosuch", "bob"}, otherLive...) {
			get("public status API "+name+" ("+round+")", s.url(s.public, "/api/v1/channels/"+name))
			get("channel page "+name+" ("+round+")", s.url(s.public, "/"+name))
		}
		get("index page ("+round+")", s.url(s.public, "/"))
		for i, k := range keys {
			// A key asked for by name: the answers must not echo it, nor the log record it.
			get(fmt.Sprintf("public status API for key %d (%s)", i, round), s.url(s.public, "/api/v1/channels/"+k))
			get(fmt.Sprintf("channel page for key %d (%s)", i, round), s.url(s.public, "/"+k))
			get(fmt.Sprintf("HLS playlist of key path %d, anonymous (%s)", i, round), s.hlsURL(k))
		}
		for _, p := range []string{"/users", "/users/benw", "/users/alice", "/users/benw/keys", "/users/alice/keys",
			"/streams", "/live", "/audit?since=1h"} {
			if code, _ := admin(http.MethodGet, p, adminTok, nil); code != http.StatusOK {
				t.Errorf("admin GET %s: %d", p, code)
			}
		}
		get("metrics ("+round+")", s.url(s.internal, "/metrics"))
		get("healthz ("+round+")", s.url(s.internal, "/healthz"))
		cli(false, "", "user", "list")
		cli(false, "", "user", "list", "--json")
		cli(false, "", "key", "list", "benw", "--json")
		cli(false, "", "key", "list", "alice")
		cli(false, "", "key", "list", "key_whip", "--json")
		cli(false, "", "stream", "list", "--json")
		cli(false, "", "stream", "list")
	}

	// Positive controls: each internal secret set above is the one in use.
	if code, _ := admin(http.MethodGet, "/users", adminTok, nil); code != http.StatusOK {
		t.Fatalf("admin API with the token: %d; STAGEDOOR_ADMIN_TOKEN not in use?", code)
	}
	hookPost("right secret", hookSecret, http.StatusNoContent)
	auth("admin credential for MediaMTX's API", true, "stagedoor-admin", adminPass, "127.0.0.1", "api", "", "", "")

	// Users, a password and password streams.
	key1 := jsonField(t, cli(true, "", "user", "add", "benw", "--json"), "stream_key")
	aliceKey := jsonField(t, cli(true, "", "user", "add", "alice", "--json"), "stream_key")
	sc.add(classKey, "benw's first key", key1)
	sc.add(classKey, "alice's key", aliceKey)
	cli(true, "", "stream", "add", "scrape_plain", "--user", "alice")
	cli(true, "", "stream", "add", "scrape_hash", "--user", "alice")
	// Spaces, so that the password travels encoded (+ in a query, %20 in a path).
	password := "pw " + randomHex(t, 6) + " " + randomHex(t, 6)
	sc.add(classPassword, "alice's password", password, url.QueryEscape(password), url.PathEscape(password))
	hash := jsonField(t, cli(true, password+"\n", "user", "passwd", "alice", "--json"), "password_hash")
	if !strings.HasPrefix(hash, "$2") {
		t.Fatalf("user passwd returned no bcrypt hash")
	}
	sc.add(classHash, "alice's bcrypt hash", hash, strings.ReplaceAll(hash, "$", "%24"), url.QueryEscape(hash))
	auth("relay reading a key path", true, "stagedoor-relay", relayPass, "127.0.0.1", "read", "live/"+key1, "rtsp", "")
	otherKeys := map[string]string{}
	for _, n := range []string{"key_srt", "key_rtsp", "key_whip"} {
		otherKeys[n] = jsonField(t, cli(true, "", "user", "add", n, "--json"), "stream_key")
		sc.add(classKey, n+"'s key", otherKeys[n])
	}
	cli(true, "", "user", "add", "bob", "--json")
	bobPassword := "bob " + randomHex(t, 6) + " " + randomHex(t, 6)
	sc.add(classPassword, "bob's password", bobPassword, url.QueryEscape(bobPassword), url.PathEscape(bobPassword))
	bobHash := jsonField(t, cli(true, bobPassword+"\n", "user", "passwd", "bob", "--json"), "password_hash")
	sc.add(classHash, "bob's bcrypt hash", bobHash, strings.ReplaceAll(bobHash, "$", "%24"), url.QueryEscape(bobHash),
		url.PathEscape(bobHash), url.UserPassword("bob", bobHash).String())
	for _, n := range []string{"hash_srt", "hash_rtsp", "hash_whip"} {
		cli(true, "", "stream", "add", n, "--user", "bob")
	}

	// Live session: a key publish and both password forms over RTMP, and the key and
	// hash sessions over SRT, RTSP and WHIP, all at once.
	t.Logf("setup done after %v", time.Since(began).Round(time.Millisecond))
	liveFrom := procs.roundsDone()
	pubKey := track(s.publish(s.rtmpURL(key1)))
	pubPlain := track(s.publish(s.rtmpURL("scrape_plain?user=alice&pass=" + url.QueryEscape(password))))
	pubHash := track(s.publish(s.rtmpURL("scrape_hash?user=alice&pass=" + hash)))
	others := map[string]*publisher{
		"key_srt":   s.publishWith("mpegts", s.srtURL("publish:live/key_srt:key_srt:"+otherKeys["key_srt"])),
		"key_rtsp":  s.publishWith("rtsp", s.rtspURL("key_rtsp", otherKeys["key_rtsp"], "key_rtsp")),
		"key_whip":  s.whipPublish("key_whip", whipBearer(otherKeys["key_whip"])),
		"hash_srt":  s.publishWith("mpegts", s.srtURL("publish:live/hash_srt:bob:"+bobHash)),
		"hash_rtsp": s.publishWith("rtsp", s.rtspURL("bob", bobHash, "hash_rtsp")),
		"hash_whip": s.whipPublish("hash_whip", whipBasic("bob", bobHash)),
	}
	for _, p := range others {
		track(p)
	}
	for _, name := range append([]string{"benw", "scrape_plain", "scrape_hash"}, otherLive...) {
		s.waitLive(name, true, 60*time.Second)
	}
	sessions := map[string]mtxSession{}
	for _, name := range otherLive {
		sessions[name] = s.publisherOf("live/"+name, 30*time.Second)
	}
	if err := playHLS(t, s.hlsURL("benw"), 30*time.Second); err != nil {
		t.Fatalf("public HLS of benw: %v", err)
	}
	for _, name := range append([]string{"benw", "scrape_plain", "scrape_hash"}, otherLive...) {
		fetchHLS(name)
	}
	// T12 while live: the sampler has been reading every argv since before the first
	// publish; add a ps listing taken now, with all nine streams live.
	time.Sleep(time.Second) // several sampler rounds with everything up
	if ps, err := exec.Command("ps", "-ww", "-eo", "pid,args").Output(); err != nil {
		t.Errorf("ps: %v", err)
	} else {
		var kept []string
		for _, line := range strings.Split(string(ps), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				if pid, _ := strconv.Atoi(f[0]); pubPIDs[pid] && f[1] == s.ffmpeg {
					col.exclude("ps line of our publisher "+f[0], line)
					continue
				}
			}
			kept = append(kept, line)
		}
		col.add("ps -ww -eo pid,args while all nine streams are live", strings.Join(kept, "\n"))
	}
	surfaces("nine streams live", key1)

	// Kick the SRT, RTSP and WHIP sessions as an operator would: reset each key user's
	// key, and set a new password for bob. Everything is read again once they are gone.
	for _, n := range []string{"key_srt", "key_rtsp", "key_whip"} {
		k := jsonField(t, cli(true, "", "key", "reset", n, "--json"), "stream_key")
		sc.add(classKey, n+"'s key from `key reset`", k)
	}
	bobPassword2 := "bob2 " + randomHex(t, 6) + " " + randomHex(t, 6)
	sc.add(classPassword, "bob's second password", bobPassword2, url.QueryEscape(bobPassword2), url.PathEscape(bobPassword2))
	bobHash2 := jsonField(t, cli(true, bobPassword2+"\n", "user", "passwd", "bob", "--json"), "password_hash")
	sc.add(classHash, "bob's second bcrypt hash", bobHash2, strings.ReplaceAll(bobHash2, "$", "%24"), url.QueryEscape(bobHash2))
	kickedAt := time.Now()
	for _, name := range otherLive {
		took := s.gone(sessions[name], kickedAt, 30*time.Second)
		t.Logf("%s (%s) gone from MediaMTX's API %v after the last key reset or password change",
			name, sessions[name].Type, took.Round(time.Millisecond))
		s.waitLive(name, false, 30*time.Second)
		others[name].kicked(t, 30*time.Second)
	}
	surfaces("after the SRT, RTSP and WHIP sessions were kicked", key1)
	auth("key publish", true, "", "", "192.0.2.10", "publish", "live/"+key1, "rtmp", "")
	auth("key in the query of the public name", true, "", "", "192.0.2.10", "publish", "live/benw", "rtmp", "key="+key1)
	auth("key as RTSP password", true, "benw", key1, "192.0.2.10", "publish", "live/benw", "rtsp", "")
	auth("plaintext password, RTMP query", true, "alice", password, "192.0.2.10", "publish", "live/scrape_plain", "rtmp",
		"user=alice&pass="+url.QueryEscape(password))
	auth("hash, RTMP query", true, "alice", hash, "192.0.2.10", "publish", "live/scrape_hash", "rtmp", "user=alice&pass="+hash)
	auth("hash, $ percent-encoded in the query", true, "alice", hash, "192.0.2.10", "publish", "live/scrape_hash", "rtmp",
		"user=alice&pass="+strings.ReplaceAll(hash, "$", "%24"))
	auth("hash, SRT", true, "alice", hash, "192.0.2.10", "publish", "live/scrape_hash", "srt", "")
	auth("ScaleEngine form (pass=HASH/name on path live)", false, "alice", hash+"/nosuch", "192.0.2.10", "publish", "live", "rtmp",
		"user=alice&pass="+hash+"/nosuch")
	auth("public HLS read", true, "", "", "192.0.2.10", "read", "live/benw", "hls", "")
	auth("key path read over HLS with the key as password", false, "benw", key1, "192.0.2.10", "read", "live/"+key1, "hls", "")

	// Rotation: a labelled second key, then a reset that revokes both and kicks.
	key2 := jsonField(t, cli(true, "", "key", "add", "benw", "--label", "scrape", "--json"), "stream_key")
	sc.add(classKey, "benw's key from `key add`", key2)
	pubKey.stop()
	s.waitLive("benw", false, 30*time.Second)
	pubKey2 := track(s.publish(s.rtmpURL(key2)))
	s.waitLive("benw", true, 60*time.Second)
	key3 := jsonField(t, cli(true, "", "key", "reset", "benw", "--json"), "stream_key")
	sc.add(classKey, "benw's key from `key reset`", key3)
	pubKey2.kicked(t, 30*time.Second)
	s.waitLive("benw", false, 30*time.Second)
	pubKey3 := track(s.publish(s.rtmpURL(key3)))
	s.waitLive("benw", true, 60*time.Second)
	if err := playHLS(t, s.hlsURL("benw"), 30*time.Second); err != nil {
		t.Fatalf("public HLS of benw after key reset: %v", err)
	}
	// The admin API shows a new key once, in its answer to the creation, exactly as the
	// CLI prints it: that answer is the handover to the operator, so it is not searched.
	var key4 string
	{
		req, _ := http.NewRequest(http.MethodPost, s.url(s.public, "/api/v1/admin/users/benw/keys"),
			strings.NewReader(`{"label":"scrape-admin"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+adminTok)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("admin key add: %d", res.StatusCode)
		}
		col.exclude("admin API POST /users/benw/keys answer (issues a key)", string(body))
		key4 = jsonField(t, string(body), "stream_key")
		sc.add(classKey, "benw's key from the admin API", key4)
	}
	fetchHLS("benw")
	surfaces("after rotation, key 3 live", key3, key1)
	auth("revoked key publish", false, "", "", "192.0.2.10", "publish", "live/"+key1, "rtmp", "")
	auth("current key publish", true, "", "", "192.0.2.10", "publish", "live/"+key4, "rtmp", "")
	liveRounds := procs.roundsDone() - liveFrom

	pubKey3.stop()
	pubPlain.stop()
	pubHash.stop()
	for _, name := range []string{"benw", "scrape_plain", "scrape_hash"} {
		s.waitLive(name, false, 30*time.Second)
	}
	t.Logf("live session done after %v (%d argv sampling rounds while streams were up)",
		time.Since(began).Round(time.Millisecond), liveRounds)

	// 50 wrong attempts through MediaMTX, as an attacker or a mistyping streamer makes
	// them: 25 wrong keys, then 25 wrong passwords. The passwords go last: five failures
	// from 127.0.0.1 block that address for an hour, and every publisher here is on it.
	var wrongKeys, wrongPasswords []string
	for i := range 10 {
		k := stagedoor.NewKey()
		sc.add(classTried, fmt.Sprintf("wrong key guess %d", i), k)
		wrongKeys = append(wrongKeys, k)
	}
	wrongKeys = append(wrongKeys, key1, key2) // revoked
	for i, pos := range []int{5, 15, 25, 35, 45} {
		k := nearMiss(key3, pos)
		sc.add(classTried, fmt.Sprintf("near miss %d of benw's current key", i), k)
		wrongKeys = append(wrongKeys, k)
	}
	for i, k := range []string{key3 + "x", key3[:45], key3[:40], key3[1:], nearMiss(key4, 20), nearMiss(key4, 40),
		nearMiss(aliceKey, 12), nearMiss(aliceKey, 33)} {
		sc.add(classTried, fmt.Sprintf("mangled key %d", i), k)
		wrongKeys = append(wrongKeys, k)
	}
	for i := range 10 {
		p := "guess-" + randomHex(t, 8)
		sc.add(classTried, fmt.Sprintf("wrong password guess %d", i), p, url.QueryEscape(p))
		wrongPasswords = append(wrongPasswords, p)
	}
	for i, p := range []string{nearMiss(password, 4), nearMiss(password, 9), nearMiss(password, 17), nearMiss(password, 22),
		nearMiss(password, 27), password[:len(password)-1], password[1:],
		nearMiss(hash, 20), nearMiss(hash, 31), nearMiss(hash, 40), nearMiss(hash, 50), nearMiss(hash, 59),
		hash[:len(hash)-1], hash[:40], hash + "x"} {
		sc.add(classTried, fmt.Sprintf("near miss %d of alice's password or hash", i), p, url.QueryEscape(p),
			strings.ReplaceAll(p, "$", "%24"), url.PathEscape(p))
		wrongPasswords = append(wrongPasswords, p)
	}
	if len(wrongKeys) != 25 || len(wrongPasswords) != 25 {
		t.Fatalf("%d wrong keys and %d wrong passwords, want 25 each", len(wrongKeys), len(wrongPasswords))
	}
	var attempts []func() *publisher
	for i, k := range wrongKeys {
		switch i % 5 {
		case 3:
			attempts = append(attempts, func() *publisher { return s.publishWith("mpegts", s.srtURL("publish:live/"+k)) })
		case 4:
			attempts = append(attempts, func() *publisher { return s.publishWith("rtsp", s.rtspURL("", "", k)) })
		default:
			attempts = append(attempts, func() *publisher { return s.publish(s.rtmpURL(k)) })
		}
	}
	for i, p := range wrongPasswords {
		stream := []string{"scrape_plain", "scrape_hash"}[i%2]
		switch i % 5 {
		case 3:
			attempts = append(attempts, func() *publisher {
				return s.publishWith("mpegts", s.srtURL("publish:live/"+stream+":alice:"+url.QueryEscape(p)))
			})
		case 4:
			attempts = append(attempts, func() *publisher { return s.publishWith("rtsp", s.rtspURL("alice", p, stream)) })
		default:
			attempts = append(attempts, func() *publisher {
				return s.publish(s.rtmpURL(stream + "?user=alice&pass=" + url.QueryEscape(p)))
			})
		}
	}
	// In batches: MediaMTX holds each refusal a moment before it answers.
	const batch = 10
	for b := 0; b < len(attempts); b += batch {
		var wg sync.WaitGroup
		for i := b; i < b+batch && i < len(attempts); i++ {
			p := track(attempts[i]())
			wg.Go(func() {
				p.refused(t, 45*time.Second)
			})
		}
		wg.Wait()
	}
	for _, name := range append([]string{"benw", "alice", "scrape_plain", "scrape_hash"}, otherLive...) {
		if code, v := s.channelStatus(name); code != http.StatusOK || v["live"] != false {
			t.Errorf("%s status = %d %v after the wrong attempts, want offline", name, code, v)
		}
	}
	// The same kinds of wrong credential posted straight to the internal endpoints, from
	// addresses that are not throttled yet, for their reply bodies.
	for i, k := range []string{wrongKeys[0], key1, nearMiss(key3, 30), key3[:44]} {
		auth(fmt.Sprintf("wrong key %d", i), false, "", "", "203.0.113.7", "publish", "live/"+k, "rtmp", "")
	}
	for i, p := range []string{wrongPasswords[0], nearMiss(password, 4), nearMiss(hash, 31)} {
		auth(fmt.Sprintf("wrong password %d", i), false, "alice", p, "203.0.113.8", "publish", "live/scrape_plain", "rtmp",
			"user=alice&pass="+url.QueryEscape(p))
	}
	for _, c := range []struct{ what, pass string }{
		{"near miss of the relay password", nearMiss(relayPass, 10)},
		{"relay password from a non-loopback address", relayPass},
	} {
		ip := "127.0.0.2"
		if strings.Contains(c.what, "non-loopback") {
			ip = "203.0.113.9"
		} else {
			sc.add(classTried, c.what, c.pass)
		}
		auth(c.what, false, "stagedoor-relay", c.pass, ip, "read", "live/"+key3, "rtsp", "")
	}
	wrongAdmin := nearMiss(adminPass, 10)
	sc.add(classTried, "near miss of the MediaMTX admin password", wrongAdmin)
	auth("near miss of the MediaMTX admin password", false, "stagedoor-admin", wrongAdmin, "127.0.0.2", "api", "", "", "")
	{
		req, _ := http.NewRequest(http.MethodPost, s.url(s.internal, "/mediamtx/auth"),
			strings.NewReader(`{"user":"alice","password":"`+password+`","path":"live/`+key3+`"}`))
		req.Header.Set("Content-Type", "text/plain")
		col.do(t, client, "auth reply: text/plain body with secrets", req)
	}
	wrongHook := nearMiss(hookSecret, 10)
	sc.add(classTried, "near miss of the hook secret", wrongHook)
	hookPost("near miss of the secret", wrongHook, http.StatusForbidden)
	wrongTok := nearMiss(adminTok, 10)
	sc.add(classTried, "near miss of the admin token", wrongTok)
	if code, _ := admin(http.MethodGet, "/users", wrongTok, nil); code != http.StatusUnauthorized {
		t.Errorf("admin API with a near-miss token: %d, want 401", code)
	}
	if code, _ := admin(http.MethodPost, "/users/benw/keys", wrongTok, map[string]string{"label": "x"}); code != http.StatusUnauthorized {
		t.Errorf("admin key add with a near-miss token: %d, want 401", code)
	}
	t.Logf("wrong attempts done after %v", time.Since(began).Round(time.Millisecond))

	// Audit entries are written in batches; wait for the denials to land, then read the
	// trail and everything else once more.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, _, err := s.cli("audit", "--json")
		if err == nil && strings.Count(out, `"deny"`) >= 25 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	cli(false, "", "audit", "--json")
	cli(false, "", "audit", "--user", "benw")
	cli(false, "", "audit", "--user", "alice", "--json")
	surfaces("after the wrong attempts")
	eventually(t, 20*time.Second, "webhook deliveries", func() error {
		whMu.Lock()
		defer whMu.Unlock()
		if whEvents["stream.started"] == 0 || whEvents["stream.stopped"] == 0 || whEvents["key.rotated"] == 0 {
			return fmt.Errorf("webhook events so far: %v", whEvents)
		}
		return nil
	})

	// Stop the stack, so that its output is complete (shutdown and the last hooks) and
	// the database files are final.
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-s.done:
		s.done <- err // the harness's cleanup waits for it too
	case <-time.After(60 * time.Second):
		t.Fatal("stagedoor run did not stop within 60 s of SIGINT")
	}
	procs.halt()
	out := s.out.String()
	col.add("stagedoor run output (service log, MediaMTX log at the shipped level, hook output)", out)
	dbFiles, _ := filepath.Glob(filepath.Join(filepath.Dir(s.db), "*"))
	for _, f := range dbFiles {
		if b, err := os.ReadFile(f); err == nil {
			// The users table holds the bcrypt hash: that is its credential column.
			col.add("database file "+filepath.Base(f), string(b), classHash)
		}
	}

	// The argv of every process seen, ours (the encoders) set aside.
	var nProcs, nMediaMTX, nHooks, nRun int
	for _, e := range procs.entries() {
		where := fmt.Sprintf("argv of pid %d (%s)", e.pid, filepath.Base(e.argv[0]))
		text := strings.Join(e.argv, " ")
		pubMu.Lock()
		ours := pubPIDs[e.pid] && e.argv[0] == s.ffmpeg
		pubMu.Unlock()
		if ours {
			col.exclude(where+", our publisher", text)
			continue
		}
		nProcs++
		switch {
		case e.pid == s.cmd.Process.Pid:
			nRun++
		case filepath.Base(e.argv[0]) == "mediamtx":
			nMediaMTX++
		case len(e.argv) >= 2 && e.argv[len(e.argv)-2] == "hook":
			nHooks++
		}
		col.add(where, text)
	}
	t.Logf("argv: %d distinct processes in %d rounds (our `stagedoor run`: %d, mediamtx: %d, `stagedoor hook` caught: %d)",
		nProcs, procs.roundsDone(), nRun, nMediaMTX, nHooks)
	if nRun == 0 || nMediaMTX == 0 {
		t.Errorf("the argv sampler never saw `stagedoor run` (%d) or MediaMTX (%d): the T12 scan is vacuous", nRun, nMediaMTX)
	}
	if liveRounds < 10 {
		t.Errorf("only %d argv sampling rounds while streams were live", liveRounds)
	}

	// The scanner is not blind: it finds the secrets where they are by design.
	items, excluded := col.snapshot()
	var inExcluded []string
	for _, e := range excluded {
		for _, h := range sc.find(e.text, nil) {
			if h.s.class == classKey || h.s.class == classHash || h.s.class == classPassword {
				inExcluded = append(inExcluded, h.s.name)
			}
		}
	}
	for _, want := range []string{"benw's first key", "alice's password", "alice's bcrypt hash", "benw's key from `key reset`",
		"benw's key from the admin API", "key_whip's key", "bob's bcrypt hash", "bob's second bcrypt hash"} {
		if !contains(inExcluded, want) {
			t.Errorf("the scanner did not find %s where it is by design (CLI or admin answer, publisher argv)", want)
		}
	}
	if !strings.Contains(out, stagedoor.Fingerprint(key1)) {
		t.Errorf("the output never names benw's first key by fingerprint: the log scan may be vacuous")
	}
	if !strings.Contains(out, `"event":"available"`) || !strings.Contains(out, `"event":"unavailable"`) {
		t.Errorf("the output shows no hook events: did the hooks fire?")
	}
	// The SRT, RTSP and WHIP sessions were admitted and kicked in this output.
	for _, name := range otherLive {
		var admitted, kicked bool
		for _, line := range strings.Split(out, "\n") {
			if !strings.Contains(line, `"`+name+`"`) {
				continue
			}
			admitted = admitted || strings.Contains(line, `"event":"available"`)
			kicked = kicked || strings.Contains(line, `"msg":"kicked"`)
		}
		if !admitted || !kicked {
			t.Errorf("the output shows %s available = %v, kicked = %v: is its session in the scan?", name, admitted, kicked)
		}
	}

	// The scanner finds a bare fragment, and ignores an allowed class.
	frag := "<" + key3[9:9+scrapeWindow] + ">"
	if h := sc.find(frag, nil); len(h) != 1 || h[0].whole || h[0].s.value != key3 {
		t.Errorf("scanner self-test: a fragment of a key gave %d hits, want 1 fragment hit", len(h))
	}
	if h := sc.find("hash="+hash+"&x=1", []string{classHash}); len(h) != 0 { // its prefixes were tried too
		t.Errorf("scanner self-test: an allowed hash still gave %d hits", len(h))
	}

	// The search.
	var bytesScanned, leaks int
	kinds := map[string]int{}
	for _, e := range items {
		bytesScanned += len(e.text)
		w := strings.Fields(e.where)
		k := w[0]
		if len(w) > 1 && !strings.HasPrefix(w[1], "(") {
			k += " " + w[1]
		}
		kinds[k]++
		for _, h := range sc.find(e.text, e.allowed) {
			leaks++
			t.Errorf("LEAK: %s in %s", h, e.where)
		}
	}
	t.Logf("searched, by kind: %v", kinds)
	t.Logf("searched %d items (%d KiB) for %d secrets (%d fragments); %d leaks; %d items excluded by design; %v in all",
		len(items), bytesScanned>>10, len(sc.secrets), len(sc.windows), leaks, len(excluded),
		time.Since(began).Round(time.Millisecond))
}
