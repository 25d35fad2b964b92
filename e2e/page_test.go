package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// TestChannelPage opens a channel page in headless Chromium (issue 7) before the channel
// goes live, then publishes with ffmpeg and checks that the page notices without a
// reload, plays the public HLS stream from MediaMTX's port (cross-origin, so CORS works)
// and turns offline again when the publisher stops. It also checks every request the
// browser made: no key, no Referer, and no CSP violation or script error on the page.
func TestChannelPage(t *testing.T) {
	chromium := needTool(t, "chromium", "STAGEDOOR_TEST_CHROMIUM", "")
	s := startStack(t, stackOptions{})
	key := s.addUser("benw")
	needVendoredHLSJS(t, s)
	pageURL := s.url(s.public, "/benw")
	b := startBrowser(t, chromium)
	shots := artifactDir(t)

	if _, err := tabRun(b, 30*time.Second, chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("open %s: %v", pageURL, err)
	}
	// A reload would drop this marker: the checks below prove the page changes in place.
	if _, err := tabRun(b, 5*time.Second, chromedp.Evaluate[chromedp.Void](`window.e2eMarker = 1`)); err != nil {
		t.Fatal(err)
	}
	b.waitState(t, 10*time.Second, "offline page", offlineState)
	b.screenshot(t, shots, "1-offline-before.png")

	pub := s.publish(s.rtmpURL(key))
	s.with(t).waitLive("benw", true, 15*time.Second)
	b.waitState(t, 10*time.Second, "badge turns live", func(p pageState) error {
		if p.Badge != "Live" || p.VideoHidden || !p.PlaceholderHidden {
			return fmt.Errorf("badge %q, video hidden %v, placeholder hidden %v", p.Badge, p.VideoHidden, p.PlaceholderHidden)
		}
		return nil
	})
	var first float64
	b.waitState(t, 30*time.Second, "video starts playing", func(p pageState) error {
		if p.CurrentTime <= 0 {
			return fmt.Errorf("currentTime %.2f, readyState %d, error %d\npublisher: %s", p.CurrentTime, p.ReadyState, p.Error, pub.out)
		}
		first = p.CurrentTime
		return nil
	})
	b.waitState(t, 15*time.Second, "video keeps playing", func(p pageState) error {
		if p.CurrentTime < first+2 {
			return fmt.Errorf("currentTime %.2f, was %.2f", p.CurrentTime, first)
		}
		return nil
	})
	b.screenshot(t, shots, "2-live.png")
	if _, body := fetchPage(t, s.url(s.public, "/")); !strings.Contains(body, `<a href="/benw">benw</a>`) {
		t.Errorf("index does not list live benw:\n%s", body)
	}

	pub.stop()
	b.waitState(t, 20*time.Second, "badge turns offline without a reload", offlineState)
	b.screenshot(t, shots, "3-offline-after.png")

	html, err := tabRun(b, 5*time.Second, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html, "sk_") || strings.Contains(html, key) {
		t.Errorf("page DOM contains a stream key")
	}

	// The index, in the same tab: it must load under the same CSP without errors.
	if _, err := tabRun(b, 30*time.Second, chromedp.Navigate(s.url(s.public, "/"))); err != nil {
		t.Fatalf("open index: %v", err)
	}
	eventually(t, 10*time.Second, "index says nobody is live", func() error {
		text, err := tabRun(b, 5*time.Second, chromedp.Evaluate[string](`document.getElementById("live-list").textContent`))
		if err != nil {
			return err
		}
		if !strings.Contains(text, "Nobody is live") {
			return fmt.Errorf("live list %q", text)
		}
		return nil
	})
	b.checkTraffic(t, key, fmt.Sprintf("http://127.0.0.1:%d", s.public), fmt.Sprintf("http://127.0.0.1:%d/", s.hls))
}

func fetchPage(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res.StatusCode, string(body)
}

// needVendoredHLSJS checks that the stagedoor binary under test serves hls.js: it is
// embedded only after `make hlsjs` fetched it from npm.
func needVendoredHLSJS(t *testing.T, s *stack) {
	t.Helper()
	code, _ := fetchPage(t, s.url(s.public, "/static/hls.min.js"))
	if code == http.StatusOK {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("GET /static/hls.min.js = %d: `make hlsjs` must run before the tests", code)
	}
	t.Skipf("GET /static/hls.min.js = %d: run `make hlsjs` (npm package hls.js), then the tests", code)
}

// artifactDir is where screenshots go: $STAGEDOOR_TEST_ARTIFACTS to keep them, else the
// test's temp dir.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("STAGEDOOR_TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// browser is one headless Chromium tab and what it saw on the network and console.
type browser struct {
	ctx context.Context

	mu         sync.Mutex
	requests   []*network.EventRequestWillBeSent
	responses  []*network.Response
	console    []string
	exceptions []string
	violations []string
	dialogs    []string // alert, confirm, prompt: a script that should never have run
}

func startBrowser(t *testing.T, chromium string) *browser {
	t.Helper()
	// Created before the cleanup below is registered, so the browser has exited before
	// its profile directory is removed.
	profile := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	b := &browser{ctx: ctx}
	t.Cleanup(func() {
		stop, cancelStop := context.WithTimeout(ctx, 10*time.Second)
		_ = chromedp.Cancel(stop)
		cancelStop()
		cancel()
		cancelAlloc()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, line := range b.console {
			t.Logf("browser: %s", line)
		}
	})
	// The first call starts Chromium; its context must not carry a timeout (see chromedp.Run).
	if err := chromedp.Listen(ctx, b.record); err != nil {
		t.Fatalf("start chromium %s: %v", chromium, err)
	}
	return b
}

// record runs on chromedp's read loop: it only appends.
func (b *browser) record(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		b.requests = append(b.requests, ev)
	case *network.EventResponseReceived:
		b.responses = append(b.responses, ev.Response)
	case *runtime.EventConsoleAPICalled:
		var args []string
		for _, a := range ev.Args {
			args = append(args, string(a.Value)+a.Description)
		}
		b.console = append(b.console, fmt.Sprintf("console.%s %s", ev.Type, strings.Join(args, " ")))
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		b.exceptions = append(b.exceptions, fmt.Sprintf("%s:%d %s", d.URL, d.LineNumber, msg))
	case *page.EventJavascriptDialogOpening:
		b.dialogs = append(b.dialogs, fmt.Sprintf("%s %q", ev.Type, ev.Message))
	case *log.EventEntryAdded:
		line := fmt.Sprintf("log %s %s: %s %s", ev.Entry.Source, ev.Entry.Level, ev.Entry.Text, ev.Entry.URL)
		b.console = append(b.console, line)
		if strings.Contains(ev.Entry.Text, "Content Security Policy") {
			b.violations = append(b.violations, line)
		}
	}
}

// tabRun runs one action in the tab with a deadline.
func tabRun[T any](b *browser, d time.Duration, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// pageState is what the checks read from the page.
type pageState struct {
	Badge             string  `json:"badge"`
	VideoHidden       bool    `json:"videoHidden"`
	PlaceholderHidden bool    `json:"placeholderHidden"`
	CurrentTime       float64 `json:"currentTime"`
	ReadyState        int     `json:"readyState"`
	Error             int     `json:"error"`
	Marker            bool    `json:"marker"`
}

const pageStateJS = `(() => {
	const v = document.getElementById("player");
	return {
		badge: document.getElementById("badge").textContent,
		videoHidden: v.hidden,
		placeholderHidden: document.getElementById("placeholder").hidden,
		currentTime: v.currentTime,
		readyState: v.readyState,
		error: v.error ? v.error.code : 0,
		marker: window.e2eMarker === 1,
	};
})()`

func offlineState(p pageState) error {
	if p.Badge != "Offline" || !p.VideoHidden || p.PlaceholderHidden {
		return fmt.Errorf("badge %q, video hidden %v, placeholder hidden %v", p.Badge, p.VideoHidden, p.PlaceholderHidden)
	}
	return nil
}

// waitState polls the page until ok accepts its state. Every state must still carry the
// marker set after the first load: the page never reloads.
func (b *browser) waitState(t *testing.T, timeout time.Duration, what string, ok func(pageState) error) {
	t.Helper()
	eventually(t, timeout, what, func() error {
		p, err := tabRun(b, 5*time.Second, chromedp.Evaluate[pageState](pageStateJS))
		if err != nil {
			return err
		}
		if !p.Marker {
			t.Fatalf("%s: the page was reloaded", what)
		}
		return ok(p)
	})
}

func (b *browser) screenshot(t *testing.T, dir, name string) {
	t.Helper()
	png, err := tabRun(b, 10*time.Second, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

// checkTraffic asserts what the browser sent and saw: no request carries a key or a
// Referer, the player read from the HLS origin with CORS granted to the page's origin,
// and the page had no CSP violation and no uncaught exception.
func (b *browser) checkTraffic(t *testing.T, key, pageOrigin, hlsPrefix string) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	hlsRequests := 0
	for _, ev := range b.requests {
		r := ev.Request
		if strings.Contains(r.URL, "sk_") || strings.Contains(r.URL, key) {
			t.Errorf("request URL carries a key: %s", r.URL)
		}
		for k, v := range r.Headers {
			if s := fmt.Sprint(v); strings.Contains(s, "sk_") || strings.Contains(s, key) {
				t.Errorf("request header %s carries a key (%s)", k, r.URL)
			}
			// DevTools lists Referer with an empty value under no-referrer.
			if strings.EqualFold(k, "Referer") && fmt.Sprint(v) != "" {
				t.Errorf("request to %s sent Referer %v", r.URL, v)
			}
		}
		// The page's policy governs what the page loads; the navigation to the page itself
		// and the player controls' built-in data: icons have the browser's default.
		if ev.Type != network.ResourceTypeDocument && !strings.HasPrefix(r.URL, "data:") &&
			r.ReferrerPolicy != network.RequestReferrerPolicyNoReferrer {
			t.Errorf("request to %s has referrer policy %q, want no-referrer", r.URL, r.ReferrerPolicy)
		}
		if strings.HasPrefix(r.URL, hlsPrefix) {
			hlsRequests++
		}
	}
	if hlsRequests == 0 {
		t.Errorf("no request to the HLS origin %s", hlsPrefix)
	}
	corsOK := false
	for _, r := range b.responses {
		if strings.HasPrefix(r.URL, hlsPrefix) && r.Status == http.StatusOK &&
			fmt.Sprint(r.Headers["Access-Control-Allow-Origin"]) == pageOrigin {
			corsOK = true
		}
	}
	if !corsOK {
		t.Errorf("no 200 from %s with Access-Control-Allow-Origin: %s", hlsPrefix, pageOrigin)
	}
	for _, v := range b.violations {
		t.Errorf("CSP violation: %s", v)
	}
	for _, e := range b.exceptions {
		t.Errorf("uncaught exception: %s", e)
	}
}
