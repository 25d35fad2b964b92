package e2e

import (
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestPanelStreamer drives the control panel in headless Chromium on the real stack
// (issue 13): an operator made with the CLI signs in; the streamer opens an invite
// printed by the CLI, sets a panel password, signs in at /panel/login, adds a key, reads
// the OBS Server and Stream Key from the page and publishes with ffmpeg using exactly
// those; the dashboard turns live; resetting the key from the panel kicks the publisher;
// after a reload no key is in the page source; a second streamer's session gets 404 for
// the first channel's dashboard.
func TestPanelStreamer(t *testing.T) {
	chromium := needTool(t, "chromium", "STAGEDOOR_TEST_CHROMIUM", "")
	s := startStack(t, stackOptions{})
	panelBase := s.url(s.public, "/panel/")
	const (
		bossPass  = "boss panel password 7"
		benwPass  = "benw panel password 7"
		alicePass = "alice panel password 7"
	)
	cliKey := s.addUser("benw")
	s.addUser("alice")
	s.addOperator("boss", bossPass)
	invite := func(name string) string {
		t.Helper()
		out, errOut, err := s.cli("user", "invite", name, "--json", "--panel-url", panelBase)
		if err != nil {
			t.Fatalf("user invite %s: %v: %s", name, err, errOut)
		}
		u := jsonField(t, out, "url")
		if !strings.HasPrefix(u, panelBase+"invite/") {
			t.Fatalf("user invite %s --json: url %q, want one under %s", name, u, panelBase)
		}
		return u
	}
	b := startBrowser(t, chromium)
	shots := artifactDir(t)

	// The operator signs in and sees both channels.
	b.signIn(t, panelBase, "boss", bossPass, "/panel/")
	if text := b.text(t); !strings.Contains(text, "benw") || !strings.Contains(text, "alice") {
		t.Errorf("operator's channel list lacks benw or alice:\n%s", text)
	}
	b.signOut(t)

	// The streamer opens the invite and sets a panel password.
	b.acceptInvite(t, invite("benw"), benwPass)
	dashboard := panelBase + "channels/benw"
	b.signIn(t, panelBase, "benw", benwPass, "/panel/channels/benw")

	// Add a key; read the two OBS fields from the page.
	b.do(t, "add a key",
		chromedp.SendKeys("#label", "obs studio"),
		chromedp.Click(`form[action="/panel/channels/benw/keys"] button[type="submit"]`))
	b.waitJS(t, "the new key is shown", `!!document.getElementById("obs-key")`)
	server, err := b.value("obs-server")
	if err != nil {
		t.Fatal(err)
	}
	key, err := b.value("obs-key")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, "sk_") || server != fmt.Sprintf("rtmp://127.0.0.1:%d/live", s.rtmp) {
		t.Fatalf("page shows Server %q, Stream Key %q", server, key)
	}
	b.screenshot(t, shots, "panel-1-new-key.png")

	// Publish with exactly those two values, as OBS joins them.
	pub := s.publish(server + "/" + key)
	eventually(t, 45*time.Second, "dashboard shows live (reloading)", func() error {
		if _, err := tabRun(b, 20*time.Second, chromedp.Navigate(dashboard)); err != nil {
			return err
		}
		live, err := tabRun(b, 5*time.Second, chromedp.Evaluate[bool](`!!document.querySelector(".badge.live")`))
		if err != nil {
			return err
		}
		if !live {
			select {
			case <-pub.exited:
				t.Fatalf("publisher exited before going live (%v):\n%s", pub.err, pub.out)
			default:
			}
			return fmt.Errorf("dashboard not live yet")
		}
		return nil
	})
	b.screenshot(t, shots, "panel-2-live.png")

	// Reset the key from the panel: the publisher is kicked.
	clicked := time.Now()
	b.do(t, "reset all keys", chromedp.Click(`form[action="/panel/channels/benw/keys/reset"] button[type="submit"]`))
	took := pub.kicked(t, 10*time.Second)
	t.Logf("publisher kicked %v after the reset click (%v after kicked() started waiting)", time.Since(clicked).Round(time.Millisecond), took.Round(time.Millisecond))
	b.waitJS(t, "the replacement key is shown", fmt.Sprintf(`(() => { const k = document.getElementById("obs-key"); return !!k && k.value !== %q; })()`, key))
	newKey, err := b.value("obs-key")
	if err != nil || !strings.HasPrefix(newKey, "sk_") {
		t.Fatalf("replacement key %q, %v", newKey, err)
	}

	// A reload of the dashboard: no key in the page source.
	if _, err := tabRun(b, 20*time.Second, chromedp.Navigate(dashboard)); err != nil {
		t.Fatal(err)
	}
	b.waitJS(t, "dashboard loaded", `document.readyState === "complete" && location.pathname === "/panel/channels/benw"`)
	src := b.source(t)
	for what, k := range map[string]string{"added key": key, "replacement key": newKey, "CLI key": cliKey, "any key": "sk_"} {
		if strings.Contains(src, k) {
			t.Errorf("dashboard after reload contains the %s", what)
		}
	}
	b.screenshot(t, shots, "panel-3-after-reset.png")
	b.signOut(t)

	// A second streamer: their own dashboard works, the first channel's is 404.
	b.acceptInvite(t, invite("alice"), alicePass)
	b.signIn(t, panelBase, "alice", alicePass, "/panel/channels/alice")
	res, err := tabRun(b, 20*time.Second, chromedp.NavigateResponse(dashboard))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusNotFound {
		t.Errorf("alice GET %s: %d, want 404", dashboard, res.Status)
	}
	if src := b.source(t); strings.Contains(src, "Stream keys") || strings.Contains(src, "obs studio") {
		t.Error("alice's 404 page shows benw's dashboard")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.exceptions) != 0 || len(b.violations) != 0 {
		t.Errorf("page errors %v, CSP violations %v", b.exceptions, b.violations)
	}
}

// TestPanelScaleEngine: the streamer creates a ScaleEngine stream in the panel, sets a
// publish password, copies the one-field URL the page shows (built on the hash) and
// publishes with it; the stream row turns live. The password is never on a page.
func TestPanelScaleEngine(t *testing.T) {
	chromium := needTool(t, "chromium", "STAGEDOOR_TEST_CHROMIUM", "")
	s := startStack(t, stackOptions{})
	panelBase := s.url(s.public, "/panel/")
	const (
		benwPass    = "benw panel password 7"
		publishPass = "Publish-Secret-4711"
	)
	s.addUser("benw")
	out, errOut, err := s.cli("user", "invite", "benw", "--json", "--panel-url", panelBase)
	if err != nil {
		t.Fatalf("user invite: %v: %s", err, errOut)
	}
	b := startBrowser(t, chromium)
	b.acceptInvite(t, jsonField(t, out, "url"), benwPass)
	b.signIn(t, panelBase, "benw", benwPass, "/panel/channels/benw")

	b.do(t, "create a stream",
		chromedp.SendKeys("#stream-name", "benw_show"),
		chromedp.Click(`form[action="/panel/channels/benw/streams"] button[type="submit"]`))
	b.waitJS(t, "stream created", `document.body.innerText.includes("Stream benw_show created.")`)
	b.do(t, "set the publish password",
		chromedp.SendKeys("#pub-pw", publishPass),
		chromedp.SendKeys("#pub-confirm", publishPass),
		chromedp.Click(`form[action="/panel/channels/benw/publish-password"] button[type="submit"]`))
	b.waitJS(t, "hash shown", `!!document.getElementById("pw-hash")`)
	hash, err := b.value("pw-hash")
	if err != nil || !strings.HasPrefix(hash, "$2") {
		t.Fatalf("hash on the page %q, %v", hash, err)
	}
	oneField, err := b.value("f0-one")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("rtmp://127.0.0.1:%d/live/benw_show?user=benw&pass=%s", s.rtmp, hash)
	if oneField != want {
		t.Fatalf("one-field URL %q, want %q", oneField, want)
	}
	if strings.Contains(b.source(t), publishPass) {
		t.Error("the page carries the publish password")
	}

	pub := s.publish(oneField)
	dashboard := panelBase + "channels/benw"
	eventually(t, 45*time.Second, "benw_show's row shows live (reloading)", func() error {
		if _, err := tabRun(b, 20*time.Second, chromedp.Navigate(dashboard)); err != nil {
			return err
		}
		row, err := tabRun(b, 5*time.Second, chromedp.Evaluate[string](
			`[...document.querySelectorAll("tr")].map(r => r.innerText).find(t => t.startsWith("benw_show")) || ""`))
		if err != nil {
			return err
		}
		if !strings.Contains(row, "live") || strings.Contains(row, "offline") {
			select {
			case <-pub.exited:
				t.Fatalf("publisher exited before going live (%v):\n%s", pub.err, pub.out)
			default:
			}
			return fmt.Errorf("row %q", row)
		}
		return nil
	})
	if src := b.source(t); strings.Contains(src, hash) || strings.Contains(src, publishPass) {
		t.Error("the dashboard after a reload carries the hash or the password")
	}
	b.screenshot(t, artifactDir(t), "panel-scaleengine-live.png")
}

// addOperator runs `stagedoor operator add NAME` with the password on stdin.
func (s *stack) addOperator(name, password string) {
	s.t.Helper()
	cmd := exec.Command(s.bin, "operator", "add", name, "--db", s.db)
	cmd.Env = s.cliEnv()
	cmd.Stdin = strings.NewReader(password + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Created panel operator "+name) {
		s.t.Fatalf("operator add %s: %v: %s", name, err, out)
	}
}

// do runs actions in the tab, failing the test on error.
func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if _, err := tabRun(b, 20*time.Second, chromedp.Steps(steps...)); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitJS polls until the page has loaded and expr is true on it (it may be navigating
// meanwhile).
func (b *browser) waitJS(t *testing.T, what, expr string) {
	t.Helper()
	eventually(t, 20*time.Second, what, func() error {
		ok, err := tabRun(b, 5*time.Second, chromedp.Evaluate[bool](`document.readyState === "complete" && (`+expr+`)`))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s is false", expr)
		}
		return nil
	})
}

// value reads a field by id through script, so that it never holds a DOM node of the
// page before a navigation.
func (b *browser) value(id string) (string, error) {
	return tabRun(b, 10*time.Second, chromedp.Evaluate[string](
		fmt.Sprintf(`(() => { const e = document.getElementById(%q); return e ? e.value : ""; })()`, id)))
}

// source is the page's current HTML.
func (b *browser) source(t *testing.T) string {
	t.Helper()
	html, err := tabRun(b, 10*time.Second, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if err != nil {
		t.Fatal(err)
	}
	return html
}

// text is the page's visible text.
func (b *browser) text(t *testing.T) string {
	t.Helper()
	s, err := tabRun(b, 10*time.Second, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signIn fills /panel/login and waits for the page it leads to.
func (b *browser) signIn(t *testing.T, panelBase, name, password, landing string) {
	t.Helper()
	if _, err := tabRun(b, 20*time.Second, chromedp.Navigate(panelBase+"login")); err != nil {
		t.Fatal(err)
	}
	b.do(t, "sign in as "+name,
		chromedp.SetValue("#username", name),
		chromedp.SendKeys("#password", password),
		chromedp.Click(`form[action="/panel/login"] button[type="submit"]`))
	b.waitJS(t, name+" signed in", fmt.Sprintf(`document.readyState === "complete" && location.pathname === %q`, landing))
}

// signOut presses the header's Sign out button.
func (b *browser) signOut(t *testing.T) {
	t.Helper()
	b.do(t, "sign out", chromedp.Click(`form[action="/panel/logout"] button[type="submit"]`))
	b.waitJS(t, "signed out", `document.readyState === "complete" && location.pathname === "/panel/login"`)
}

// acceptInvite opens an invite link and sets the panel password.
func (b *browser) acceptInvite(t *testing.T, link, password string) {
	t.Helper()
	if _, err := tabRun(b, 20*time.Second, chromedp.Navigate(link)); err != nil {
		t.Fatal(err)
	}
	b.do(t, "set the panel password",
		chromedp.SendKeys("#password", password),
		chromedp.SendKeys("#confirm", password),
		chromedp.Click(`form button[type="submit"]`))
	b.waitJS(t, "password set", `document.readyState === "complete" && document.body.innerText.includes("Password set.")`)
}
