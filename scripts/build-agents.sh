#!/usr/bin/env bash
# Cross-builds hearth-agent as stripped static binaries for every supported device
# architecture into dist/, with SHA256SUMS and a size table (printed and written to
# dist/SIZES.md, with each binary's xz -9 size). The build uses GOWORK=off, as a release
# would, so the agent module's own go.mod is what counts.
#
# Usage: scripts/build-agents.sh [VERSION]   (default: git describe, else "dev")
#        DIST=DIR      writes into DIR instead of dist/ (the tests build there)
#        TARGETS="linux-mipsle linux-armv5"   builds only these (default: all nine)
# Budget: the mipsle (soft-float) binary must stay at or under 6.5 MiB; the script fails if not.
#
# Flags: -trimpath and -ldflags "-s -w" (no symbol table, no DWARF), nothing else. The
# compiler's own flags are left alone: the runtime and the standard library are built as the
# toolchain builds them. (Turning inlining off with -gcflags=all=-l saved 0.45 MiB and crashed
# the runtime on mips64 at start, issue 18.) Size comes from what the agent links instead:
# agent/README.md, "Sizes", and the dependency budget in agent/cmd/hearth-agent/deps_test.go.
set -euo pipefail
# go.mod requires Go 1.27.3 (go1.26.8 has reachable standard-library advisories; see
# govulncheck in scripts/test.sh); the go command fetches it from the module proxy once.
export GOTOOLCHAIN=go1.27.3
cd "$(dirname "$0")/.."
root=$(pwd)
version=${1:-${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}}
dist=${DIST:-"$root/dist"}
budget_mipsle=$((13 * 512 * 1024)) # 6.5 MiB

# name GOARCH extra-env...
targets=(
	"linux-amd64 amd64"
	"linux-arm64 arm64"
	"linux-armv5 arm GOARM=5"
	"linux-armv6 arm GOARM=6"
	"linux-armv7 arm GOARM=7"
	"linux-mips mips GOMIPS=softfloat"
	"linux-mipsle mipsle GOMIPS=softfloat"
	"linux-mips64 mips64 GOMIPS64=softfloat"
	"linux-mips64le mips64le GOMIPS64=softfloat"
)

if [ -n "${TARGETS:-}" ]; then
	all=("${targets[@]}")
	targets=()
	for want in $TARGETS; do
		found=""
		for t in "${all[@]}"; do
			if [ "${t%% *}" = "$want" ]; then targets+=("$t"); found=1; fi
		done
		[ -n "$found" ] || { echo "unknown target $want" >&2; exit 2; }
	done
fi

mkdir -p "$dist"
dist=$(cd "$dist" && pwd)
rm -f "$dist"/hearth-agent-* "$dist/SHA256SUMS" "$dist/SIZES.md"

for t in "${targets[@]}"; do
	read -r name arch extra <<<"$t"
	out="$dist/hearth-agent-$name"
	echo "building $name"
	(
		cd agent
		env GOWORK=off CGO_ENABLED=0 GOOS=linux GOARCH="$arch" ${extra:+"$extra"} \
			go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out" ./cmd/hearth-agent
	)
done

(cd "$dist" && sha256sum hearth-agent-* >SHA256SUMS)

mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
{
	echo "# hearth-agent $version binary sizes"
	echo
	echo "Stripped static binaries (\`CGO_ENABLED=0 go build -trimpath -ldflags \"-s -w\"\`, $(go version | awk '{print $3}'))."
	echo
	echo "| target | bytes | MiB | xz -9 bytes | xz -9 MiB |"
	echo "|---|---:|---:|---:|---:|"
	for t in "${targets[@]}"; do
		read -r name _ <<<"$t"
		f="$dist/hearth-agent-$name"
		size=$(stat -c %s "$f")
		xzsize=$(xz -9 -c "$f" | wc -c)
		echo "| $name | $size | $(mib "$size") | $xzsize | $(mib "$xzsize") |"
	done
} >"$dist/SIZES.md"
cat "$dist/SIZES.md"

mipsle="$dist/hearth-agent-linux-mipsle"
if [ -e "$mipsle" ]; then
	size=$(stat -c %s "$mipsle")
	if [ "$size" -gt "$budget_mipsle" ]; then
		echo "FAIL: linux-mipsle is $size bytes ($(mib "$size") MiB), over the 6.5 MiB budget" >&2
		exit 1
	fi
	echo
	echo "ok: linux-mipsle $(mib "$size") MiB is within the 6.5 MiB budget"
fi
echo "binaries, SHA256SUMS and SIZES.md in $dist"
