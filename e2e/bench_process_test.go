package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/stagedoor/stagedoor"
)

// P1 and T02 measured the way MediaMTX sees the service: this test binary is a separate
// client process; the service is a running `stagedoor run` with its default settings
// (one JSON log line per decision, the audit record, the admission record), its output
// going to a file as under systemd. The baseline is a bare gin handler answering 204,
// also in a separate process (this binary re-executed) and driven the same way.

// bareHandlerEnv makes this test binary serve the bare handler on its address instead of
// running tests (see TestMain).
const bareHandlerEnv = "STAGEDOOR_BENCH_BARE_ADDR"

// serveBareHandler is P1's baseline: gin, one route, read the body, 204.
func serveBareHandler(addr string) {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.POST("/mediamtx/auth", func(c *gin.Context) {
		_, _ = io.Copy(io.Discard, c.Request.Body)
		c.Status(http.StatusNoContent)
	})
	srv := &http.Server{Addr: addr, Handler: r, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintln(os.Stderr, srv.ListenAndServe())
	os.Exit(1)
}

// startBareHandler re-executes this binary as the baseline server and waits for it.
func startBareHandler(tb testing.TB) string {
	tb.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(tb))
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), bareHandlerEnv+"="+addr)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	eventually(tb, 10*time.Second, "bare handler listening", func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	return "http://" + addr + "/mediamtx/auth"
}

// processRounds × processRoundDur per case: each round runs every case in turn, so the
// baseline and the service are interleaved and share whatever else the machine does.
const (
	processRounds   = 5
	processRoundDur = time.Second
)

// BenchmarkAuthProcess is P1 against the real process: one caller, a new TCP connection
// per call, MediaMTX's JSON body, as MediaMTX v1.21 calls auth. Each case reports the
// median of its rounds' rates, p50 and p99 over all its calls, and the rounds.
func BenchmarkAuthProcess(b *testing.B) {
	// The service's defaults: the harness's faster reconcile is for tests.
	s := startStack(b, stackOptions{logFile: filepath.Join(b.TempDir(), "run.log"), args: []string{"--reconcile-interval", "10s"}})
	key := s.addUser("benw")
	bare := startBareHandler(b)
	ours := s.url(s.internal, "/mediamtx/auth")
	body := authBody
	cases := []struct {
		name, url string
		body      []byte
		want      int
		lat       []time.Duration
		rates     []float64
	}{
		{name: "Baseline", url: bare, body: body("publish", "live/"+key, "rtmp"), want: http.StatusNoContent},
		{name: "ValidKeyPublish", url: ours, body: body("publish", "live/"+key, "rtmp"), want: http.StatusNoContent},
		{name: "WrongKeyPublish", url: ours, body: body("publish", "live/"+stagedoor.NewKey(), "rtmp"), want: http.StatusUnauthorized},
		{name: "PublicRead", url: ours, body: body("read", "live/benw", "hls"), want: http.StatusNoContent},
		{name: "KeyPathRead", url: ours, body: body("read", "live/"+key, "hls"), want: http.StatusUnauthorized},
	}
	client := authClient()
	for range processRounds {
		for i := range cases {
			c := &cases[i]
			n, start := 0, time.Now()
			for time.Since(start) < processRoundDur {
				c.lat = append(c.lat, timedAuth(b, client, c.name, c.url, c.body, c.want))
				n++
			}
			c.rates = append(c.rates, float64(n)/time.Since(start).Seconds())
		}
	}
	for _, c := range cases {
		b.Run("Serial/"+c.name, func(b *testing.B) {
			reportLatencies(b, c.lat)
			slices.Sort(c.rates)
			b.ReportMetric(c.rates[len(c.rates)/2], "req/s")
			b.ReportMetric(float64(len(c.rates)), "rounds")
		})
	}
}

// authBody is MediaMTX's auth request body for action on path over protocol, from a
// public address, without credentials.
func authBody(action, path, protocol string) []byte {
	return []byte(`{"user":"","password":"","token":"","ip":"203.0.113.7","action":"` + action +
		`","path":"` + path + `","protocol":"` + protocol +
		`","id":"8a7f9e1c-6f2b-4d0e-9b7a-1c2d3e4f5a6b","query":"","userAgent":"FMLE/3.0 (compatible; Lavf59.27.100)"}`)
}

// authClient calls auth as MediaMTX does: a new connection per call.
func authClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
}

// timedAuth posts body to url, fails b unless the answer is want, and returns how long
// the call took.
func timedAuth(b *testing.B, client *http.Client, name, url string, body []byte, want int) time.Duration {
	t0 := time.Now()
	res, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != want {
		b.Fatalf("%s: status %d, want %d", name, res.StatusCode, want)
	}
	return time.Since(t0)
}

// reportLatencies reports the p50 and p99 of lat.
func reportLatencies(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50_us")
	b.ReportMetric(pct(0.99), "p99_us")
}

// BenchmarkHugeBodies is T02 against the real process: bodies of 10 MiB, 64 KiB + 1 and
// 1 MiB of `[` are answered 413 without being read (target ≤ 50 ms each), the service's
// RSS grows less than 2 MiB over hugeRounds of each, and the next auth call is answered.
func BenchmarkHugeBodies(b *testing.B) {
	s := startStack(b, stackOptions{logFile: filepath.Join(b.TempDir(), "run.log")})
	key := s.addUser("benw")
	addr := fmt.Sprintf("127.0.0.1:%d", s.internal)
	bodies := []struct {
		name string
		body []byte
	}{
		{"10MiB", bytes.Repeat([]byte("a"), 10<<20)},
		{"64KiB+1", append([]byte(`{"path":"`), bytes.Repeat([]byte("a"), 64<<10+1-9)...)},
		{"1MiBBrackets", bytes.Repeat([]byte("["), 1<<20)},
	}
	const hugeRounds = 20
	pid := s.cmd.Process.Pid
	// Warm up: the first requests grow the service's buffers whatever their size.
	for range 20 {
		if st, _, err := s.authDirect(key); err != nil || st != http.StatusNoContent {
			b.Fatalf("warm-up auth: %d %v", st, err)
		}
	}
	before := rssMB(pid)
	for _, c := range bodies {
		b.Run(c.name, func(b *testing.B) {
			var lat []time.Duration
			for range hugeRounds {
				d, status := postRaw(b, addr, c.body)
				if status != http.StatusRequestEntityTooLarge {
					b.Fatalf("status %d, want 413", status)
				}
				lat = append(lat, d)
			}
			reportLatencies(b, lat)
			b.ReportMetric(float64(slices.Max(lat).Microseconds())/1000, "max_ms")
		})
	}
	after := rssMB(pid)
	b.Run("After", func(b *testing.B) {
		if st, _, err := s.authDirect(key); err != nil || st != http.StatusNoContent {
			b.Fatalf("auth after the huge bodies: %d %v", st, err)
		}
		if before == 0 || after == 0 {
			b.Fatal("no RSS reading")
		}
		b.ReportMetric(after-before, "rss_growth_MiB")
	})
}

// postRaw sends body to /mediamtx/auth on a new connection, writing it while it reads
// the answer (the service answers before the body is done), and returns the time to
// the status line and the status.
func postRaw(b *testing.B, addr string, body []byte) (time.Duration, int) {
	start := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	go func() {
		fmt.Fprintf(c, "POST /mediamtx/auth HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", addr, len(body))
		_, _ = c.Write(body) // fails once the service closes: expected
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	d := time.Since(start)
	if err != nil {
		b.Fatalf("no answer: %v", err)
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		b.Fatalf("status line %q", line)
	}
	status, _ := strconv.Atoi(f[1])
	return d, status
}
