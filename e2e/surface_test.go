package e2e

import (
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
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
// playback) answer nobody but Stagedoor. The API refuses anonymous and guessed
// credentials (a key path's listing included) and listens on loopback only; metrics,
// pprof and playback are off, so MediaMTX listens nowhere else.
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

	t.Run("ListensOnlyWhereConfigured", func(t *testing.T) {
		// MediaMTX's own TCP listeners, read from /proc: exactly the ingest and HLS
		// listeners this stack configured, the API among them on loopback, and nothing
		// else (metrics, pprof and playback are off, whatever port they would use).
		mtx := childPID(t, s.cmd.Process.Pid, "mediamtx")
		got := listeningTCP(t, mtx)
		want := map[int]bool{s.api: true, s.rtsp: true, s.hls: true, s.webrtc: true, s.mediamtxRTMP(t): true}
		seen := map[int]bool{}
		for _, ap := range got {
			port := int(ap.Port())
			seen[port] = true
			if !want[port] {
				t.Errorf("MediaMTX listens on %v, which this stack never configured (metrics, pprof or playback on?)", ap)
			}
			if port == s.api && !ap.Addr().IsLoopback() {
				t.Errorf("MediaMTX's API listens on %v, want loopback only", ap)
			}
		}
		if !seen[s.api] {
			t.Errorf("no API listener among MediaMTX's sockets %v: the check above proved nothing", got)
		}
		if ip := hostIP(t); ip != "" {
			addr := net.JoinHostPort(ip, fmt.Sprint(s.api))
			if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
				c.Close()
				t.Errorf("dial %s: connected, want refused (the API is loopback only)", addr)
			}
		}
	})
}

// mediamtxRTMP is the loopback port `run` gives MediaMTX's RTMP listener behind the front.
func (s *stack) mediamtxRTMP(t testing.TB) int {
	t.Helper()
	for i, a := range s.runArgs {
		if a == "--mediamtx-rtmp" && i+1 < len(s.runArgs) {
			ap, err := netip.ParseAddrPort(s.runArgs[i+1])
			if err != nil {
				t.Fatal(err)
			}
			return int(ap.Port())
		}
	}
	t.Fatal("no --mediamtx-rtmp in the stack's arguments")
	return 0
}

// listeningTCP lists the TCP sockets in LISTEN state that process pid holds open.
func listeningTCP(t *testing.T, pid int) []netip.AddrPort {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	if err != nil || len(fds) == 0 {
		t.Fatalf("list fds of %d: %v", pid, err)
	}
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []netip.AddrPort
	for _, table := range []string{"tcp", "tcp6"} {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			t.Fatalf("read /proc/%d/net/%s: %v", pid, table, err)
		}
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
				continue
			}
			out = append(out, parseProcAddr(t, f[1]))
		}
	}
	return out
}

// parseProcAddr decodes /proc/net/tcp's "HEXADDR:HEXPORT": the address is stored as
// 32-bit words in host (little-endian) order.
func parseProcAddr(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	a, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || (len(a) != 8 && len(a) != 32) {
		t.Fatalf("bad /proc/net address %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil {
		t.Fatalf("bad /proc/net address %q: %v", s, err)
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port))
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
