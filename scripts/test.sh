#!/usr/bin/env bash
# Installs what the tests need (when missing) and runs every check that main must pass:
# gofmt, go vet, staticcheck, govulncheck, GOWORK=off builds, and go test -race for each module.
# Usage: scripts/test.sh            (CI runs exactly this through .ci/run)
#        SHORT=1 scripts/test.sh    (skips the slow end-to-end and cross-build tests)
#
# Each module is vetted, statically checked and tested with GOWORK=off, against its own
# go.mod: the dependency versions that ship (the agent's release build is GOWORK=off, and its
# go.mod pins older versions than the workspace resolves). The modules' replace directives
# point at their sibling modules, so this needs nothing but the checkout.
#
# Tests run real peers: mosquitto, the mosquitto clients, openssl, apparmor_parser, qemu-user
# (every agent target's emulator), xz (scripts/build-agents.sh reports xz sizes), busybox
# (OpenWrt's shell, for the procd init script) and systemd-analyze (package systemd, for the
# unit; it needs no systemd running as PID 1) and PostgreSQL (package postgresql: throwaway
# clusters for the inventory on PostgreSQL and the scheduler's lease). With CI=true (.ci/run, most CI services) a test whose peer is missing fails
# instead of skipping, so this script installs every one of them.
set -euo pipefail
# go.mod requires Go 1.27.3 (go1.26.8 has reachable standard-library advisories; see
# govulncheck in scripts/test.sh); the go command fetches it from the module proxy once.
export GOTOOLCHAIN=go1.27.3
cd "$(dirname "$0")/.."
root=$(pwd)
modules=(protocol gateway agent)

step() { printf '\n==> %s\n' "$*"; }

# have reports whether a program is installed, looking in the sbin directories too (mosquitto
# and apparmor_parser live there, outside an ordinary user's PATH).
have() {
	command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

install_missing() {
	local need=()
	have openssl || need+=(openssl)
	have mosquitto || need+=(mosquitto)
	have mosquitto_sub && have mosquitto_pub || need+=(mosquitto-clients)
	have apparmor_parser || need+=(apparmor)
	# The emulators of the nine agent targets (TestAgentsEndToEnd), all in one package.
	local qemu
	for qemu in aarch64 arm mips mipsel mips64 mips64el x86_64; do
		have "qemu-$qemu-static" || { need+=(qemu-user-static); break; }
	done
	have xz || need+=(xz-utils)
	have busybox || need+=(busybox)
	have systemd-analyze || need+=(systemd)
	have gcc || need+=(gcc libc6-dev)
	# scripts/release.sh cross-builds the arm64 hub with cgo (TestRelease).
	have aarch64-linux-gnu-gcc || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
	# The add-on container test (TestAddonRelease) lays out /data and /ssl in private mount and
	# network namespaces.
	have unshare || need+=(util-linux)
	have ip || need+=(iproute2)
	have chromium || need+=(chromium) # the dashboard's browser test (gateway/internal/web)
	# The inventory on PostgreSQL, the scheduler's lease (initdb and pg_ctl live in
	# /usr/lib/postgresql/<major>/bin, outside PATH).
	have initdb || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
	if [ ${#need[@]} -eq 0 ]; then
		echo "all test dependencies present"
		return
	fi
	echo "installing: ${need[*]}"
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
}

step "dependencies"
install_missing
go version

step "gofmt"
unformatted=$(gofmt -l "${modules[@]}")
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet (workspace)"
for m in "${modules[@]}"; do (cd "$m" && go vet ./...); done

step "GOWORK=off builds and go vet"
for m in "${modules[@]}"; do (cd "$m" && GOWORK=off go build ./... && GOWORK=off go vet ./...); done

step "staticcheck"
# staticcheck is pinned by the gateway module's tool directive; built once, it checks each
# module with GOWORK=off.
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
(cd gateway && GOWORK=off go build -o "$tools/staticcheck" honnef.co/go/tools/cmd/staticcheck)
for m in "${modules[@]}"; do (cd "$m" && GOWORK=off "$tools/staticcheck" ./...); done

step "govulncheck (local vulnerability database)"
# The online database is not reachable from every machine this runs on, so the database is
# built from the golang.org/x/vulndb module (its data/osv folder holds every report as OSV
# JSON) with that module's own indexdb command, and govulncheck reads it as a file:// URL.
# Pinned versions: bump vulndb to pick up new reports.
vulndb=golang.org/x/vulndb@v0.0.0-20261105234957-e22db6528018
osv="$(go mod download -json "$vulndb" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')/data/osv"
go run "${vulndb%@*}/cmd/indexdb@${vulndb#*@}" -vulns "$osv" -out "$tools/vulndb"
for m in "${modules[@]}"; do
	(cd "$m" && GOWORK=off go run golang.org/x/vuln/cmd/govulncheck@v1.9.0 -db "file://$tools/vulndb" ./...)
done

step "go test -race (GOWORK=off)"
short=()
[ -n "${SHORT:-}" ] && short=(-short)
for m in "${modules[@]}"; do
	(cd "$m" && GOWORK=off go test -race -count=1 -timeout 30m ${short[@]+"${short[@]}"} ./...)
done

step "go test -race: the inventory's tests again on PostgreSQL"
(cd gateway && HEARTH_TEST_STORAGE=postgres GOWORK=off go test -race -count=1 -timeout 30m ./internal/inventory/)
echo
echo "all checks passed"
