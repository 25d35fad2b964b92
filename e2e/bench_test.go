package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
)

// Alias cost (make bench, BENCHMARKS.md): MediaMTX's CPU and RSS with N streams played
// through the alias (publish live/<key>, play live/<name>) against N streams published
// and played on the same name with no alias, same binary, same config, same run.

var (
	sourceOnce sync.Once
	sourceFile string
	sourceErr  error
)

// benchSource encodes a 90-second H.264 + AAC test source once, so that publishers can
// send it with -c copy and cost (almost) nothing next to MediaMTX.
func benchSource(b testing.TB, ffmpeg string) string {
	b.Helper()
	sourceOnce.Do(func() {
		dir, err := os.MkdirTemp("", "stagedoor-bench-src")
		if err != nil {
			sourceErr = err
			return
		}
		sourceFile = filepath.Join(dir, "source.flv")
		out, err := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error",
			"-f", "lavfi", "-i", "testsrc=size=640x360:rate=25:duration=90",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=90",
			"-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-pix_fmt", "yuv420p", "-b:v", "800k",
			"-c:a", "aac", "-b:a", "64k", "-f", "flv", sourceFile).CombinedOutput()
		if err != nil {
			sourceErr = fmt.Errorf("encode bench source: %v: %s", err, out)
		}
	})
	if sourceErr != nil {
		b.Fatal(sourceErr)
	}
	return sourceFile
}

// benchStreams is the list of N to measure (env STAGEDOOR_BENCH_STREAMS, default 1,5,10,25).
func benchStreams() []int {
	spec := os.Getenv("STAGEDOOR_BENCH_STREAMS")
	if spec == "" {
		spec = "1,5,10,25"
	}
	var ns []int
	for _, f := range strings.Split(spec, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			ns = append(ns, n)
		}
	}
	return ns
}

// mediaSetup is one way of getting N streams to N public names.
type mediaSetup struct {
	publishURL func(i int) string
	playURL    func(i int) string
	mtxPID     func() int
	extraPID   int // a process the setup adds beside MediaMTX (0: none)
}

// startDirect runs MediaMTX alone with the shipped config and an allow-all auth server:
// the baseline, with no Stagedoor and no alias.
func startDirect(b *testing.B, n int) mediaSetup {
	b.Helper()
	mtx := needTool(b, "mediamtx", "STAGEDOOR_TEST_MEDIAMTX", filepath.Join(repoRoot, "bin", "mediamtx"))
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(auth.Close)
	rtmp, hls := freePort(b), freePort(b)
	cmd := exec.Command(mtx, filepath.Join(repoRoot, "mediamtx.yml"))
	cmd.Env = append(os.Environ(),
		"MTX_AUTHHTTPADDRESS="+auth.URL+"/mediamtx/auth",
		fmt.Sprintf("MTX_RTMPADDRESS=127.0.0.1:%d", rtmp),
		fmt.Sprintf("MTX_HLSADDRESS=127.0.0.1:%d", hls),
		fmt.Sprintf("MTX_APIADDRESS=127.0.0.1:%d", freePort(b)),
	)
	cmd.Env = append(cmd.Env, mediamtxPorts(b, freePort(b), freeUDPPort(b), freePort(b))...)
	lw := &logWriter{t: b, prefix: "[mediamtx]"}
	cmd.Stdout, cmd.Stderr = lw, lw
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
		lw.stop()
	})
	eventually(b, 20*time.Second, "mediamtx ready", func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", hls))
		if err == nil {
			c.Close()
		}
		return err
	})
	name := func(i int) string { return fmt.Sprintf("ch%03d", i) }
	return mediaSetup{
		publishURL: func(i int) string { return fmt.Sprintf("rtmp://127.0.0.1:%d/live/%s", rtmp, name(i)) },
		playURL:    func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d/live/%s/index.m3u8", hls, name(i)) },
		mtxPID:     func() int { return cmd.Process.Pid },
	}
}

// startStackKeys runs the Stagedoor stack: N users publish on their stream keys as the
// stream name (renamed at ingest by the RTMP front), played by name.
func startStackKeys(b *testing.B, n int) mediaSetup { return startStackSetup(b, n, true) }

// startStackKeysPumped is startStackKeys with the front's pump instead of the kernel
// forward (--rtmp-forward pump): the front moves each publisher's bytes itself, every
// 50 ms.
func startStackKeysPumped(b *testing.B, n int) mediaSetup {
	return startStackSetup(b, n, true, "--rtmp-forward", "pump")
}

// startStackNames runs the Stagedoor stack: N users publish straight to their public
// names with the key in the query: the baseline of the rename's cost.
func startStackNames(b *testing.B, n int) mediaSetup { return startStackSetup(b, n, false) }

func startStackSetup(b *testing.B, n int, byKey bool, args ...string) mediaSetup {
	b.Helper()
	s := startStack(b, stackOptions{args: append([]string{"--reconcile-interval", "10s"}, args...)})
	keys := make([]string, n)
	for i := range keys {
		keys[i] = s.addUser(fmt.Sprintf("ch%03d", i))
	}
	return mediaSetup{
		publishURL: func(i int) string {
			if byKey {
				return s.rtmpURL(keys[i])
			}
			return s.rtmpURL(fmt.Sprintf("ch%03d?key=%s", i, keys[i]))
		},
		playURL:  func(i int) string { return s.hlsURL(fmt.Sprintf("ch%03d", i)) },
		mtxPID:   func() int { return childPID(b, s.cmd.Process.Pid, "mediamtx") },
		extraPID: s.cmd.Process.Pid,
	}
}

// childPID finds the child of parent whose command name contains name.
func childPID(b testing.TB, parent int, name string) int {
	b.Helper()
	// Each thread has its own children list, and Go starts processes from any thread.
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", parent))
	var all []string
	for _, fn := range files {
		raw, _ := os.ReadFile(fn)
		all = append(all, strings.Fields(string(raw))...)
	}
	for _, f := range all {
		pid, _ := strconv.Atoi(f)
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.Contains(string(comm), name) {
			return pid
		}
	}
	b.Fatalf("no %s child of %d", name, parent)
	return 0
}

// cpuNanos is the CPU time of process pid so far, in nanoseconds: its live threads' time
// on CPU from schedstat (nanosecond resolution; /proc/PID/stat counts 10 ms ticks, which
// made a 3 s window of a process at 2 % of a core read 2.0, 2.3 or 2.7 %), plus its
// waited-for children's (hooks of MediaMTX's), which only stat has, in ticks.
func cpuNanos(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may contain spaces.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	var sum int64
	for _, i := range []int{13, 14} { // cutime cstime
		v, _ := strconv.ParseInt(f[i], 10, 64)
		sum += v * (int64(time.Second) / clockTicks)
	}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("no threads of %d: %v", pid, err)
	}
	for _, t := range tasks {
		raw, err := os.ReadFile(t)
		if err != nil {
			continue // the thread ended meanwhile
		}
		fields := strings.Fields(string(raw))
		if len(fields) > 0 {
			v, _ := strconv.ParseInt(fields[0], 10, 64)
			sum += v
		}
	}
	return sum, nil
}

func rssMB(pid int) float64 {
	fh, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

const clockTicks = 100 // USER_HZ on Linux

// cpuMedian samples pid's CPU use in slices and returns the median, in % of one core.
func cpuMedian(b *testing.B, pid int, n int, slice time.Duration) float64 {
	b.Helper()
	return sampleMedian(b, n, slice, func() (int64, error) { return cpuNanos(pid) })
}

// machineCPUMedian is cpuMedian for the whole machine: every process, and the kernel's
// own work (interrupts, softirqs, kernel threads), from /proc/stat.
func machineCPUMedian(b *testing.B, n int, slice time.Duration) float64 {
	b.Helper()
	return sampleMedian(b, n, slice, machineNanos)
}

// sampleMedian returns the median over n windows of slice of read's growth, in % of one
// core (read returns CPU nanoseconds).
func sampleMedian(b *testing.B, n int, slice time.Duration, read func() (int64, error)) float64 {
	b.Helper()
	var samples []float64
	prev, err := read()
	if err != nil {
		b.Fatal(err)
	}
	for range n {
		start := time.Now()
		time.Sleep(slice)
		cur, err := read()
		if err != nil {
			b.Fatal(err)
		}
		samples = append(samples, float64(cur-prev)/float64(time.Since(start))*100)
		prev = cur
	}
	slices.Sort(samples)
	return samples[len(samples)/2]
}

// machineNanos is the machine's busy CPU time so far: user, nice, system, irq and softirq
// of /proc/stat's cpu line (idle, iowait and steal left out).
func machineNanos() (int64, error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var sum int64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		v, _ := strconv.ParseInt(f[i], 10, 64)
		sum += v * (int64(time.Second) / clockTicks)
	}
	return sum, nil
}

// player keeps an HLS client running and counts video access units.
type player struct {
	frames atomic.Int64
	c      *gohlslib.Client
}

func startPlayer(b *testing.B, url string) *player {
	b.Helper()
	p := &player{}
	jar, _ := cookiejar.New(nil)
	quiet := func(string) {}
	p.c = &gohlslib.Client{
		URI: url, HTTPClient: &http.Client{Jar: jar, Timeout: 10 * time.Second},
		OnDownloadPrimaryPlaylist: quiet, OnDownloadStreamPlaylist: quiet, OnDownloadSegment: quiet,
		OnDownloadPart: quiet, OnDecodeError: func(error) {},
	}
	p.c.OnTracks = func(tracks []*gohlslib.Track) error {
		for _, tr := range tracks {
			if _, ok := tr.Codec.(*codecs.H264); ok {
				p.c.OnDataH26x(tr, func(int64, int64, [][]byte) { p.frames.Add(1) })
			}
		}
		return nil
	}
	if err := p.c.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.c.Close)
	return p
}

// BenchmarkAliasCost is P4: the CPU of MediaMTX (and of Stagedoor beside it) with N RTMP
// publishers, each played by one HLS viewer or by none: MediaMTX alone with an allow-all
// auth ("direct"), the Stagedoor stack with publishers on their public names ("name"),
// and the Stagedoor stack with publishers on their keys ("key": renamed at ingest), also
// with the front's pump instead of the kernel forward ("key-pump"). The machine's whole
// busy CPU is reported too: the kernel forward's work is the kernel's, charged to no
// process.
func BenchmarkAliasCost(b *testing.B) {
	if testing.Short() {
		b.Skip("needs MediaMTX and ffmpeg")
	}
	ff := needTool(b, "ffmpeg", "STAGEDOOR_TEST_FFMPEG", "")
	src := benchSource(b, ff)
	for _, n := range benchStreams() {
		for _, viewers := range []int{1, 0} {
			for _, mode := range []struct {
				name  string
				start func(*testing.B, int) mediaSetup
			}{{"direct", startDirect}, {"name", startStackNames}, {"key", startStackKeys}, {"key-pump", startStackKeysPumped}} {
				b.Run(fmt.Sprintf("mode=%s/viewers=%d/streams=%d", mode.name, viewers, n), func(b *testing.B) {
					for b.Loop() {
						measureStreams(b, ff, src, n, viewers > 0, mode.start)
					}
				})
			}
		}
	}
}

func measureStreams(b *testing.B, ff, src string, n int, viewers bool, start func(*testing.B, int) mediaSetup) {
	setup := start(b, n)
	var idle float64
	if setup.extraPID != 0 {
		// Stagedoor's floor with no stream (its health probe, policy poll, reconcile): the
		// part of its CPU below that is not the ingest's.
		time.Sleep(2 * time.Second)
		idle = cpuMedian(b, setup.extraPID, 3, 4*time.Second)
	}
	for i := range n {
		// Looped: with 25 streams the set-up and the window outlast the 90 s source.
		startFFmpeg(b, ff, "-re", "-stream_loop", "-1", "-i", src, "-c", "copy", "-f", "flv", setup.publishURL(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range n {
		eventually(b, time.Until(deadline(ctx)), "public playlist", func() error {
			if code := hlsStatus(b, setup.playURL(i), "", ""); code != http.StatusOK {
				return fmt.Errorf("stream %d: playlist %d", i, code)
			}
			return nil
		})
	}
	var players []*player
	for i := range n {
		if viewers {
			players = append(players, startPlayer(b, setup.playURL(i)))
		}
	}
	time.Sleep(3 * time.Second) // warm-up: muxers and players settle
	before := make([]int64, n)
	for i, p := range players {
		before[i] = p.frames.Load()
	}
	mtx := setup.mtxPID()
	var extra float64
	var wg sync.WaitGroup
	if setup.extraPID != 0 {
		wg.Go(func() { extra = cpuMedian(b, setup.extraPID, 5, 3*time.Second) })
	}
	var machine float64
	wg.Go(func() { machine = machineCPUMedian(b, 5, 3*time.Second) })
	cpu := cpuMedian(b, mtx, 5, 3*time.Second)
	wg.Wait()
	rss := rssMB(mtx)
	for i, p := range players {
		if got := p.frames.Load() - before[i]; got < 100 { // 15 s at 25 fps = 375
			b.Fatalf("stream %d: only %d video frames played in the window; HLS did not keep advancing", i, got)
		}
	}
	b.ReportMetric(cpu, "mtx_cpu_%core")
	b.ReportMetric(cpu/float64(n), "mtx_cpu_%core/stream")
	b.ReportMetric(rss, "mtx_rss_MB")
	if !viewers { // the streams must still be live at the end of the window
		for i := range n {
			if code := hlsStatus(b, setup.playURL(i), "", ""); code != http.StatusOK {
				b.Fatalf("stream %d: playlist %d after the window", i, code)
			}
		}
	}
	b.ReportMetric(extra, "stagedoor_cpu_%core")
	b.ReportMetric(idle, "stagedoor_idle_cpu_%core")
	b.ReportMetric(cpu+extra, "total_cpu_%core")
	b.ReportMetric(machine, "machine_cpu_%core")
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
