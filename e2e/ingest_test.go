package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRenameKeepsSecretsFromMediaMTX is issue 12's promise: RTMP publishes through the
// front, in every form a streamer uses (the key as the stream name, ?key=, and both
// ScaleEngine forms with a password or its hash), reach MediaMTX under the public name
// with a front grant only. MediaMTX runs at logLevel debug writing its own log file
// (not through Stagedoor's redactor); that file, MediaMTX's path and RTMP connection
// lists and its metrics never hold a key, a password or a hash, whole or as a 12-character
// fragment, and no path other than live/<name> ever exists.
func TestRenameKeepsSecretsFromMediaMTX(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "mediamtx.log")
	s := startStack(t, stackOptions{env: []string{
		"MTX_LOGLEVEL=debug", "MTX_LOGDESTINATIONS=stdout,file", "MTX_LOGFILE=" + logFile,
	}})
	sc := newScraper()
	benwKey, daveKey := s.addUser("benw"), s.addUser("dave")
	s.addUser("carol")
	const carolPassword = "carol's long rehearsal password"
	hash := s.setPassword("carol", carolPassword)
	s.addStream("concert", "carol")
	s.addStream("gig", "carol")
	sc.add("key", "benw's key", benwKey)
	sc.add("key", "dave's key", daveKey)
	sc.add("password", "carol's password", carolPassword, url.QueryEscape(carolPassword))
	sc.add("hash", "carol's hash", hash, strings.ReplaceAll(hash, "$", "%24"))

	pubs := map[string]*publisher{
		"benw":    s.publish(s.rtmpURL(benwKey)),
		"dave":    s.publish(s.rtmpURL("dave?key=" + daveKey)),
		"concert": s.rtmpTwoPart("live?user=carol&pass="+url.QueryEscape(carolPassword), "concert"),
		"gig":     s.publish(fmt.Sprintf("rtmp://127.0.0.1:%d/live?user=carol&pass=%s/gig", s.rtmp, hash)),
	}
	var seen []string // every MediaMTX answer, searched at the end
	for name, p := range pubs {
		s.with(t).waitLive(name, true, 30*time.Second)
		if err := playHLS(t, s.hlsURL(name), 15*time.Second); err != nil {
			t.Fatalf("public HLS of %s: %v\npublisher: %s", name, err, p.out)
		}
	}
	for _, api := range []string{"/v3/paths/list", "/v3/rtmpconns/list", "/v3/config/paths/list"} {
		var v any
		code, err := s.mtxGet(api, &v)
		if err != nil || code != 200 {
			t.Fatalf("GET %s: %d %v", api, code, err)
		}
		seen = append(seen, fmt.Sprintf("%s: %v", api, v))
	}
	var paths struct {
		Items []struct {
			Name string `json:"name"`
		} `json:"items"`
	}
	if _, err := s.mtxGet("/v3/paths/list", &paths); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths.Items {
		if _, ok := pubs[strings.TrimPrefix(p.Name, "live/")]; !ok {
			t.Errorf("MediaMTX has path %q: only the public names should exist", p.Name)
		}
	}
	if len(paths.Items) != len(pubs) {
		t.Errorf("MediaMTX has %d paths, want %d (one per public name, no key path, no alias)", len(paths.Items), len(pubs))
	}
	for _, p := range pubs {
		p.stop()
	}
	for name := range pubs {
		s.with(t).waitLive(name, false, 20*time.Second)
	}
	raw, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatalf("MediaMTX's own log file: %v", err)
	}
	if !strings.Contains(string(raw), "DEB") || !strings.Contains(string(raw), "live/benw") {
		t.Fatalf("MediaMTX's log file has no debug lines about live/benw: the scrape would prove nothing:\n%.2000s", raw)
	}
	for where, text := range map[string]string{
		"MediaMTX's own log file (debug)": string(raw),
		"MediaMTX's API lists":            strings.Join(seen, "\n"),
		"stagedoor run's output":          s.out.String(),
	} {
		for _, h := range sc.find(text, nil) {
			t.Errorf("%s holds %s", where, h)
		}
	}
}
