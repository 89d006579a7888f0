#!/usr/bin/env bash
# Runs the benchmarks behind README.md's Performance section and prints their results.
# Usage: scripts/bench.sh [-short]      (-short: fewer iterations and a 1,000-device storm)
#        HEARTH_STORM_DEVICES=N (default 10,000), HEARTH_STORM_EXTRA=M: the storm again with M
#        more devices seeded into the inventory.
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

# storm N [EXTRA]: the renewal storm of N devices, hub and fleet as separate processes. With
# EXTRA, the inventory holds EXTRA more devices (family "seeded", idle, with an active
# certificate, never connected) written straight into SQLite before the hub's second start,
# to show what the size of the inventory costs a storm of the same N devices.
storm() {
	local n=$1 extra=${2:-0} tmp hub="" fleet="" addr pass="bench admin password"
	command -v jq >/dev/null || { echo "storm: needs jq"; return 1; }
	tmp=$(mktemp -d)
	(cd gateway && go build -o "$tmp/hearth-gateway" ./cmd/hearth-gateway)
	(cd agent && go build -o "$tmp/hearth-fleet" ./cmd/hearth-fleet)
	printf 'issuance_rate: 1000000\nlog_level: warn\nrenewal:\n  rate: 1000\n  max_in_flight: 400\n' >"$tmp/hearth.yaml"
	trap 'kill $hub $fleet 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; trap - RETURN' RETURN
	start_hub() {
		: >"$tmp/hub.log"
		HEARTH_CA_PASSPHRASE=bench HEARTH_ADMIN_PASSWORD="$pass" "$tmp/hearth-gateway" serve --config "$tmp/hearth.yaml" \
			--data "$tmp/data" --listen 127.0.0.1:0 --http off --hostnames localhost,127.0.0.1 >"$tmp/hub.log" 2>&1 &
		hub=$!
		addr=
		for _ in $(seq 600); do
			addr=$(sed -n 's/.*(listening on \(127\.0\.0\.1:[0-9]*\)).*/\1/p' "$tmp/hub.log")
			[ -n "$addr" ] && break
			sleep 0.1
		done
		[ -n "$addr" ] || { echo "storm: the hub did not start:"; cat "$tmp/hub.log"; return 1; }
	}
	start_hub || return 1
	if [ "$extra" -gt 0 ]; then
		command -v sqlite3 >/dev/null || { echo "storm: seeding needs sqlite3"; return 1; }
		kill $hub && wait $hub
		local now t0=$SECONDS
		now=$(date +%s)
		sqlite3 "$tmp/data/hearth.db" "BEGIN;
			WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < $extra)
			INSERT INTO devices (id, name, family, path, mechanism, created_at, last_seen, state)
				SELECT printf('seed-%07d', i), printf('seeded %d', i), 'seeded', 'direct', 'agent', $now, $now, 'active' FROM k;
			WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < $extra)
			INSERT INTO certificates (serial, device_id, not_before, not_after, issuer, key_algorithm, fingerprint, status,
					request_id, created_at, activated_at)
				SELECT printf('5eed%012x', i), printf('seed-%07d', i), $now - 60, $now + 30 * 86400, 'seeded', 'p256',
					printf('%064x', i), 'active', printf('seed-%d', i), $now, $now FROM k;
			COMMIT;"
		start_hub || return 1
		# The hub's first renewal pass reads every device and stores the seeded devices'
		# windows (published once); wait for it, so that it is not measured as the storm's.
		until [ "$(sqlite3 -readonly "$tmp/data/hearth.db" "SELECT count(*) FROM devices WHERE renewal_window_end <> 0")" -ge "$extra" ]; do
			kill -0 $hub 2>/dev/null || { echo "storm: the hub exited:"; tail -5 "$tmp/hub.log"; return 1; }
			sleep 2
		done
		echo "inventory: $extra more devices seeded, and their windows stored by the hub's first pass, in $((SECONDS - t0)) s (both hub starts included)"
	fi

	local t0 e0 ecpu0
	e0=$(date +%s.%N)
	ecpu0=$(awk '{print $14 + $15}' /proc/$hub/stat)
	t0=$SECONDS
	HEARTH_ADMIN_PASSWORD="$pass" "$tmp/hearth-fleet" run --hub "mqtts://$addr" --ca "$tmp/data/ca/root.pem" \
		--devices "$n" --id-prefix storm- --concurrency 32 --until-renewed --progress 2s --state "$tmp/state.json" \
		--json --duration 2h >"$tmp/summary.json" 2>"$tmp/fleet.log" &
	fleet=$!
	until [ -s "$tmp/state.json" ] && [ "$(jq -r .phase "$tmp/state.json")" != starting ]; do
		kill -0 $fleet 2>/dev/null || { echo "storm: hearth-fleet exited:"; tail -5 "$tmp/fleet.log"; return 1; }
		sleep 1
	done
	echo "enrolled and online: $(jq -r '"\(.enrolled) of \(.devices) devices, \(.online) online"' "$tmp/state.json") after $((SECONDS - t0)) s"
	# Enrollment: a token minted over the bridge API, a TLS session logging in with it, a CSR,
	# a reconnection with the certificate and its commit, per device (hearth-fleet, 32 at once).
	awk -v a="$e0" -v b="$(date +%s.%N)" -v c0="$ecpu0" -v c1="$(awk '{print $14 + $15}' /proc/$hub/stat)" -v t="$(getconf CLK_TCK)" -v n="$n" \
		'BEGIN { printf "enrollments: %.0f/s, hub CPU %.2f ms per enrollment (%.1f s)\n", n / (b - a), (c1 - c0) / t * 1000 / n, (c1 - c0) / t }'

	local tick cpu0 cpu1 start end rss0 rss1 sampler
	rss() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' /proc/$hub/status; }
	tick=$(getconf CLK_TCK)
	rss0=$(rss)
	(m=0; while kill -0 $fleet 2>/dev/null; do r=$(rss); [ "$r" -gt "$m" ] && m=$r && echo "$m" >"$tmp/rss.max"; sleep 1; done) &
	sampler=$!
	cpu0=$(awk '{print $14 + $15}' /proc/$hub/stat)
	start=$(date +%s.%N)
	# A campaign of the fleet's devices (hearth-fleet enrolls them in family "fleet"): the
	# seeded devices are not part of it.
	"$tmp/hearth-gateway" renew --family fleet --data "$tmp/data" >/dev/null
	wait $fleet || echo "storm: hearth-fleet exited with status $?"
	fleet=
	end=$(date +%s.%N)
	cpu1=$(awk '{print $14 + $15}' /proc/$hub/stat)
	wait $sampler 2>/dev/null
	rss1=$(rss)
	local s="$tmp/summary.json" committed
	committed=$(jq .renewals_committed "$s")
	jq -r '"committed: \(.renewals_committed) renewals by \(.devices_renewed) of \(.enrolled) devices; failures: \(.renewals_failed) \(.failures // {})",
		"latency (start of a renewal to the ack): p50 \(.latency_s.p50) s, p99 \(.latency_s.p99) s, max \(.latency_s.max) s"' "$s"
	echo "storm: $(awk -v a="$start" -v b="$(jq -r .last_commit "$s" | xargs -I{} date -d {} +%s.%N)" -v c="$committed" \
		'BEGIN { printf "%.1f s from renew (the campaign) to the last ack, %.0f renewals/s", b - a, c / (b - a) }')"
	awk -v c0="$cpu0" -v c1="$cpu1" -v t="$tick" -v c="$committed" \
		'BEGIN { printf "hub CPU: %.1f s during the storm, %.2f ms per renewal\n", (c1 - c0) / t, (c1 - c0) / t * 1000 / c }' | tee "$tmp/cpu.txt"
	echo "hub memory: RSS $rss0 MiB before the storm, $(cat "$tmp/rss.max" 2>/dev/null || echo "$rss0") MiB at most during it, $rss1 MiB after; peak $(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' /proc/$hub/status) MiB since the hub started"

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
	# The hub's cryptographic floor of one renewal (gateway/internal/ca BenchmarkRenewalCryptoFloor:
	# two TLS 1.3 server handshakes with client-certificate verification, one CSR signature
	# check, one P-256 signature), in this run, after the storm.
	local floor
	floor=$(cd gateway && go test -run '^$' -bench RenewalCryptoFloor -benchtime 300x ./internal/ca/ |
		awk '/^BenchmarkRenewalCryptoFloor/ { for (i = 1; i < NF; i++) if ($(i + 1) == "hub-µs/op") print $i }')
	awk -v f="$floor" '/ms per renewal/ { ms = $(NF - 3) } END { printf "crypto floor: %.2f ms per renewal; hub CPU per renewal is %.1f× it\n", f / 1000, ms / (f / 1000) }' "$tmp/cpu.txt"
}

echo "== CA: leaf signing from CSRs beside raw ECDSA P-256 sign+verify, and the crypto floor of one renewal"
run gateway ./internal/ca/ 'SignLeafFromCSR|ECDSAP256SignVerify|RenewalCryptoFloor' 2s
echo
echo "== renewal scheduler: a pass over an idle fleet (the index leaves nothing to read)"
run gateway ./internal/renewal/ 'ReconcileIdleFleet' 20x
echo
echo "== inventory: issuance records, one per transaction and batched; eight concurrent writers (group commit)"
run gateway ./internal/inventory/ 'RecordIssuance|ConcurrentWrites' 2s
echo
echo "== dashboard: one page of the device list and the overview at 10,000 devices"
run gateway ./internal/web/ 'DeviceList|Overview' 10x
echo
echo "== broker: heap per unauthenticated connection holding the largest CONNECT it may claim"
run gateway ./internal/broker/ 'HeldConnectClaims' 3x
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
if [ -n "${HEARTH_STORM_EXTRA:-}" ]; then
	echo
	echo "== the same storm with $HEARTH_STORM_EXTRA more devices in the inventory (idle, never connected)"
	storm "$devices" "$HEARTH_STORM_EXTRA"
fi
