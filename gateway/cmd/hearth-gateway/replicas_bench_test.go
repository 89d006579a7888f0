package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// TestReplicasThroughput is the replicas benchmark of `scripts/bench.sh replicas` (README.md,
// Performance), not a test: it runs only with HEARTH_BENCH_REPLICAS=N set (N devices) and
// asserts nothing about speed. On the deployment example (stormRig: PostgreSQL, three
// hearth-nats nodes, the fleet in its own process) it starts one replica, enrolls the fleet,
// and runs an unpaced campaign over every device; then it starts a second replica, and a
// third, with a campaign each time. For each it reports renewals per second (the campaign's
// start to the fleet's last commit) and the replicas' CPU per renewal (all of them, from
// /proc). Today it stops at the second replica: a replica that starts after the devices
// connected knows none of their sessions and drops the requests the queue group gives it
// (gateway/README.md, "Replicas on PostgreSQL").
func TestReplicasThroughput(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("HEARTH_BENCH_REPLICAS"))
	if n <= 0 {
		t.Skip("the replicas benchmark: set HEARTH_BENCH_REPLICAS to the fleet's size (scripts/bench.sh replicas)")
	}
	r := &stormRig{t: t, size: n, killed: map[int]bool{}}
	r.install()
	r.startReplica(0)
	waitConnected := func(k int) {
		testkit.Eventually(t, stormBound, func() bool {
			return strings.Count(r.logs.tail(1<<22), "connected to the NATS cluster") >= k
		}, "%d replicas never connected to the NATS cluster", k)
	}
	waitConnected(1)
	r.fleet = startFleet(t, r.lb.addr(), filepath.Join(r.data[0], "ca", "root.pem"), filepath.Join(t.TempDir(), "fleet.json"), n,
		"--tokens", r.tokens(), "--reconnect-max", "2s", "--concurrency", strconv.Itoa(stormConcurrency))
	var v fleetView
	testkit.Eventually(t, stormEnrollBound, func() bool { v = r.fleet.view(t); return v.Phase != "starting" },
		"hearth-fleet is not ready: %v", testkit.Lazy(func() string { return fmt.Sprintf("%d enrolled", v.Enrolled) }))
	if v.Enrolled != n {
		t.Fatalf("hearth-fleet enrolled %d of %d devices (%v)", v.Enrolled, n, v.EnrollFailures)
	}
	for k := 1; k <= 3; k++ {
		if k > 1 {
			r.startReplica(k - 1)
			waitConnected(k)
		}
		testkit.Eventually(t, stormBound, func() bool { return countOnline(r.devices(k-1)) == n },
			"replica %d never saw the %d devices online", k, n)
		cpu0 := r.replicasCPU(k)
		start := time.Now()
		var st protocol.CampaignStatus
		if err := json.Unmarshal(r.cli(0, "renew", "--all", "--campaign-id", fmt.Sprintf("bench-%d", k), "--json"), &st); err != nil || st.Total != n {
			t.Fatalf("renew --all: %+v, %v", st, err)
		}
		var last time.Time
		testkit.Eventually(t, stormBound, func() bool {
			v = r.fleet.view(t)
			done := 0
			last = time.Time{}
			for _, d := range v.DeviceList {
				if d.Renewals >= k {
					done++
				}
				if d.LastCommit.After(last) {
					last = d.LastCommit
				}
			}
			return done == n
		}, "the campaign with %d replicas did not renew every device", k)
		cpu := r.replicasCPU(k) - cpu0
		secs := last.Sub(start).Seconds()
		row := fmt.Sprintf("%d replica(s): %d renewals in %.1f s, %.1f renewals/s; replicas' CPU %.1f s, %.2f ms per renewal; fleet failures %d %v",
			k, n, secs, float64(n)/secs, cpu.Seconds(), float64(cpu.Milliseconds())/float64(n), v.Failed, v.Failures)
		t.Log(row)
		fmt.Println("replicas:", row) // for scripts/bench.sh, as soon as it is measured
	}
}

// replicasCPU is the user and system CPU time of the first k replicas so far.
func (r *stormRig) replicasCPU(k int) time.Duration {
	r.t.Helper()
	var total time.Duration
	for _, h := range r.hubs[:k] {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", h.cmd.Process.Pid))
		if err != nil {
			r.t.Fatal(err)
		}
		// The fields after the command name (in parentheses, which may hold spaces).
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(utime+stime) * time.Second / 100 // USER_HZ, 100 on Linux
	}
	return total
}
