package hub

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// The renewal storm: an in-process hub, and hearth-fleet (agent/cmd/hearth-fleet, the real
// agent code) as a separate process holding every device's session. The hub's CPU and memory
// are then the test process's own.

// stormAdminPassword is the admin login hearth-fleet mints its enrollment tokens with.
const stormAdminPassword = "storm admin password"

// fleetSummary is the part of hearth-fleet's JSON summary the storm reads
// (agent/internal/fleet.Summary; the gateway module does not import the agent's).
type fleetSummary struct {
	Phase           string         `json:"phase"`
	Devices         int            `json:"devices"`
	Enrolled        int            `json:"enrolled"`
	EnrollFailed    int            `json:"enroll_failed"`
	EnrollFailures  map[string]int `json:"enroll_failures"`
	Online          int            `json:"online"`
	Committed       int            `json:"renewals_committed"`
	DevicesRenewed  int            `json:"devices_renewed"`
	Failed          int            `json:"renewals_failed"`
	Failures        map[string]int `json:"failures"`
	FailureExamples []string       `json:"failure_examples"`
	Latency         struct {
		P50, P99, Max float64 // seconds
	} `json:"latency_s"`
	LastCommit time.Time `json:"last_commit"`
	DeviceList []struct {
		ID     string `json:"id"`
		Serial string `json:"serial"`
	} `json:"device_list"`
}

// stormResult is what one renewal storm measured.
type stormResult struct {
	Devices   int
	Total     time.Duration // first command to last commit acknowledged
	P50, P99  time.Duration // per device: start of the renewal to commit acknowledged
	Committed int           // renewals committed, by hearth-fleet's count
	Failures  int           // rollbacks and failed renewals
	Causes    map[string]int
	Examples  []string
	PerSecond float64       // renewals (issuance + reconnect + commit) per second
	Floor     time.Duration // raw crypto per device: agent key+CSR, hub CSR check+sign, agent chain check

	Activated   int           // cert.activated audit events, enrollments included (one commit each)
	Disagreeing int           // devices whose inventory serial is not the one they hold, at the end
	AgreedAfter time.Duration // from the last ack until the inventory was seen agreeing with every device
	HubCPU      time.Duration // user+system CPU of the hub (this process) during the storm
	HubMaxRSS   int64         // peak resident set of the hub (this process), bytes
}

// startStormHub runs a hub whose issuance rate does not throttle the storm, and whose
// renewal scheduler commands up to 1,000 devices a second with at most 400 renewing at once:
// the cap that keeps the devices waiting their turn rather than timing out. It returns the
// hub and its data directory.
func startStormHub(tb testing.TB) (*Hub, string) {
	tb.Helper()
	dir := tb.TempDir()
	file := filepath.Join(dir, "hearth.yaml")
	os.WriteFile(file, []byte("issuance_rate: 1000000\nlog_level: error\nrenewal:\n  rate: 1000\n  max_in_flight: 400\n"), 0o600)
	data := filepath.Join(dir, "data")
	cfg, err := config.Load([]string{"--config", file, "--data", data, "--listen", "127.0.0.1:0",
		"--http", "off", "--hostnames", "localhost,127.0.0.1"}, func(k string) string {
		switch k {
		case "HEARTH_CA_PASSPHRASE":
			return "storm passphrase"
		case "HEARTH_ADMIN_PASSWORD":
			return stormAdminPassword
		}
		return ""
	})
	if err != nil {
		tb.Fatal(err)
	}
	h, err := Open(tb.Context(), cfg, Options{Version: "storm"})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	return h, data
}

// buildFleet builds hearth-fleet from the agent module into a temporary directory.
func buildFleet(tb testing.TB) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "hearth-fleet")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/hearth-fleet")
	cmd.Dir = filepath.Join("..", "..", "..", "agent")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build hearth-fleet: %v\n%s", err, b)
	}
	return out
}

// storm starts a hub, has hearth-fleet enroll and hold n devices in another process, then
// makes every device due at once and waits until every one committed (hearth-fleet exits
// then, --until-renewed). It then compares the inventory with the serial each device holds.
func storm(tb testing.TB, n int) stormResult {
	h, data := startStormHub(tb)
	floor := cryptoFloor(tb, h.ca) // before any device runs, on the same machine in the same run
	bin := buildFleet(tb)
	dir := tb.TempDir()
	state := filepath.Join(dir, "state.json")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "run", "--hub", "mqtts://"+h.BrokerAddr().String(), "--ca", filepath.Join(data, "ca", "root.pem"),
		"--devices", strconv.Itoa(n), "--id-prefix", "storm-", "--concurrency", "32", "--until-renewed",
		"--progress", "500ms", "--state", state, "--json", "--timeout", "2m", "--duration", "30m")
	cmd.Env = append(os.Environ(), "HEARTH_ADMIN_PASSWORD="+stormAdminPassword)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	tb.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
		if tb.Failed() {
			tb.Logf("hearth-fleet stderr:\n%s", tail(stderr.Bytes(), 4<<10))
		}
	})

	// Enrolling (tokens minted over the bridge) and connecting everyone is not measured.
	ready := waitState(tb, state, exited, time.Duration(n)*50*time.Millisecond+2*time.Minute)
	if ready.Enrolled != n || ready.Online != n {
		tb.Fatalf("hearth-fleet ready with %d of %d devices enrolled and %d online (enrollment failures %v)",
			ready.Enrolled, n, ready.Online, ready.EnrollFailures)
	}

	// The storm: every device due at once, handed to the renewal scheduler as an admin's
	// "renew now" would be. The hub's CPU counts from here.
	ctx := tb.Context()
	cpu0 := processCPU(tb)
	start := time.Now()
	for _, d := range ready.DeviceList {
		if _, err := h.renewal.Force(ctx, d.ID, "storm"); err != nil {
			tb.Fatal(err)
		}
	}
	limit := time.Duration(n)*25*time.Millisecond + 4*time.Minute
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			tb.Errorf("hearth-fleet: %v", err)
		}
	case <-time.After(limit):
		tb.Fatalf("after %s not every device renewed: %s", limit, lastProgress(stderr.Bytes()))
	}
	cpu := processCPU(tb) - cpu0
	var sum fleetSummary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		tb.Fatalf("hearth-fleet summary: %v\n%s", err, tail(stdout.Bytes(), 4<<10))
	}

	res := stormResult{Devices: n, Committed: sum.Committed, Failures: sum.Failed, Causes: sum.Failures, Examples: sum.FailureExamples,
		P50: seconds(sum.Latency.P50), P99: seconds(sum.Latency.P99), Floor: floor, HubCPU: cpu, HubMaxRSS: maxRSS(tb)}
	if !sum.LastCommit.IsZero() {
		res.Total = sum.LastCommit.Sub(start)
		res.PerSecond = float64(sum.Committed) / res.Total.Seconds()
	}
	if sum.DevicesRenewed != n || sum.Failed != 0 {
		tb.Errorf("%d of %d devices renewed, %d renewals failed %v, want all and none: %q", sum.DevicesRenewed, n, sum.Failed, sum.Failures, sum.FailureExamples)
	}

	// The inventory must agree with what every device holds. Presence events may still be in
	// the hub's queue when the fleet exits, so agreement is awaited, and its delay reported.
	exit := time.Now()
	store := h.Store()
	for {
		res.Disagreeing = 0
		var first string
		for _, d := range sum.DeviceList {
			c, err := store.ActiveCertificate(ctx, d.ID)
			if err != nil || c.Serial != d.Serial {
				if res.Disagreeing == 0 {
					first = fmt.Sprintf("%s holds %s, the inventory says %q (%v)", d.ID, d.Serial, c.Serial, err)
				}
				res.Disagreeing++
			}
		}
		if res.Disagreeing == 0 {
			res.AgreedAfter = time.Since(sum.LastCommit)
			break
		}
		if time.Since(exit) > 30*time.Second {
			tb.Errorf("30 s after the last device exited, the inventory disagrees with %d of %d devices; first: %s", res.Disagreeing, n, first)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Audit times have a resolution of a second: count every activation, enrollments included.
	activated, err := store.Events(ctx, inventory.EventFilter{Kind: protocol.EventCertActivated})
	if err != nil {
		tb.Fatal(err)
	}
	res.Activated = len(activated)
	return res
}

// waitState waits for hearth-fleet's state file to leave the starting phase.
func waitState(tb testing.TB, path string, exited <-chan error, limit time.Duration) fleetSummary {
	tb.Helper()
	deadline := time.After(limit)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		var s fleetSummary
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &s) == nil && s.Phase != "starting" {
			return s
		}
		select {
		case err := <-exited:
			tb.Fatalf("hearth-fleet exited before it was ready: %v", err)
		case <-deadline:
			tb.Fatalf("hearth-fleet not ready after %s", limit)
		case <-tick.C:
		}
	}
}

// processCPU is the user and system CPU time this process used so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// maxRSS is this process's peak resident set size in bytes.
func maxRSS(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return int64(ru.Maxrss) * 1024 // Linux reports KiB
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// tail returns at most the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// lastProgress returns hearth-fleet's last progress line.
func lastProgress(stderr []byte) string {
	lines := bytes.Split(bytes.TrimSpace(stderr), []byte("\n"))
	return string(lines[len(lines)-1])
}

// cryptoFloor measures the cryptography one renewal needs, on this machine in this run: the
// agent's key and CSR, the hub's CSR check and signature, the agent's chain check.
func cryptoFloor(tb testing.TB, c *ca.CA) time.Duration {
	const rounds = 200
	roots, inter := c.Roots(), c.Intermediates()
	start := time.Now()
	for range rounds {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "floor"}}, key)
		csr, err := x509.ParseCertificateRequest(der)
		if err == nil {
			err = csr.CheckSignature()
		}
		if err != nil {
			tb.Fatal(err)
		}
		now := time.Now().UTC().Truncate(time.Second)
		leaf, err := c.SignLeaf(csr, "floor", policy.Profile{Class: policy.DefaultClass, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(30 * 24 * time.Hour)})
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			tb.Fatal(err)
		}
	}
	return time.Since(start) / rounds
}

func (r stormResult) report(tb testing.TB) {
	cores := runtime.GOMAXPROCS(0)
	tb.Logf("storm: %d devices renewed in %s (%.0f/s), per device p50 %s p99 %s, failures %d %v; crypto floor %s per device = %s for all on %d cores",
		r.Devices, r.Total.Round(time.Millisecond), r.PerSecond, r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond),
		r.Failures, r.Causes, r.Floor.Round(time.Microsecond), (r.Floor * time.Duration(r.Devices) / time.Duration(cores)).Round(time.Millisecond), cores)
	perRenewal := time.Duration(0)
	if r.Committed > 0 {
		perRenewal = r.HubCPU / time.Duration(r.Committed)
	}
	tb.Logf("storm: hub CPU %s (%s per renewal), hub peak RSS %.0f MiB; cert.activated events %d for %d commits (%d enrollments, %d renewals); inventory seen agreeing with every device %s after the last ack",
		r.HubCPU.Round(time.Millisecond), perRenewal.Round(time.Microsecond), float64(r.HubMaxRSS)/(1<<20), r.Activated, r.Devices+r.Committed,
		r.Devices, r.Committed, r.AgreedAfter.Round(time.Millisecond))
}

// TestRenewalStorm renews 1,000 devices at once (200 under the race detector, which slows the
// hub several times over), simulated by hearth-fleet in a separate process, and checks that
// every one committed with no failure and that the inventory agrees with every device.
// Correctness only: the figures are logged, and BenchmarkRenewalStorm is where they are
// measured.
func TestRenewalStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 1,000 simulated devices")
	}
	n := 1000
	if raceEnabled {
		n = 200
	}
	r := storm(t, n)
	r.report(t)
	if commits := r.Devices + r.Committed; r.Activated != commits {
		t.Errorf("%d cert.activated events for %d commits (%d enrollments, %d renewals), want one per commit", r.Activated, commits, r.Devices, r.Committed)
	}
}

// BenchmarkRenewalStorm is the renewal storm of scripts/bench.sh with the hub in-process:
// HEARTH_STORM_DEVICES devices (default 10,000) in one hearth-fleet process. Run it once:
// -benchtime 1x.
func BenchmarkRenewalStorm(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("HEARTH_STORM_DEVICES")); err == nil && v > 0 {
		n = v
	}
	for b.Loop() {
		r := storm(b, n)
		r.report(b)
		b.ReportMetric(r.Total.Seconds(), "s/storm")
		b.ReportMetric(r.PerSecond, "renewals/s")
		b.ReportMetric(float64(r.P50.Milliseconds()), "p50-ms")
		b.ReportMetric(float64(r.P99.Milliseconds()), "p99-ms")
		b.ReportMetric(float64(r.Failures), "failures")
		b.ReportMetric(float64(r.Activated-r.Devices-r.Committed), "extra-activations")
		if r.Committed > 0 {
			b.ReportMetric(r.HubCPU.Seconds()*1000/float64(r.Committed), "hub-cpu-ms/renewal")
		}
		b.ReportMetric(float64(r.HubMaxRSS)/(1<<20), "hub-rss-MiB")
		b.ReportMetric(float64(r.Floor.Microseconds()), "floor-µs/device")
	}
}
