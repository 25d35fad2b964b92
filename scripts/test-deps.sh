#!/usr/bin/env bash
# The programs the tests run, beyond Go, gcc and node/npm; `make test`, `make e2e`,
# `make bench` and .ci/run call this first. Silent and instant when all are there.
# Otherwise it installs the missing Debian packages with apt-get, as root or through
# passwordless sudo, or prints the command to run and fails.
#
#   ffmpeg      ffmpeg     publishes in the e2e suite and the benchmarks
#   chromium    chromium   the channel-page browser test (e2e/page_test.go)
#   chattr      e2fsprogs  the database-fault test (cmd/stagedoor TestDatabaseFaults)
#   mount       mount      the same test (a small tmpfs)
#   ps          procps     the secret scrape's process listing (e2e/scrape_test.go)
#   systemd-analyze  systemd  checks the shipped units (cmd/stagedoor TestSystemdUnitsVerify)
#   initdb      postgresql the store's tests on PostgreSQL (store/pgtest starts a throw-away
#                          cluster from /usr/lib/postgresql/*/bin; the package's own
#                          cluster is never used)
#   gst-launch-1.0  gstreamer1.0-tools  a second RTMP client in the e2e suite (e2e/gst_test.go):
#     rtmpsink, rtmp2sink, voaacenc  gstreamer1.0-plugins-bad (rtmpsink is librtmp's, as OBS)
#     x264enc                        gstreamer1.0-plugins-ugly
#     flvmux                         gstreamer1.0-plugins-good
#     videotestsrc, audiotestsrc     gstreamer1.0-plugins-base
#
# STAGEDOOR_TEST_FFMPEG and STAGEDOOR_TEST_CHROMIUM, which the tests honour, count as
# present when they name an executable; STAGEDOOR_TEST_POSTGRES (a DSN) stands for
# PostgreSQL.
set -euo pipefail

need() { # need PROGRAM PACKAGE [OVERRIDE]
	local override=${3:-}
	if [ -n "$override" ] && [ -x "$override" ]; then
		return
	fi
	command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
need_pg() { # initdb is not in PATH: Debian keeps it under /usr/lib/postgresql/VERSION/bin
	if [ -z "${STAGEDOOR_TEST_POSTGRES:-}" ] && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
		missing+=(postgresql)
	fi
}
need_gst() { # need_gst ELEMENT PACKAGE
	if ! command -v gst-inspect-1.0 >/dev/null 2>&1 || ! gst-inspect-1.0 --exists "$1" 2>/dev/null; then
		[[ " ${missing[*]} " == *" $2 "* ]] || missing+=("$2")
	fi
}
check() {
	missing=()
	need ffmpeg ffmpeg "${STAGEDOOR_TEST_FFMPEG:-}"
	need chromium chromium "${STAGEDOOR_TEST_CHROMIUM:-}"
	need chattr e2fsprogs
	need mount mount
	need ps procps
	need systemd-analyze systemd
	need_pg
	need gst-launch-1.0 gstreamer1.0-tools
	need_gst rtmpsink gstreamer1.0-plugins-bad
	need_gst rtmp2sink gstreamer1.0-plugins-bad
	need_gst voaacenc gstreamer1.0-plugins-bad
	need_gst x264enc gstreamer1.0-plugins-ugly
	need_gst flvmux gstreamer1.0-plugins-good
	need_gst videotestsrc gstreamer1.0-plugins-base
}
check
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
fail() {
	echo "test-deps: missing Debian packages ${missing[*]}; $1. As root, run" >&2
	echo "  $cmd" >&2
	echo "then try again." >&2
	exit 1
}
command -v apt-get >/dev/null 2>&1 || fail "there is no apt-get here"
if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	SUDO="sudo -n"
else
	fail "installing them needs root or passwordless sudo"
fi
echo "test-deps: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
check
if [ ${#missing[@]} -gt 0 ]; then
	echo "test-deps: still missing after the install: ${missing[*]}" >&2
	exit 1
fi
