#!/usr/bin/env bash
# `make bench`: runs every benchmark and writes BENCHMARKS.md. Needs `make build` and ffmpeg.
# Absolute numbers on a shared machine are noise; each figure is compared with a baseline
# measured in the same run, and medians are quoted.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-5}
streams=${STAGEDOOR_BENCH_STREAMS:-10,25}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

micro_cmd="go test -run '^\$' -bench '^Benchmark(AuthHTTP|Decide|UserByKeyDigest|ResetAllKeys10k)\$' -benchmem -benchtime 300ms -count $count ./authserver/ ./policy/ ./store/"
storm_cmd="go test -run '^\$' -bench '^BenchmarkReconnectStorm\$' -benchtime 1x -count $count ./authserver/"
process_cmd="go test -run '^\$' -bench '^Benchmark(AuthProcess|HugeBodies)\$' -benchtime 1x -count 1 -timeout 10m ./e2e/"
e2e_cmd="STAGEDOOR_BENCH_STREAMS=$streams go test -run '^\$' -bench '^Benchmark(TimeToPlayback|ControlLatency|AliasCost)\$' -benchtime 1x -count 1 -timeout 60m ./e2e/"
cluster_cmd="go test -run '^\$' -bench '^BenchmarkCluster\$' -benchtime 1x -count 1 -timeout 20m ./e2e/"
for c in micro storm process e2e cluster; do
	cmd_var="${c}_cmd"
	echo "bench: ${!cmd_var}" >&2
	eval "${!cmd_var}" 2>&1 | grep -v '\[stack\]\|\[mediamtx\]' | tee "$out/$c.txt" >&2
done

{
	cat <<HEAD
# Benchmarks

Written by \`make bench\` (scripts/bench.sh) on $(date -u +%Y-%m-%d). Every figure is a median;
every comparison is against a baseline measured in the same run on the same machine.

- Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
- $(go version); MediaMTX $(bin/mediamtx --version 2>&1 | grep -m1 -o "v[0-9.]*"); $(ffmpeg -version | head -1 | cut -d' ' -f1-3)
- Commands:
  - \`$micro_cmd\`
  - \`$storm_cmd\`
  - \`$process_cmd\`
  - \`$e2e_cmd\`
  - \`$cluster_cmd\`

HEAD
	go run ./scripts/benchreport "$out/micro.txt" "$out/storm.txt" "$out/process.txt" "$out/e2e.txt" "$out/cluster.txt"
	if [ -n "${BENCH_BASE:-}" ]; then
		# A change that must not slow the service: P1 and P4 of BENCH_BASE and of this
		# tree in the same run, interleaved (scripts/bench-compare.sh).
		echo "## Before and after: $BENCH_BASE against this tree"
		echo
		scripts/bench-compare.sh "$BENCH_BASE"
	fi
	cat scripts/benchmarks-notes.md
} > BENCHMARKS.md
echo "bench: wrote BENCHMARKS.md" >&2
