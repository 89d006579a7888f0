#!/usr/bin/env bash
# Builds a release into dist/ (or DIST): every agent (scripts/build-agents.sh, with its size
# budget), the hub for linux-amd64 and linux-arm64 (cgo, linked against glibc: Debian 12,
# Ubuntu 22.04, Raspberry Pi OS bookworm or newer), the Home Assistant add-on repository as
# a tarball (scripts/release-addon.sh), and SHA256SUMS over all of it.
#
# Usage: scripts/release.sh [VERSION]   (default: git describe, else "dev")
#        DIST=DIR      writes into DIR instead of dist/
# The arm64 hub needs Debian's cross compiler: apt-get install gcc-aarch64-linux-gnu
# libc6-dev-arm64-cross (scripts/test.sh installs them; the release test runs this script).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
version=${1:-${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}}
dist=${DIST:-"$root/dist"}
mkdir -p "$dist"

DIST="$dist" bash scripts/build-agents.sh "$version"

# name GOARCH C-compiler
hubs=(
	"linux-amd64 amd64 gcc"
	"linux-arm64 arm64 aarch64-linux-gnu-gcc"
)
for h in "${hubs[@]}"; do
	read -r name arch cc <<<"$h"
	if ! command -v "$cc" >/dev/null; then
		echo "release: $cc is missing for the $name hub (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)" >&2
		exit 1
	fi
	echo "building hearth-gateway-$name"
	(cd gateway && CC=$cc CGO_ENABLED=1 GOOS=linux GOARCH=$arch GOWORK=off \
		go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$dist/hearth-gateway-$name" ./cmd/hearth-gateway)
done

addon=$(mktemp -d)
trap 'rm -rf "$addon"' EXIT
bash scripts/release-addon.sh "$addon/repository" >/dev/null
tar -C "$addon/repository" -czf "$dist/hearth-addon-$version.tar.gz" .

(cd "$dist" && sha256sum hearth-agent-* hearth-gateway-* "hearth-addon-$version.tar.gz" >SHA256SUMS)
echo "release $version in $dist:"
(cd "$dist" && ls -l hearth-* SHA256SUMS)
