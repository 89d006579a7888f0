#!/usr/bin/env bash
# Installs what the tests need (when missing) and runs every check that main must pass:
# gofmt, go vet, staticcheck, go test -race for each module, and GOWORK=off builds.
# Usage: scripts/test.sh            (CI runs exactly this through .ci/run)
#        SHORT=1 scripts/test.sh    (skips the slow end-to-end and cross-build tests)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
modules=(protocol gateway agent)

step() { printf '\n==> %s\n' "$*"; }

install_missing() {
	local need=()
	command -v openssl >/dev/null || need+=(openssl)
	[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || need+=(mosquitto)
	command -v mosquitto_sub >/dev/null || need+=(mosquitto-clients)
	command -v qemu-mipsel-static >/dev/null || need+=(qemu-user-static)
	command -v xz >/dev/null || need+=(xz-utils)
	command -v gcc >/dev/null || need+=(gcc libc6-dev)
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

step "go vet"
for m in "${modules[@]}"; do (cd "$m" && go vet ./...); done

step "staticcheck"
# staticcheck is pinned by the gateway module's tool directive; in workspace mode it checks
# every module's packages.
(cd gateway && go tool staticcheck ./... github.com/hearth-pki/hearth/protocol/... github.com/hearth-pki/hearth/agent/...)

step "GOWORK=off builds"
for m in "${modules[@]}"; do (cd "$m" && GOWORK=off go build ./... && GOWORK=off go vet ./...); done

step "go test -race"
short=()
[ -n "${SHORT:-}" ] && short=(-short)
for m in "${modules[@]}"; do
	(cd "$m" && go test -race -count=1 -timeout 30m "${short[@]}" ./...)
done
echo
echo "all checks passed"
