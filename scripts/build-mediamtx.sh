#!/usr/bin/env bash
# Builds MediaMTX from its Go module with the Go toolchain only (see README, "MediaMTX build").
# The module zip lacks two generated files that `go generate` would fetch from GitHub:
# internal/core/VERSION and internal/servers/hls/hls.min.js (taken here from the npm package hls.js).
set -euo pipefail
version=${1:?usage: build-mediamtx.sh VERSION OUT}
out=${2:?usage: build-mediamtx.sh VERSION OUT}
work=$(mktemp -d "${TMPDIR:-/tmp}/mediamtx-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

src=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/bluenviron/mediamtx@${version}" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "build-mediamtx: module source for ${version} not found" >&2; exit 1; }
cp -r "$src" "$work/mtx"
chmod -R u+w "$work/mtx"
echo "$version" > "$work/mtx/internal/core/VERSION"

hlsjs=$(sed 's/^v//' "$work/mtx/internal/servers/hls/hlsjsdownloader/VERSION")
(cd "$work" && npm pack --silent "hls.js@${hlsjs}" >/dev/null && tar xzf "hls.js-${hlsjs}.tgz")
cp "$work/package/dist/hls.min.js" "$work/mtx/internal/servers/hls/hls.min.js"

mkdir -p "$(dirname "$out")"
(cd "$work/mtx" && CGO_ENABLED=0 go build -buildvcs=false -trimpath -o "$work/mediamtx" .)
mv "$work/mediamtx" "$out"
"$out" --version
