#!/usr/bin/env bash
# scripts/bench-compare.sh REF [ROUNDS]: P1 (auth over HTTP) and P4 (alias cost) of REF and
# of the working tree, measured in the same run, interleaved round by round (REF, HEAD,
# REF, HEAD, ...) so that the machine's load falls on both alike; prints the comparison
# tables (medians). Needs `make build` and ffmpeg. REF must still have ./authserver's
# BenchmarkAuthHTTP and ./e2e's BenchmarkAliasCost.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${1:?usage: scripts/bench-compare.sh REF [ROUNDS]}
rounds=${2:-3}
streams=${STAGEDOOR_BENCH_STREAMS:-5,10}
out=$(mktemp -d)
wt="$out/base"
trap 'git worktree remove --force "$wt" >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
git worktree add --detach --quiet "$wt" "$ref"
# The base tree builds its own stagedoor; it shares MediaMTX and hls.js with this one.
mkdir -p "$wt/bin" "$wt/web/static"
cp -P bin/mediamtx* "$wt/bin/"
cp web/static/hls.min.js "$wt/web/static/"

p1="go test -run '^\$' -bench '^BenchmarkAuthHTTP\$' -benchtime 300ms -count 1 ./authserver/"
p4="STAGEDOOR_BENCH_STREAMS=$streams go test -run '^\$' -bench '^BenchmarkAliasCost\$' -benchtime 1x -count 1 -timeout 30m ./e2e/"
for i in $(seq "$rounds"); do
	for side in base head; do
		dir=.
		[ "$side" = base ] && dir=$wt
		echo "bench-compare: round $i, $side" >&2
		# A failed benchmark (a P4 player that fell behind on a busy machine) costs its
		# samples, not the run: the tables count the runs behind each median.
		for cmd in "$p1" "$p4"; do
			if ! (cd "$dir" && eval "$cmd") >"$out/last.txt" 2>&1; then
				echo "bench-compare: round $i, $side: a benchmark failed:" >&2
				grep -E -- '--- FAIL|FAIL|Error|error' "$out/last.txt" | head -5 >&2 || true
			fi
			grep -v '\[stack\]\|\[mediamtx\]' "$out/last.txt" >>"$out/$side.txt" || true
		done
	done
done
echo "Commands, run $rounds times for each side, alternating: \`$p1\` and \`$p4\`"
echo
go run ./scripts/benchreport -compare "$(git rev-parse --short "$ref")" "$(git rev-parse --short HEAD)" "$out/base.txt" "$out/head.txt"
