#!/usr/bin/env bash
# Runs the benchmarks behind README.md's Performance section and prints their results.
# Usage: scripts/bench.sh [-short]      (-short: fewer iterations and a 1,000-device storm)
# Every figure is measured in this run next to its baseline (e.g. raw ECDSA beside CA
# signing), so a loaded machine shifts both alike.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=500x
[ "${1:-}" = "-short" ] && rounds=100x

echo "machine: $(lscpu | sed -n 's/^Model name: *//p') · $(nproc) cores · $(go version | cut -d' ' -f3)"
echo

run() { # dir, package, bench regexp, benchtime
	(cd "$1" && go test -run '^$' -bench "$3" -benchtime "$4" -benchmem "$2" | grep -E '^(Benchmark|ok|FAIL)')
}

echo "== CA: leaf signing from CSRs beside raw ECDSA P-256 sign+verify"
run gateway ./internal/ca/ 'SignLeafFromCSR|ECDSAP256SignVerify' 2s
echo
echo "== inventory: issuance records, one per transaction and batched"
run gateway ./internal/inventory/ 'RecordIssuance' 2s
echo
echo "== agent: key and CSR generation per key type"
run agent ./internal/keystore/ 'KeyAndCSR' 1s
echo
echo "== broker: enrollments and full renewals through the real broker (16 paho clients)"
run gateway ./internal/hub/ 'Enrollment|RenewalRoundTrip' "$rounds"
echo
echo "== renewal storm: in-process agents (real agent code) through the real broker over TLS, real SQLite"
# Each in-process agent holds three file descriptors (its TLS socket, the hub's end of it, the
# lock on its state directory); this machine's hard limit of 20,000 open files caps one
# process at about 6,000 agents, so the storm runs 5,000 (HEARTH_STORM_DEVICES overrides).
devices=${HEARTH_STORM_DEVICES:-5000}
[ "$rounds" = 100x ] && devices=1000
(cd gateway && HEARTH_STORM_DEVICES=$devices go test -run '^$' -bench 'RenewalStorm' -benchtime 1x -timeout 60m -v ./internal/hub/ | grep -E '^(Benchmark|ok|FAIL)|storm:')
