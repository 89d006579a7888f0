#!/usr/bin/env bash
# Builds hearth-gateway and hearth-agent from this checkout and installs them on PATH.
# `go install …@latest` cannot work: the modules find the protocol module through replace
# directives (../protocol), which only a checkout satisfies.
#
# Usage: scripts/install.sh [--prefix DIR] [--systemd] [VERSION]
#   --prefix DIR  install into DIR/bin (default /usr/local, or ~/.local when not root)
#   --systemd     also install gateway/deploy/hearth-gateway.service and create the hearth
#                 user (root only); start it with: systemctl enable --now hearth-gateway
#   VERSION       stamped into both binaries (default: git describe, else "dev")
# The hub needs a C compiler (SQLite through cgo); the agent builds static (CGO_ENABLED=0).
set -euo pipefail
# go.mod requires Go 1.27.3 (go1.26.8 has reachable standard-library advisories; see
# govulncheck in scripts/test.sh); the go command fetches it from the module proxy once.
export GOTOOLCHAIN=go1.27.3
cd "$(dirname "$0")/.."
root=$(pwd)

prefix=""
systemd=false
version=""
while [ $# -gt 0 ]; do
	case "$1" in
	--prefix) prefix=$2; shift 2 ;;
	--prefix=*) prefix=${1#--prefix=}; shift ;;
	--systemd) systemd=true; shift ;;
	-h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "install.sh: unknown flag $1 (see --help)" >&2; exit 2 ;;
	*) version=$1; shift ;;
	esac
done
if [ -z "$prefix" ]; then
	if [ "$(id -u)" = 0 ]; then prefix=/usr/local; else prefix=$HOME/.local; fi
fi
version=${version:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
bin=$prefix/bin
mkdir -p "$bin"

# The same lines by hand, from the repository root:
(cd gateway && GOWORK=off go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$bin/hearth-gateway" ./cmd/hearth-gateway)
(cd agent && CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$bin/hearth-agent" ./cmd/hearth-agent)
echo "installed $bin/hearth-gateway and $bin/hearth-agent ($version)"
case ":$PATH:" in
*":$bin:"*) ;;
*) echo "note: $bin is not on PATH; add it: export PATH=\"$bin:\$PATH\"" ;;
esac

if $systemd; then
	if [ "$(id -u)" != 0 ]; then
		echo "install.sh: --systemd needs root" >&2
		exit 1
	fi
	id hearth >/dev/null 2>&1 || useradd --system --home-dir /var/lib/hearth --shell /usr/sbin/nologin hearth
	sed "s|/usr/local/bin/hearth-gateway|$bin/hearth-gateway|g" "$root/gateway/deploy/hearth-gateway.service" \
		>/etc/systemd/system/hearth-gateway.service
	systemctl daemon-reload
	echo "installed /etc/systemd/system/hearth-gateway.service; start it with: systemctl enable --now hearth-gateway"
fi
