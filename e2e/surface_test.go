package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostIP returns one of the machine's non-loopback unicast addresses, or "".
func hostIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatalf("InterfaceAddrs: %v", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return ""
}

// apiStatus GETs a MediaMTX API URL with optional basic credentials.
func apiStatus(t *testing.T, url, user, pass string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode
}

// TestMediaMTXSurface is T13: MediaMTX's control surfaces (API, metrics, pprof,
// playback) answer nobody but Stagedoor. With the shipped mediamtx.yml the API listens
// on loopback only and refuses anonymous and guessed credentials; metrics, pprof and
// playback are off. A key path's listing through the API is refused too.
func TestMediaMTXSurface(t *testing.T) {
	s := startStack(t, stackOptions{})
	key := s.addUser("benw")
	p := s.publish(s.rtmpURL(key))
	s.waitLive("benw", true, 20*time.Second)
	defer p.stop()
	api := fmt.Sprintf("http://127.0.0.1:%d", s.api)

	t.Run("APIRefusesAnonymousAndGuessedCredentials", func(t *testing.T) {
		// MediaMTX pauses about 2 s after each refused login: ask in parallel.
		type probe struct{ path, user, pass string }
		var probes []probe
		for _, path := range []string{"/v3/paths/list", "/v3/rtmpconns/list", "/v3/config/paths/list", "/v3/paths/get/live/" + key} {
			probes = append(probes, probe{path, "", ""})
		}
		for _, c := range [][2]string{{"admin", "admin"}, {"stagedoor-admin", ""}, {"benw", key}} {
			probes = append(probes, probe{"/v3/paths/list", c[0], c[1]})
		}
		codes := make([]int, len(probes))
		var wg sync.WaitGroup
		for i, p := range probes {
			wg.Go(func() { codes[i] = apiStatus(t, api+p.path, p.user, p.pass) })
		}
		wg.Wait()
		for i, p := range probes {
			if codes[i] != http.StatusUnauthorized {
				t.Errorf("GET %s as %q: %d, want 401", p.path, p.user, codes[i])
			}
		}
	})

	t.Run("APINotOnHostAddress", func(t *testing.T) {
		ip := hostIP(t)
		if ip == "" {
			t.Fatal("this machine has no non-loopback IPv4 address to dial")
		}
		for _, port := range []int{s.api, 9996, 9998, 9999} {
			addr := net.JoinHostPort(ip, fmt.Sprint(port))
			if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
				c.Close()
				t.Errorf("dial %s: connected, want refused (API %d; playback, metrics, pprof defaults)", addr, s.api)
			}
		}
	})

	t.Run("MetricsPprofPlaybackOff", func(t *testing.T) {
		// Their default loopback ports are closed: the shipped config turns them off.
		for _, port := range []int{9996, 9998, 9999} {
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
				c.Close()
				t.Errorf("dial %s: connected, want refused (metrics, pprof and playback are off)", addr)
			}
		}
	})
}

// TestMediaMTXSurfaceExcludes is T13's second half. An operator who drops
// `authHTTPExclude: []` from mediamtx.yml gets MediaMTX v1.21.0's built-in default,
// which still sends API calls to auth: anonymous calls are refused. One who exempts the
// API (as MediaMTX's sample file does) opens it to anyone on loopback: Stagedoor
// notices at start and logs an error naming the fix.
func TestMediaMTXSurfaceExcludes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "mediamtx.yml"))
	if err != nil {
		t.Fatal(err)
	}
	const shipped = "\nauthHTTPExclude: []"
	if !strings.Contains(string(raw), shipped) {
		t.Fatal("shipped mediamtx.yml no longer has `authHTTPExclude: []` at top level")
	}
	withExclude := func(t *testing.T, line string) *stack {
		conf := filepath.Join(t.TempDir(), "mediamtx.yml")
		if err := os.WriteFile(conf, []byte(strings.Replace(string(raw), shipped, "\n"+line, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		return startStack(t, stackOptions{config: conf})
	}
	t.Run("Unset", func(t *testing.T) {
		s := withExclude(t, "")
		// Publishing proves the manager has reconciled (and checked the API) meanwhile.
		p := s.publish(s.rtmpURL(s.addUser("benw")))
		s.waitLive("benw", true, 20*time.Second)
		p.stop()
		if code := apiStatus(t, fmt.Sprintf("http://127.0.0.1:%d/v3/paths/list", s.api), "", ""); code != http.StatusUnauthorized {
			t.Errorf("anonymous API call with authHTTPExclude unset: %d, want 401", code)
		}
		if strings.Contains(s.out.String(), "set `authHTTPExclude: []`") {
			t.Errorf("Stagedoor warned about an API that refuses anonymous calls")
		}
	})
	t.Run("APIExempted", func(t *testing.T) {
		s := withExclude(t, "authHTTPExclude: [{action: api}]")
		if code := apiStatus(t, fmt.Sprintf("http://127.0.0.1:%d/v3/paths/list", s.api), "", ""); code != http.StatusOK {
			t.Fatalf("anonymous API call with the API exempted: %d, want 200 (the premise of this test)", code)
		}
		eventually(t, 20*time.Second, "error about the open API", func() error {
			if !strings.Contains(s.out.String(), "set `authHTTPExclude: []`") {
				return fmt.Errorf("no log line names the fix")
			}
			return nil
		})
	})
}
