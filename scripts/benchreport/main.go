// Command benchreport turns `go test -bench` output into the tables of BENCHMARKS.md:
// medians over -count runs, and ratios against the baseline measured in the same run.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// result holds every sample of every unit for one benchmark name.
type result map[string][]float64

var line = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func parse(r io.Reader, into map[string]result, order *[]string) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		name, f := m[1], strings.Fields(m[2])
		if into[name] == nil {
			into[name] = result{}
			*order = append(*order, name)
		}
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			into[name][f[i+1]] = append(into[name][f[i+1]], v)
		}
	}
	return sc.Err()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtNum(v float64) string {
	switch {
	case v >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func main() {
	if len(os.Args) == 6 && os.Args[1] == "-compare" {
		compareMain(os.Args[2], os.Args[3], os.Args[4], os.Args[5])
		return
	}
	res := map[string]result{}
	var order []string
	for _, fn := range os.Args[1:] {
		loadInto(fn, res, &order)
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	authHTTP(w, res, order, "BenchmarkAuthProcess",
		"P1 auth decisions against the running `stagedoor run` (a separate client process, new connection per call, one at a time, as MediaMTX calls)")
	authHTTP(w, res, order, "BenchmarkAuthHTTP", "P1 auth decisions over HTTP in process (httptest server, new connection per call)")
	storm(w, res, order)
	hugeBodies(w, res, order)
	playback(w, res, order)
	aliasCost(w, res, order)
	control(w, res)
	cluster(w, res, order)
	micro(w, res, order)
}

// cluster: issue 14's targets on two nodes and one PostgreSQL (BenchmarkCluster).
func cluster(w io.Writer, res map[string]result, order []string) {
	if res["BenchmarkCluster/Auth/Baseline"] == nil {
		return
	}
	fmt.Fprintln(w, "### C1 cluster: cached auth on a node with PostgreSQL (a separate client process, new connection per call, one at a time; median of rounds)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| case | req/s | p50 (µs) | p99 (µs) (target ≤ 2000) | PostgreSQL commits per 1000 calls, net of idle |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	idle := 0.0
	for _, name := range order {
		c, ok := strings.CutPrefix(name, "BenchmarkCluster/Auth/")
		if !ok {
			continue
		}
		r := res[name]
		commits := "—"
		if v := r["db_xacts_per_1k_calls"]; len(v) > 0 {
			commits = fmtNum(median(v))
		}
		idle = median(r["db_xacts_per_s_idle"])
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", c, fmtNum(median(r["req/s"])), fmtNum(median(r["p50_us"])),
			fmtNum(median(r["p99_us"])), commits)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Idle, the two nodes commit %s transactions a second together (health probes renewing the leases, policy-generation polls, reconciles).\n\n", fmtNum(idle))
	if r := res["BenchmarkCluster/BanKick"]; r != nil {
		fmt.Fprintln(w, "### C2 cluster: ban through node b's admin API → the publisher on node a disconnected (median of 5; target < 2 s)")
		fmt.Fprintln(w)
		fmt.Fprintf(w, "| median (s) | max (s) |\n|---|---|\n| %.2f | %.2f |\n\n", median(r["s_ban_to_kick"]), median(r["s_max"]))
	}
	if r := res["BenchmarkCluster/FirstViewer"]; r != nil {
		fmt.Fprintln(w, "### C3 cluster: first viewer of a fresh live name (request → first video and audio decoded, median of 5; target: other node ≤ holder + 1 s)")
		fmt.Fprintln(w)
		fmt.Fprintf(w, "| on the holder (s) | on the other node, through its peer alias (s) | difference (s) |\n|---|---|---|\n| %.2f | %.2f | %+.2f |\n\n",
			median(r["s_holder"]), median(r["s_other_node"]), median(r["s_extra"]))
	}
}

// storm: P2, bcrypt runs, rate and p99 of the reconnect storm and the wrong-key flood.
func storm(w io.Writer, res map[string]result, order []string) {
	fmt.Fprintln(w, "### P2 reconnect storm and wrong-key flood (one address, one call at a time)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| case | bcrypt runs | req/s | p50 (µs) | p99 (µs) | runs |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, name := range order {
		c, ok := strings.CutPrefix(name, "BenchmarkReconnectStorm/")
		if !ok {
			continue
		}
		r := res[name]
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %d |\n", c, fmtNum(median(r["bcrypt_runs"])), fmtNum(median(r["req/s"])),
			fmtNum(median(r["p50_us"])), fmtNum(median(r["p99_us"])), len(r["req/s"]))
	}
	fmt.Fprintln(w)
}

// playback: P3, publisher start to the first segment in the public playlist, for every
// way in, against "direct" (RTMP through the front with the key in the query).
func playback(w io.Writer, res map[string]result, order []string) {
	d := res["BenchmarkTimeToPlayback/direct"]
	if d == nil {
		return
	}
	dm := median(d["s_to_first_segment"])
	labels := map[string]string{
		"direct":        "RTMP through the front, `benw?key=…` (baseline)",
		"alias":         "RTMP through the front, the key as the stream name",
		"rtmp-mediamtx": "RTMP straight to MediaMTX's loopback listener, `benw?key=…`",
		"srt-key":       "SRT, `publish:live/<key>`",
		"srt-name":      "SRT, `publish:live/benw:benw:<key>`",
		"whip":          "WHIP, Bearer key (video only)",
	}
	fmt.Fprintln(w, "### P3 time to public playback (publisher start → public playlist lists a segment, median of 5)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| way in | seconds | − baseline |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, name := range order {
		mode, ok := strings.CutPrefix(name, "BenchmarkTimeToPlayback/")
		if !ok {
			continue
		}
		label := labels[mode]
		if label == "" {
			label = mode
		}
		m := median(res[name]["s_to_first_segment"])
		fmt.Fprintf(w, "| %s | %.2f | %+.2f |\n", label, m, m-dm)
	}
	fmt.Fprintln(w)
}

// control: P5, ban and stop latencies.
func control(w io.Writer, res map[string]result) {
	r := res["BenchmarkControlLatency"]
	if r == nil {
		return
	}
	fmt.Fprintln(w, "### P5 control latency (median of 5; target < 2 s each)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| event | seconds |")
	fmt.Fprintln(w, "|---|---|")
	fmt.Fprintf(w, "| `stagedoor user ban` (CLI, another process) → publisher kicked | %.2f |\n", median(r["s_ban_to_kicked"]))
	fmt.Fprintf(w, "| `stagedoor user ban` → public playlist 404 | %.2f |\n", median(r["s_ban_to_public_404"]))
	fmt.Fprintf(w, "| publisher stops → status API offline | %.2f |\n", median(r["s_stop_to_offline"]))
	fmt.Fprintln(w)
}

// authHTTP: req/s, p50, p99 per case, with the req/s ratio against the bare-gin baseline,
// for the benchmark named prefix (BenchmarkAuthHTTP in process, BenchmarkAuthProcess
// against the running service). A case that measured its own rounds reports them.
func authHTTP(w io.Writer, res map[string]result, order []string, prefix, title string) {
	found := false
	for _, name := range order {
		if strings.HasPrefix(name, prefix+"/") {
			found = true
		}
	}
	if !found {
		return
	}
	fmt.Fprintln(w, "### "+title)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| callers | case | req/s | ratio to baseline | p50 (µs) | p99 (µs) | runs |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, name := range order {
		rest, ok := strings.CutPrefix(name, prefix+"/")
		if !ok {
			continue
		}
		mode, c, _ := strings.Cut(rest, "/")
		r := res[name]
		base := median(res[prefix+"/"+mode+"/Baseline"]["req/s"])
		ratio := "–"
		if base > 0 {
			ratio = fmt.Sprintf("%.0f %%", median(r["req/s"])/base*100)
		}
		runs := len(r["req/s"])
		if rounds := r["rounds"]; len(rounds) > 0 {
			runs = int(median(rounds))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %d |\n", mode, c, fmtNum(median(r["req/s"])), ratio,
			fmtNum(median(r["p50_us"])), fmtNum(median(r["p99_us"])), runs)
	}
	fmt.Fprintln(w)
}

// hugeBodies: T02 against the running service, time to 413 and RSS growth.
func hugeBodies(w io.Writer, res map[string]result, order []string) {
	after := res["BenchmarkHugeBodies/After"]
	if after == nil {
		return
	}
	fmt.Fprintln(w, "### T02 oversized auth bodies against the running service (target: 413 within 50 ms, RSS growth < 2 MiB)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| body | p50 to 413 (µs) | p99 (µs) | max (ms) |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, name := range order {
		c, ok := strings.CutPrefix(name, "BenchmarkHugeBodies/")
		if !ok || c == "After" {
			continue
		}
		r := res[name]
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", c, fmtNum(median(r["p50_us"])), fmtNum(median(r["p99_us"])), fmtNum(median(r["max_ms"])))
	}
	fmt.Fprintf(w, "\nRSS of `stagedoor run` after 20 of each minus before: %s MiB; the next auth call was answered.\n\n",
		fmtNum(median(after["rss_growth_MiB"])))
}

// aliasCost: P4, CPU of MediaMTX and Stagedoor with N RTMP publishers: MediaMTX alone
// ("direct"), the stack with publishers on public names ("name"), on keys ("key"), on keys
// with the front's pump instead of the kernel forward ("key-pump"); and the whole
// machine's busy CPU in each.
func aliasCost(w io.Writer, res map[string]result, order []string) {
	fmt.Fprintln(w, "### P4 ingest cost (CPU in % of one core, median of five 3 s windows; total = MediaMTX + Stagedoor)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| viewers per stream | streams | MediaMTX alone | stack, names: total | stack, keys: total | keys ÷ names (target ≤ 1.05) | keys ÷ MediaMTX alone | Stagedoor, keys (idle) | Stagedoor ÷ MediaMTX, keys (target ≤ 5 %) | Stagedoor above idle ÷ MediaMTX alone | keys, pump: total | Stagedoor ÷ MediaMTX, pump | machine busy: alone / keys / keys, pump | MediaMTX RSS, keys (MB) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	share := func(r result) string {
		if mc := median(r["mtx_cpu_%core"]); mc > 0 {
			return fmt.Sprintf("%.1f %%", median(r["stagedoor_cpu_%core"])/mc*100)
		}
		return "–"
	}
	for _, name := range order {
		rest, ok := strings.CutPrefix(name, "BenchmarkAliasCost/mode=key/")
		if !ok {
			continue
		}
		k, nm, d := res[name], res["BenchmarkAliasCost/mode=name/"+rest], res["BenchmarkAliasCost/mode=direct/"+rest]
		pump := res["BenchmarkAliasCost/mode=key-pump/"+rest]
		viewers, streams, _ := strings.Cut(rest, "/")
		ratio, alone, above := "–", "–", "–"
		kt, sd, idle := median(k["total_cpu_%core"]), median(k["stagedoor_cpu_%core"]), median(k["stagedoor_idle_cpu_%core"])
		if nt := median(nm["total_cpu_%core"]); nt > 0 {
			ratio = fmt.Sprintf("%.2f", kt/nt)
		}
		if dc := median(d["mtx_cpu_%core"]); dc > 0 {
			alone = fmt.Sprintf("%.2f", kt/dc)
			above = fmt.Sprintf("%.1f %%", max(sd-idle, 0)/dc*100)
		}
		machine := fmt.Sprintf("%s / %s / %s", fmtNum(median(d["machine_cpu_%core"])), fmtNum(median(k["machine_cpu_%core"])),
			fmtNum(median(pump["machine_cpu_%core"])))
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s (%s) | %s | %s | %s | %s | %s | %s |\n", strings.TrimPrefix(viewers, "viewers="),
			strings.TrimPrefix(streams, "streams="), fmtNum(median(d["mtx_cpu_%core"])), fmtNum(median(nm["total_cpu_%core"])),
			fmtNum(kt), ratio, alone, fmtNum(sd), fmtNum(idle), share(k), above, fmtNum(median(pump["total_cpu_%core"])), share(pump),
			machine, fmtNum(median(k["mtx_rss_MB"])))
	}
	fmt.Fprintln(w)
}

// micro: the remaining Go micro-benchmarks with ns/op and allocations.
func micro(w io.Writer, res map[string]result, order []string) {
	fmt.Fprintln(w, "### Micro-benchmarks")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| benchmark | ns/op | B/op | allocs/op | runs |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, name := range order {
		if strings.HasPrefix(name, "BenchmarkAuthHTTP/") || strings.HasPrefix(name, "BenchmarkAliasCost/") ||
			strings.HasPrefix(name, "BenchmarkAuthProcess/") || strings.HasPrefix(name, "BenchmarkHugeBodies/") ||
			strings.HasPrefix(name, "BenchmarkReconnectStorm/") || strings.HasPrefix(name, "BenchmarkTimeToPlayback/") ||
			strings.HasPrefix(name, "BenchmarkCluster/") || name == "BenchmarkControlLatency" {
			continue
		}
		r := res[name]
		fmt.Fprintf(w, "| %s | %s | %s | %s | %d |\n", strings.TrimPrefix(name, "Benchmark"),
			fmtNum(median(r["ns/op"])), fmtNum(median(r["B/op"])), fmtNum(median(r["allocs/op"])), len(r["ns/op"]))
	}
	fmt.Fprintln(w)
}

// load parses one file of `go test -bench` output.
func load(fn string) (map[string]result, []string) {
	res := map[string]result{}
	var order []string
	loadInto(fn, res, &order)
	return res, order
}

// loadInto parses one file into res, appending new names to order; it exits on error.
func loadInto(fn string, res map[string]result, order *[]string) {
	fh, err := os.Open(fn) //nolint:gosec // files named by make bench and bench-compare.sh
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	err = parse(fh, res, order)
	fh.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// compareMain writes P1 and P4 of two commits measured in the same run, interleaved:
// `benchreport -compare BEFORE_REF AFTER_REF BEFORE.txt AFTER.txt`.
func compareMain(beforeRef, afterRef, beforeFn, afterFn string) {
	b, order := load(beforeFn)
	a, _ := load(afterFn)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintf(w, "### P1 before (%s) and after (%s)\n\n", beforeRef, afterRef)
	fmt.Fprintln(w, "| callers | case | req/s before | ratio before | req/s after | ratio after | p99 µs before | p99 µs after | runs |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	ratio := func(res map[string]result, mode, name string) string {
		base := median(res["BenchmarkAuthHTTP/"+mode+"/Baseline"]["req/s"])
		if base == 0 || res[name] == nil {
			return "–"
		}
		return fmt.Sprintf("%.0f %%", median(res[name]["req/s"])/base*100)
	}
	for _, name := range order {
		rest, ok := strings.CutPrefix(name, "BenchmarkAuthHTTP/")
		if !ok {
			continue
		}
		mode, c, _ := strings.Cut(rest, "/")
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", mode, c,
			fmtNum(median(b[name]["req/s"])), ratio(b, mode, name), fmtNum(median(a[name]["req/s"])), ratio(a, mode, name),
			fmtNum(median(b[name]["p99_us"])), fmtNum(median(a[name]["p99_us"])), len(a[name]["req/s"]))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "### P4 before (%s) and after (%s)\n\n", beforeRef, afterRef)
	fmt.Fprintln(w, "| mode | viewers per stream | streams | total CPU before (% core) | after | MediaMTX before | after | Stagedoor before | after | runs |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, name := range order {
		rest, ok := strings.CutPrefix(name, "BenchmarkAliasCost/mode=")
		if !ok {
			continue
		}
		mode, rest, _ := strings.Cut(rest, "/")
		viewers, streams, _ := strings.Cut(rest, "/")
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", mode, strings.TrimPrefix(viewers, "viewers="),
			strings.TrimPrefix(streams, "streams="),
			fmtNum(median(b[name]["total_cpu_%core"])), fmtNum(median(a[name]["total_cpu_%core"])),
			fmtNum(median(b[name]["mtx_cpu_%core"])), fmtNum(median(a[name]["mtx_cpu_%core"])),
			fmtNum(median(b[name]["stagedoor_cpu_%core"])), fmtNum(median(a[name]["stagedoor_cpu_%core"])), len(a[name]["mtx_cpu_%core"]))
	}
	fmt.Fprintln(w)
}
