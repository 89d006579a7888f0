#!/usr/bin/env bash
# Runs the benchmarks behind README.md's Performance section and prints their results.
# Usage: scripts/bench.sh [-short]      (-short: fewer iterations and a 1,000-device storm)
#        HEARTH_STORM_DEVICES=N (default 10,000), HEARTH_STORM_EXTRA=M: the storm again with M
#        more devices seeded into the inventory.
#        scripts/bench.sh peers|sessions|stepca [N]   (the peer comparisons, default 10,000 devices)
#        scripts/bench.sh idle N   (what N idle devices in the inventory cost the hub's memory)
#        scripts/bench.sh replicas [N]   (renewals/s with 1, 2 and 3 hub replicas, default 1,000 devices)
#        sessions: HEARTH_BENCH_STATE=DIR keeps (and reuses) the enrolled devices; with
#        HEARTH_BENCH_DEBUG it prints the hub's memory per session (HEARTH_BENCH_PROFILES=DIR keeps
#        the profiles); HEARTH_BENCH_NO_MOSQUITTO=1 skips mosquitto. HEARTH_HUB_GOGC and
#        HEARTH_HUB_GOMEMLIMIT set the hub's GC, HEARTH_HUB_LOG_LEVEL its log level (default
#        warn; sessions keeps its log in HEARTH_BENCH_PROFILES).
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

# storm N [EXTRA]: the renewal storm of N devices, hub and fleet as separate processes. With
# EXTRA, the inventory holds EXTRA more devices (family "seeded", idle, with an active
# certificate, never connected) written straight into SQLite before the hub's second start,
# to show what the size of the inventory costs a storm of the same N devices; the storm starts
# once the hub's start-up on them is over (its CPU idle).
storm() {
	local n=$1 extra=${2:-0} tmp hub="" fleet="" addr pass="bench admin password"
	command -v jq >/dev/null || { echo "storm: needs jq"; return 1; }
	tmp=$(mktemp -d)
	(cd gateway && go build -o "$tmp/hearth-gateway" ./cmd/hearth-gateway)
	(cd agent && go build -o "$tmp/hearth-fleet" ./cmd/hearth-fleet)
	printf 'issuance_rate: 1000000\nlog_level: warn\nrenewal:\n  rate: 1000\n  max_in_flight: 400\n' >"$tmp/hearth.yaml"
	# HEARTH_BENCH_DEBUG=127.0.0.1:PORT: the hub serves its profiles there (debug_listen).
	[ -n "${HEARTH_BENCH_DEBUG:-}" ] && echo "debug_listen: $HEARTH_BENCH_DEBUG" >>"$tmp/hearth.yaml"
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
		# Then the rest of the start-up: the fleet view loads and publishes the devices whose
		# windows the pass stored. Wait until the hub is idle (under 5 % of a core for 2 s), so
		# that its start-up is not measured as the enrollments'.
		local idle0 idle1
		for _ in $(seq 300); do
			idle0=$(awk '{print $14 + $15}' /proc/$hub/stat)
			sleep 2
			idle1=$(awk '{print $14 + $15}' /proc/$hub/stat)
			[ $((idle1 - idle0)) -lt $(($(getconf CLK_TCK) / 10)) ] && break
		done
		echo "inventory: $extra more devices seeded, their windows stored by the hub's first pass and the hub idle again, in $((SECONDS - t0)) s (both hub starts included)"
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

	local tick cpu0 cpu1 sys0 sys1 start end rss0 rss1 sampler
	rss() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' /proc/$hub/status; }
	tick=$(getconf CLK_TCK)
	rss0=$(rss)
	# With HEARTH_BENCH_DEBUG: the live heap after three forced GCs, before and after the
	# storm (what stays allocated), the profiles kept in HEARTH_BENCH_PROFILES if set.
	local live0="" live1=""
	[ -n "${HEARTH_BENCH_DEBUG:-}" ] && live0=$(liveheap "$tmp" before)
	(m=0; while kill -0 $fleet 2>/dev/null; do r=$(rss); [ "$r" -gt "$m" ] && m=$r && echo "$m" >"$tmp/rss.max"; sleep 1; done) &
	sampler=$!
	cpu0=$(awk '{print $14 + $15}' /proc/$hub/stat)
	sys0=$(awk '{print $15}' /proc/$hub/stat)
	start=$(date +%s.%N)
	# A campaign of the fleet's devices (hearth-fleet enrolls them in family "fleet"): the
	# seeded devices are not part of it.
	"$tmp/hearth-gateway" renew --family fleet --data "$tmp/data" >/dev/null
	wait $fleet || echo "storm: hearth-fleet exited with status $?"
	fleet=
	end=$(date +%s.%N)
	cpu1=$(awk '{print $14 + $15}' /proc/$hub/stat)
	sys1=$(awk '{print $15}' /proc/$hub/stat)
	wait $sampler 2>/dev/null
	rss1=$(rss)
	local s="$tmp/summary.json" committed
	committed=$(jq .renewals_committed "$s")
	jq -r '"committed: \(.renewals_committed) renewals by \(.devices_renewed) of \(.enrolled) devices; failures: \(.renewals_failed) \(.failures // {})",
		"latency (start of a renewal to the ack): p50 \(.latency_s.p50) s, p99 \(.latency_s.p99) s, max \(.latency_s.max) s"' "$s"
	echo "storm: $(awk -v a="$start" -v b="$(jq -r .last_commit "$s" | xargs -I{} date -d {} +%s.%N)" -v c="$committed" \
		'BEGIN { printf "%.1f s from renew (the campaign) to the last ack, %.0f renewals/s", b - a, c / (b - a) }')"
	# System time is the kernel's share: the sockets and the WAL's writes and syncs.
	awk -v c0="$cpu0" -v c1="$cpu1" -v s0="$sys0" -v s1="$sys1" -v t="$tick" -v c="$committed" \
		'BEGIN { printf "hub CPU: %.1f s during the storm (%.1f s of it system), %.2f ms per renewal\n", (c1 - c0) / t, (s1 - s0) / t, (c1 - c0) / t * 1000 / c }' | tee "$tmp/cpu.txt"
	echo "hub memory: RSS $rss0 MiB before the storm, $(cat "$tmp/rss.max" 2>/dev/null || echo "$rss0") MiB at most during it, $rss1 MiB after; peak $(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' /proc/$hub/status) MiB since the hub started"
	if [ -n "$live0" ]; then
		sleep 10 # the storm's last presence and audit writes
		live1=$(liveheap "$tmp" after)
		echo "hub live heap after 3 forced GCs: $((live0 / 1048576)) MiB before the storm, $((live1 / 1048576)) MiB after (RSS then $(rss) MiB)"
	fi

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

# liveheap TMP NAME: the hub's live heap in bytes after three forced GCs, through its
# debug_listen (HEARTH_BENCH_DEBUG); the heap profile is kept as HEARTH_BENCH_PROFILES/heap-NAME.pb.gz.
liveheap() {
	for _ in 1 2 3; do curl -s "http://$HEARTH_BENCH_DEBUG/debug/pprof/heap?gc=1" >"$1/heap-$2.pb.gz"; done
	if [ -n "${HEARTH_BENCH_PROFILES:-}" ]; then mkdir -p "$HEARTH_BENCH_PROFILES" && cp "$1/heap-$2.pb.gz" "$HEARTH_BENCH_PROFILES/"; fi
	curl -s "http://$HEARTH_BENCH_DEBUG/debug/pprof/heap?debug=1" | sed -n 's/^# HeapAlloc = //p'
}

# rss PID: the process's resident set in MiB.
rss() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

# cpu_ms PID: the process's user + system CPU time in ms.
cpu_ms() { awk -v t="$(getconf CLK_TCK)" '{printf "%.0f", ($14 + $15) * 1000 / t}' "/proc/$1/stat"; }

# wait_line FILE REGEXP PID: waits until FILE has a line matching REGEXP, while PID lives.
wait_line() {
	until grep -qE "$2" "$1" 2>/dev/null; do
		kill -0 "$3" 2>/dev/null || { echo "process $3 exited:"; tail -5 "$1"; return 1; }
		sleep 0.5
	done
}

# bench_hub TMP: starts hearth-gateway serve on TMP/data and sets hub and hub_addr. With
# HEARTH_BENCH_DEBUG=127.0.0.1:PORT the hub serves its profiles there (debug_listen), to
# profile a run with go tool pprof. HEARTH_HUB_GOGC and HEARTH_HUB_GOMEMLIMIT are the hub's
# GOGC and GOMEMLIMIT (unset: Go's defaults; the add-on sets GOMEMLIMIT, addon/gomemlimit.sh).
bench_hub() {
	local tmp=$1
	printf 'issuance_rate: 1000000\nlog_level: %s\n' "${HEARTH_HUB_LOG_LEVEL:-warn}" >"$tmp/hearth.yaml"
	[ -n "${HEARTH_BENCH_DEBUG:-}" ] && echo "debug_listen: $HEARTH_BENCH_DEBUG" >>"$tmp/hearth.yaml"
	: >"$tmp/hub.log"
	GOGC=${HEARTH_HUB_GOGC:-} GOMEMLIMIT=${HEARTH_HUB_GOMEMLIMIT:-} HEARTH_CA_PASSPHRASE=bench HEARTH_ADMIN_PASSWORD="bench admin password" "$tmp/hearth-gateway" serve --config "$tmp/hearth.yaml" \
		--data "$tmp/data" --listen 127.0.0.1:0 --http off --hostnames localhost,127.0.0.1 >>"$tmp/hub.log" 2>&1 &
	hub=$!
	hub_addr=
	for _ in $(seq 300); do
		hub_addr=$(sed -n 's/.*(listening on \(127\.0\.0\.1:[0-9]*\)).*/\1/p' "$tmp/hub.log")
		[ -n "$hub_addr" ] && return 0
		sleep 0.1
	done
	echo "the hub did not start:"; cat "$tmp/hub.log"; return 1
}

# held NAME PID TMP N: hearth-bench holds N sessions against a broker (PID) in two waves of
# connections 64 at a time, printing the connect wall time and the broker's RSS after each.
held() {
	local name=$1 pid=$2 tmp=$3 n=$4 addr=$5 ca=$6 load c0 c1 c2 g0=""
	[ "$name" = hub ] && [ -n "${HEARTH_BENCH_DEBUG:-}" ] && g0=$(goroutines)
	c0=$(cpu_ms "$pid")
	"$tmp/hearth-bench" sessions --addr "$addr" --ca "$ca" --keys "$tmp/keys" --devices "$n" --concurrency 64 --waves 2 >"$tmp/load-$name.log" 2>&1 &
	load=$!
	wait_line "$tmp/load-$name.log" '^wave 1:' $load || return 1
	c1=$(cpu_ms "$pid")
	sleep 5 # let the broker settle (presence, retained state, a GC cycle)
	c2=$(cpu_ms "$pid")
	echo "$name: $(sed -n 's/^wave 1: //p' "$tmp/load-$name.log"); RSS holding them $(rss "$pid") MiB; CPU $((c1 - c0)) ms connecting ($(((c1 - c0) * 1000 / n)) µs each), $((c2 - c1)) ms in the 5 s after"
	[ -n "$g0" ] && breakdown "$pid" "$g0" "$tmp"
	kill -USR1 $load
	wait_line "$tmp/load-$name.log" '^wave 2:' $load || return 1
	sleep 5
	echo "$name: held after the first wave: $(sed -n 's/^held after wave 1: //p' "$tmp/load-$name.log")"
	echo "$name: reconnection storm (every session dropped, then all reconnected): $(sed -n 's/^wave 2: //p' "$tmp/load-$name.log"); RSS $(rss "$pid") MiB, peak $(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status") MiB"
	[ -n "${HEARTH_BENCH_PROFILES:-}" ] && [ "$name" = hub ] && mkdir -p "$HEARTH_BENCH_PROFILES" && cp "$tmp/hub.log" "$HEARTH_BENCH_PROFILES/"
	grep -E '^  ' "$tmp/load-$name.log" | head -3
	kill $load
	wait $load 2>/dev/null || true
}

# memstat FILE FIELD: a field of runtime.MemStats from a heap profile's debug=1 text, in bytes
# (for "Stack = inuse / sys", the first).
memstat() { sed -n "s/^# $2 = \([0-9]*\).*/\1/p" "$1"; }

# goroutines: the hub's goroutine count, through its debug_listen (HEARTH_BENCH_DEBUG).
goroutines() { curl -s "http://$HEARTH_BENCH_DEBUG/debug/pprof/goroutine?debug=1" | sed -n '1s/.*total \([0-9]*\).*/\1/p'; }

# breakdown PID G0 TMP: where the hub's memory goes while it holds its sessions, from its
# debug_listen (HEARTH_BENCH_DEBUG): RSS, then after three forced GCs the live heap, the heap
# spans in use, the heap kept but free, the goroutine stacks and the rest of the runtime, each
# per session held: one goroutine each, counted beyond the G0 the hub ran before the load.
# The profiles are kept in HEARTH_BENCH_PROFILES (a directory) if set.
breakdown() {
	local pid=$1 n g0=$2 tmp=$3 dbg=$HEARTH_BENCH_DEBUG f rss0 g
	rss0=$(awk '/^VmRSS/ {print $2 * 1024}' "/proc/$pid/status")
	for _ in 1 2 3; do curl -s "http://$dbg/debug/pprof/heap?gc=1" >"$tmp/heap.pb.gz"; done
	f=$tmp/heap.txt
	curl -s "http://$dbg/debug/pprof/heap?debug=1" >"$f"
	g=$(goroutines)
	n=$((g - g0))
	if [ -n "${HEARTH_BENCH_PROFILES:-}" ]; then
		mkdir -p "$HEARTH_BENCH_PROFILES"
		cp "$tmp/heap.pb.gz" "$HEARTH_BENCH_PROFILES/heap-sessions.pb.gz"
		curl -s "http://$dbg/debug/pprof/goroutine" >"$HEARTH_BENCH_PROFILES/goroutine-sessions.pb.gz"
	fi
	awk -v n="$n" -v rss="$rss0" -v rss1="$(awk '/^VmRSS/ {print $2 * 1024}' "/proc/$pid/status")" \
		-v alloc="$(memstat "$f" HeapAlloc)" -v inuse="$(memstat "$f" HeapInuse)" -v idle="$(memstat "$f" HeapIdle)" \
		-v rel="$(memstat "$f" HeapReleased)" -v stack="$(memstat "$f" Stack)" -v sys="$(memstat "$f" Sys)" \
		-v hsys="$(memstat "$f" HeapSys)" -v goal="$(memstat "$f" NextGC)" 'BEGIN {
		k = 1024 * n
		printf "hub memory per session (%d sessions held): RSS %.1f KiB (%.1f after 3 GCs); live heap %.1f, heap spans in use %.1f, heap free not released %.1f, released %.1f, stacks %.1f, rest of the runtime %.1f KiB; next GC at %.1f KiB of heap\n",
			n, rss / k, rss1 / k, alloc / k, inuse / k, (idle - rel) / k, rel / k, stack / k, (sys - hsys - stack) / k, goal / k
	}'
}

# sessions N: the hub and mosquitto each holding N mutual-TLS sessions of the same devices,
# opened by the same load process (hearth-bench sessions: one session per device as
# hearth-agent opens it). hearth-fleet enrolls the devices first and keeps their keys in a
# directory; the hub is restarted before the measure, so its RSS counts the sessions only.
sessions() {
	local n=$1 tmp hub="" hub_addr fleet="" mosq="" keep=${HEARTH_BENCH_STATE:-}
	tmp=$(mktemp -d)
	trap 'kill $hub $fleet $mosq 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; trap - RETURN' RETURN
	(cd gateway && go build -o "$tmp/hearth-gateway" ./cmd/hearth-gateway && go build -o "$tmp/hearth-bench" ./internal/hearth-bench)
	(cd agent && go build -o "$tmp/hearth-fleet" ./cmd/hearth-fleet)
	# HEARTH_BENCH_STATE=DIR keeps the enrolled hub (DIR/data) and the devices' keys (DIR/keys)
	# for the next run with the same DIR, which then skips the enrollment.
	if [ -n "$keep" ] && [ -d "$keep/data" ] && [ -d "$keep/keys" ]; then
		cp -a "$keep/data" "$keep/keys" "$tmp/"
		echo "sessions: reusing the hub and $(find "$tmp/keys" -name current.pem | wc -l) devices enrolled in $keep"
	else
		enroll "$tmp" "$n" || return 1
		[ -n "$keep" ] && mkdir -p "$keep" && cp -a "$tmp/data" "$tmp/keys" "$keep/"
	fi
	n=$(find "$tmp/keys" -name current.pem | wc -l)
	[ -n "$keep" ] && n=$(($n < $1 ? $n : $1))
	bench_hub "$tmp" || return 1
	sleep 2
	echo "hub: idle RSS $(rss $hub) MiB with $(find "$tmp/keys" -name current.pem | wc -l) devices in the inventory"
	held hub $hub "$tmp" "$n" "$hub_addr" "$tmp/data/ca/root.pem" || return 1
	kill $hub; wait $hub 2>/dev/null || true; hub=
	[ -n "${HEARTH_BENCH_NO_MOSQUITTO:-}" ] && return 0

	# mosquitto: its own server certificate, the hub's root to verify the same devices.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
		-addext subjectAltName=IP:127.0.0.1 -keyout "$tmp/mosq.key" -out "$tmp/mosq.crt" 2>/dev/null
	local port=$((20000 + RANDOM % 20000))
	# "user": mosquitto started as root would drop to the mosquitto user, who cannot read $tmp.
	printf 'user %s\nper_listener_settings false\nlistener %s 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\nuse_identity_as_username true\npersistence false\nmax_queued_messages 64\nlog_dest stderr\nlog_type error\n' \
		"$(id -un)" "$port" "$tmp/data/ca/root.pem" "$tmp/mosq.crt" "$tmp/mosq.key" >"$tmp/mosquitto.conf"
	mosquitto -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
	mosq=$!
	sleep 1
	kill -0 $mosq 2>/dev/null || { echo "sessions: mosquitto did not start:"; cat "$tmp/mosquitto.log"; return 1; }
	echo "mosquitto ($(mosquitto -h 2>&1 | sed -n '1s/mosquitto version //p')): idle RSS $(rss $mosq) MiB"
	held mosquitto $mosq "$tmp" "$n" "127.0.0.1:$port" "$tmp/mosq.crt" || return 1
}

# enroll TMP N: hearth-fleet enrolls N devices with the hub on TMP/data and keeps their keys
# in TMP/keys; the hub is stopped after.
enroll() {
	local tmp=$1 n=$2
	bench_hub "$tmp" || return 1
	# hearth-fleet --keys-dir holds two descriptors per device (socket and lock): enroll in
	# processes of at most 5,000 devices each, so that none reaches the open-file limit.
	local part parts=$(((n + 4999) / 5000)) fleets=()
	for part in $(seq "$parts"); do
		HEARTH_ADMIN_PASSWORD="bench admin password" "$tmp/hearth-fleet" run --hub "mqtts://$hub_addr" --ca "$tmp/data/ca/root.pem" \
			--devices $((n / parts)) --id-prefix "sess$part-" --concurrency 16 --keys-dir "$tmp/keys" --progress 2s \
			--state "$tmp/state$part.json" >/dev/null 2>"$tmp/fleet$part.log" &
		fleets+=($!)
	done
	fleet="${fleets[*]}"
	for part in $(seq "$parts"); do
		until [ -s "$tmp/state$part.json" ] && [ "$(jq -r .phase "$tmp/state$part.json")" != starting ]; do
			kill -0 "${fleets[part - 1]}" 2>/dev/null || { echo "sessions: hearth-fleet exited:"; tail -5 "$tmp/fleet$part.log"; return 1; }
			sleep 1
		done
	done
	kill $fleet; wait $fleet 2>/dev/null || true; fleet=
	kill $hub; wait $hub 2>/dev/null || true; hub=
}

# stepca N: step-ca (built from its published source into a temporary GOBIN, never
# committed) rekeying N devices over mutual TLS, 16 at a time, from hearth-bench in a
# separate process; CPU from /proc of step-ca.
stepca() {
	local n=$1 tmp sca="" cpu0 cpu1 port=$((20000 + RANDOM % 20000))
	tmp=$(mktemp -d)
	trap 'kill $sca 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; trap - RETURN' RETURN
	(cd gateway && go build -o "$tmp/hearth-bench" ./internal/hearth-bench)
	CGO_ENABLED=0 GOBIN="$tmp/bin" go install github.com/smallstep/certificates/cmd/step-ca@v0.30.2
	"$tmp/hearth-bench" stepca-init --dir "$tmp/ca" --devices "$n" --port "$port" >/dev/null
	"$tmp/bin/step-ca" "$tmp/ca/ca.json" >"$tmp/step-ca.log" 2>&1 &
	sca=$!
	wait_line "$tmp/step-ca.log" 'Serving HTTPS' $sca || return 1
	cpu0=$(cpu_ms $sca)
	"$tmp/hearth-bench" rekey --url "https://127.0.0.1:$port" --dir "$tmp/ca" --devices "$n" --concurrency 16 >"$tmp/rekey.log" || { cat "$tmp/rekey.log"; return 1; }
	cpu1=$(cpu_ms $sca)
	echo "step-ca v0.30.2: $(sed -n 's/^rekey: //p' "$tmp/rekey.log")"
	echo "step-ca CPU: $((cpu1 - cpu0)) ms for $n rekeys, $(awk -v c=$((cpu1 - cpu0)) -v n="$n" 'BEGIN {printf "%.2f", c / n}') ms per rekey; RSS $(rss $sca) MiB"
}

# idle N: what N idle devices in the inventory cost the hub (issue 11): N devices seeded into
# SQLite as storm seeds them, the hub started on them with its profiles on HEARTH_BENCH_DEBUG
# (default 127.0.0.1:6161); once its first pass is over and it is idle, three forced GCs,
# then its live heap (runtime.MemStats.HeapAlloc) and RSS, against the same hub with no device.
idle() {
	local n=$1 tmp hub="" hub_addr dbg=${HEARTH_BENCH_DEBUG:-127.0.0.1:6161} m heap0 heap1 rss0 t0
	command -v sqlite3 >/dev/null || { echo "idle: needs sqlite3"; return 1; }
	tmp=$(mktemp -d)
	trap 'kill $hub 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; trap - RETURN' RETURN
	(cd gateway && go build -o "$tmp/hearth-gateway" ./cmd/hearth-gateway)
	# settled: waits until the hub used under 0.1 s of CPU in 5 s, then forces three GCs and
	# prints its live heap in bytes.
	settled() {
		local a b
		while :; do a=$(cpu_ms $hub); sleep 5; b=$(cpu_ms $hub); [ $((b - a)) -lt 100 ] && break; done
		for _ in 1 2 3; do curl -s "http://$dbg/debug/pprof/heap?gc=1" >/dev/null; done
		curl -s "http://$dbg/debug/pprof/heap?debug=1" | sed -n 's/^# HeapAlloc = //p'
	}
	HEARTH_BENCH_DEBUG=$dbg bench_hub "$tmp" || return 1
	heap0=$(settled) rss0=$(rss $hub)
	kill $hub; wait $hub 2>/dev/null || true
	seed "$tmp/data/hearth.db" "$n"
	t0=$SECONDS
	HEARTH_BENCH_DEBUG=$dbg bench_hub "$tmp" || return 1
	# The first pass stores every seeded device's window (and publishes it, once).
	until [ "$(sqlite3 -readonly "$tmp/data/hearth.db" "SELECT count(*) FROM devices WHERE renewal_window_end <> 0")" -ge "$n" ]; do
		kill -0 $hub 2>/dev/null || { echo "idle: the hub exited:"; tail -5 "$tmp/hub.log"; return 1; }
		sleep 2
	done
	m=$(rss $hub)
	heap1=$(settled)
	echo "hub with no device: live heap $((heap0 / 1024)) KiB, RSS $rss0 MiB"
	echo "hub with $n idle devices: first pass over in $((SECONDS - t0)) s (RSS $m MiB then); settled: live heap $((heap1 / 1048576)) MiB, RSS $(rss $hub) MiB"
	echo "per idle device: $(((heap1 - heap0) / n)) bytes of live heap"
}

# seed DB N: writes N devices straight into the hub's SQLite file DB (family "seeded", idle,
# with an active certificate, never connected).
seed() {
	local now
	now=$(date +%s)
	sqlite3 "$1" "BEGIN;
		WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < $2)
		INSERT INTO devices (id, name, family, path, mechanism, created_at, last_seen, state)
			SELECT printf('seed-%07d', i), printf('seeded %d', i), 'seeded', 'direct', 'agent', $now, $now, 'active' FROM k;
		WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < $2)
		INSERT INTO certificates (serial, device_id, not_before, not_after, issuer, key_algorithm, fingerprint, status,
				request_id, created_at, activated_at)
			SELECT printf('5eed%012x', i), printf('seed-%07d', i), $now - 60, $now + 30 * 86400, 'seeded', 'p256',
				printf('%064x', i), 'active', printf('seed-%d', i), $now, $now FROM k;
		COMMIT;"
}

# peers N: every peer comparison in one run: step-ca's CPU per rekey beside the hub's per
# renewal (the storm), mosquitto's RSS and connect time beside the hub's.
peers() {
	local n=$1
	echo "== step-ca: /rekey over mutual TLS, $n devices"
	stepca "$n"
	echo
	echo "== sessions: the hub and mosquitto holding $n mutual-TLS device sessions (hearth-bench sessions)"
	sessions "$n"
	echo
	echo "== the hub: renewal storm of $n devices"
	storm "$n"
}

# replicas N: renewals per second and the replicas' CPU per renewal with 1, 2 and 3 hub
# replicas on one PostgreSQL and one three-node hearth-nats cluster (the deployment example of
# gateway/deploy/replicas), N devices in hearth-fleet, a separate process; an unpaced campaign
# over the fleet after each replica starts (cmd/hearth-gateway TestReplicasThroughput).
replicas() {
	local n=$1
	echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
	(cd gateway && HEARTH_BENCH_REPLICAS="$n" go test -count=1 -timeout 90m -run '^TestReplicasThroughput$' -v ./cmd/hearth-gateway/ |
		sed -n 's/^replicas: //p; /^\(--- FAIL\|FAIL\)/p')
	echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
}

case "${1:-}" in
replicas)
	replicas "${2:-1000}"
	exit
	;;
peers | sessions | stepca | idle)
	"$1" "${2:-${HEARTH_STORM_DEVICES:-10000}}"
	exit
	;;
esac

echo "== CA: leaf signing from CSRs beside raw ECDSA P-256 sign+verify, and the crypto floor of one renewal"
run gateway ./internal/ca/ 'SignLeafFromCSR|ECDSAP256SignVerify|RenewalCryptoFloor' 2s
echo
echo "== renewal scheduler: a pass over an idle fleet (the index leaves nothing to read)"
run gateway ./internal/renewal/ 'ReconcileIdleFleet' 20x
echo
echo "== inventory: issuance records, one per transaction and batched; eight concurrent writers (group commit)"
run gateway ./internal/inventory/ 'RecordIssuance|ConcurrentWrites' 2s
echo
echo "== inventory on PostgreSQL (a throwaway cluster, fsync on): the same, through the replicas' database"
(export HEARTH_TEST_STORAGE=postgres HEARTH_TEST_POSTGRES_FSYNC=on; run gateway ./internal/inventory/ 'RecordIssuance$|ConcurrentWrites' 2s)
echo
echo "== dashboard: every page type (device list, overview, the others) at 10,000 devices"
run gateway ./internal/web/ 'DeviceList|Overview|Pages' 10x
echo
echo "== inventory: the pass storing every device's class when a policy is put in force, 10,000 devices"
run gateway ./internal/inventory/ 'Reclassify' 5x
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
