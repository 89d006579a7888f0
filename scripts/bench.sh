#!/usr/bin/env bash
# Runs the benchmarks behind README.md's Performance section and prints their results.
# Usage: scripts/bench.sh [-short]      (-short: fewer iterations and a 1,000-device storm)
# Every figure is measured in this run next to its baseline (e.g. raw ECDSA beside CA
# signing), so a loaded machine shifts both alike.
set -euo pipefail
# go.mod requires Go 1.27.3 (go1.26.8 has reachable standard-library advisories; see
# govulncheck in scripts/test.sh); the go command fetches it from the module proxy once.
export GOTOOLCHAIN=go1.27.3
cd "$(dirname "$0")/.."
rounds=500x
[ "${1:-}" = "-short" ] && rounds=100x

echo "machine: $(lscpu | sed -n 's/^Model name: *//p') · $(nproc) cores · $(go version | cut -d' ' -f3)"
echo

run() { # dir, package, bench regexp, benchtime
	(cd "$1" && go test -run '^$' -bench "$3" -benchtime "$4" -benchmem "$2" | grep -E '^(Benchmark|ok|FAIL)')
}

# storm N: the renewal storm of N devices, hub and fleet as separate processes.
storm() {
	local n=$1 tmp hub fleet="" addr pass="bench admin password"
	command -v jq >/dev/null || { echo "storm: needs jq"; return 1; }
	tmp=$(mktemp -d)
	(cd gateway && go build -o "$tmp/hearth-gateway" ./cmd/hearth-gateway)
	(cd agent && go build -o "$tmp/hearth-fleet" ./cmd/hearth-fleet)
	printf 'issuance_rate: 1000000\nlog_level: warn\nrenewal:\n  rate: 1000\n  max_in_flight: 400\n' >"$tmp/hearth.yaml"
	HEARTH_CA_PASSPHRASE=bench HEARTH_ADMIN_PASSWORD="$pass" "$tmp/hearth-gateway" serve --config "$tmp/hearth.yaml" \
		--data "$tmp/data" --listen 127.0.0.1:0 --http off --hostnames localhost,127.0.0.1 >"$tmp/hub.log" 2>&1 &
	hub=$!
	trap 'kill $hub $fleet 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; trap - RETURN' RETURN
	for _ in $(seq 300); do
		addr=$(sed -n 's/.*(listening on \(127\.0\.0\.1:[0-9]*\)).*/\1/p' "$tmp/hub.log")
		[ -n "$addr" ] && break
		sleep 0.1
	done
	[ -n "$addr" ] || { echo "storm: the hub did not start:"; cat "$tmp/hub.log"; return 1; }

	local t0=$SECONDS
	HEARTH_ADMIN_PASSWORD="$pass" "$tmp/hearth-fleet" run --hub "mqtts://$addr" --ca "$tmp/data/ca/root.pem" \
		--devices "$n" --id-prefix storm- --concurrency 32 --until-renewed --progress 2s --state "$tmp/state.json" \
		--json --duration 2h >"$tmp/summary.json" 2>"$tmp/fleet.log" &
	fleet=$!
	until [ -s "$tmp/state.json" ] && [ "$(jq -r .phase "$tmp/state.json")" != starting ]; do
		kill -0 $fleet 2>/dev/null || { echo "storm: hearth-fleet exited:"; tail -5 "$tmp/fleet.log"; return 1; }
		sleep 1
	done
	echo "enrolled and online: $(jq -r '"\(.enrolled) of \(.devices) devices, \(.online) online"' "$tmp/state.json") after $((SECONDS - t0)) s"

	local tick cpu0 cpu1 start end
	tick=$(getconf CLK_TCK)
	cpu0=$(awk '{print $14 + $15}' /proc/$hub/stat)
	start=$(date +%s.%N)
	"$tmp/hearth-gateway" renew --all --data "$tmp/data" >/dev/null
	wait $fleet || echo "storm: hearth-fleet exited with status $?"
	fleet=
	end=$(date +%s.%N)
	cpu1=$(awk '{print $14 + $15}' /proc/$hub/stat)
	local s="$tmp/summary.json" committed
	committed=$(jq .renewals_committed "$s")
	jq -r '"committed: \(.renewals_committed) renewals by \(.devices_renewed) of \(.enrolled) devices; failures: \(.renewals_failed) \(.failures // {})",
		"latency (start of a renewal to the ack): p50 \(.latency_s.p50) s, p99 \(.latency_s.p99) s, max \(.latency_s.max) s"' "$s"
	echo "storm: $(awk -v a="$start" -v b="$(jq -r .last_commit "$s" | xargs -I{} date -d {} +%s.%N)" -v c="$committed" \
		'BEGIN { printf "%.1f s from renew --all to the last ack, %.0f renewals/s", b - a, c / (b - a) }')"
	awk -v c0="$cpu0" -v c1="$cpu1" -v t="$tick" -v c="$committed" \
		'BEGIN { printf "hub CPU: %.1f s during the storm, %.2f ms per renewal\n", (c1 - c0) / t, (c1 - c0) / t * 1000 / c }'
	echo "hub memory: $(awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {printf "RSS %.0f MiB, peak %.0f MiB", r/1024, h/1024}' /proc/$hub/status)"

	# The inventory against what every device holds (presence events may still be queued).
	local bad
	for _ in $(seq 30); do
		bad=$(jq -n --slurpfile d <("$tmp/hearth-gateway" devices --json --data "$tmp/data") --slurpfile f "$s" \
			'($d[0] | map({(.id): .serial}) | add) as $inv | [$f[0].device_list[] | select($inv[.id] != .serial)] | length')
		[ "$bad" = 0 ] && break
		sleep 1
	done
	echo "inventory: $bad devices disagree with the serial they hold, $(awk -v a="$end" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s after the fleet's exit"
	if command -v sqlite3 >/dev/null; then
		echo "cert.activated events: $(sqlite3 -readonly "$tmp/data/hearth.db" "SELECT count(*) FROM events WHERE kind = 'cert.activated'") for $((n + committed)) commits ($n enrollments, $committed renewals)"
	fi
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
echo "== renewal storm: hearth-fleet (the real agent code, one MQTT session per device) against hearth-gateway serve, two processes"
# The hub runs with a temporary data directory, an issuance rate that does not throttle the
# storm, and a scheduler commanding up to 1,000 devices a second with at most 400 renewing at
# once. hearth-fleet enrolls the devices (tokens minted over the bridge API) and holds their
# sessions; `hearth-gateway renew --all` then makes every device due at once, and the fleet
# exits once every device committed. Needs jq; sqlite3 for the activation count.
devices=${HEARTH_STORM_DEVICES:-10000}
[ "$rounds" = 100x ] && devices=1000
storm "$devices"
