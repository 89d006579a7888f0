package hub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/agent/device"
	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// stormResult is what one renewal storm measured.
type stormResult struct {
	Devices   int
	Total     time.Duration // first command to last commit acknowledged
	P50, P99  time.Duration // per device: command sent to commit acknowledged
	Failures  int           // rollbacks and failed renewals
	Causes    []string      // the first failures' causes
	PerSecond float64       // renewals (issuance + reconnect + commit) per second
	Floor     time.Duration // raw crypto per device: agent key+CSR, hub CSR check+sign, agent chain check
}

// startStormHub runs a hub whose issuance rate does not throttle the storm, and whose
// renewal scheduler commands up to 1,000 devices a second with at most 400 renewing at once:
// the cap that keeps the devices waiting their turn rather than timing out.
func startStormHub(tb testing.TB) *Hub {
	tb.Helper()
	dir := tb.TempDir()
	file := filepath.Join(dir, "hearth.yaml")
	os.WriteFile(file, []byte("issuance_rate: 1000000\nlog_level: error\nrenewal:\n  rate: 1000\n  max_in_flight: 400\n"), 0o600)
	cfg, err := config.Load([]string{"--config", file, "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
		"--http", "off", "--hostnames", "localhost,127.0.0.1"}, func(k string) string {
		if k == "HEARTH_CA_PASSPHRASE" {
			return "storm passphrase"
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
	return h
}

// storm enrolls n in-process agents (the real agent code) against a real hub, connects them
// all, then makes every one due at once and waits for every commit.
func storm(tb testing.TB, n int) stormResult {
	h := startStormHub(tb)
	floor := cryptoFloor(tb, h.ca) // before any agent runs, on the same machine in the same run
	quiet := slog.New(slog.DiscardHandler)
	hubURL := "mqtts://" + h.BrokerAddr().String()
	base := tb.TempDir()
	cfgOf := func(i int) device.Config {
		return device.Config{Dir: filepath.Join(base, strconv.Itoa(i)), HubURL: hubURL, DeviceID: fmt.Sprintf("storm-%05d", i),
			Logger: quiet, ConnectTimeout: 2 * time.Minute, RequestTimeout: 2 * time.Minute, AckTimeout: 2 * time.Minute,
			RetryMin: time.Second, RetryMax: 5 * time.Second, HealthEvery: 24 * time.Hour}
	}
	ctx, cancel := context.WithCancel(tb.Context())
	defer cancel()

	// Enroll everyone (not measured).
	work := make(chan int)
	var wg sync.WaitGroup
	var enrollErr error
	var mu sync.Mutex
	for range 2 * runtime.GOMAXPROCS(0) * 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				c := cfgOf(i)
				tok, err := h.Admin().CreateToken(ctx, protocol.TokenRequest{ID: c.DeviceID})
				if err == nil {
					err = device.Enroll(ctx, c, tok.Token, h.Fingerprint())
				}
				if err != nil {
					mu.Lock()
					enrollErr = fmt.Errorf("enroll %s: %w", c.DeviceID, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if enrollErr != nil {
		tb.Fatal(enrollErr)
	}

	// Run every agent and wait until all are connected.
	var (
		connected = make(chan struct{}, n)
		renewedAt = make([]time.Time, n)
		sentAt    = make([]time.Time, n)
		failures  int
		causes    []string
		left      sync.WaitGroup
		agents    sync.WaitGroup
	)
	left.Add(n)
	for i := range n {
		c := cfgOf(i)
		var once sync.Once
		c.OnEvent = func(e device.Event) {
			switch e.Kind {
			case device.EventConnected:
				select {
				case connected <- struct{}{}:
				default:
				}
			case device.EventRenewed:
				mu.Lock()
				if renewedAt[i].IsZero() {
					renewedAt[i] = time.Now()
					once.Do(left.Done)
				}
				mu.Unlock()
			case device.EventRolledBack, device.EventRenewFailed:
				mu.Lock()
				failures++
				if len(causes) < 5 {
					causes = append(causes, fmt.Sprintf("%s %s: %s %v", c.DeviceID, e.Kind, e.Detail, e.Err))
				}
				mu.Unlock()
			}
		}
		a, err := device.New(c)
		if err != nil {
			tb.Fatal(err)
		}
		agents.Add(1)
		go func() { defer agents.Done(); a.Run(ctx) }()
	}
	defer agents.Wait()
	defer cancel()
	for range n {
		select {
		case <-connected:
		case <-time.After(5 * time.Minute):
			tb.Fatal("agents did not all connect")
		}
	}

	// The storm: every device due at once, handed to the renewal scheduler as an admin's
	// "renew now" would be. Latency counts from that instant, queueing included.
	start := time.Now()
	for i := range n {
		mu.Lock()
		sentAt[i] = time.Now()
		mu.Unlock()
		if _, err := h.renewal.Force(ctx, cfgOf(i).DeviceID, "storm"); err != nil {
			tb.Fatal(err)
		}
	}
	allDone := make(chan struct{})
	go func() { left.Wait(); close(allDone) }()
	select {
	case <-allDone:
	case <-time.After(4 * time.Minute):
		mu.Lock()
		done := 0
		for _, t := range renewedAt {
			if !t.IsZero() {
				done++
			}
		}
		mu.Unlock()
		tb.Fatalf("after 4 minutes %d of %d devices renewed (%d failures: %q)", done, n, failures, causes)
	}
	total := time.Since(start)

	mu.Lock()
	lat := make([]time.Duration, n)
	for i := range n {
		lat[i] = renewedAt[i].Sub(sentAt[i])
	}
	res := stormResult{Devices: n, Total: total, Failures: failures, Causes: causes, PerSecond: float64(n) / total.Seconds()}
	mu.Unlock()
	slices.Sort(lat)
	res.P50, res.P99 = lat[n/2], lat[min(n-1, n*99/100)]
	res.Floor = floor
	return res
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
		leaf, err := c.SignLeaf(csr, "floor", policy.Default().Admit(policy.Subject{DeviceID: "floor"},
			policy.CSRInfo{KeyAlgorithm: policy.KeyP256, Reason: policy.CSREnroll}, time.Now()).Profile)
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
	tb.Logf("storm: %d devices renewed in %s (%.0f/s), per device p50 %s p99 %s, failures %d; crypto floor %s per device = %s for all on %d cores",
		r.Devices, r.Total.Round(time.Millisecond), r.PerSecond, r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond),
		r.Failures, r.Floor.Round(time.Microsecond), (r.Floor * time.Duration(r.Devices) / time.Duration(cores)).Round(time.Millisecond), cores)
}

// TestRenewalStorm renews 1,000 in-process agents at once (200 under the race detector) and
// checks that every one committed with no failure. Correctness only: the figures are logged,
// and BenchmarkRenewalStorm is where they are measured.
func TestRenewalStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 1,000 agents")
	}
	n := 1000
	if raceEnabled {
		n = 200
	}
	r := storm(t, n)
	r.report(t)
	if r.Failures != 0 {
		t.Errorf("%d renewals failed or rolled back, want 0: %q", r.Failures, r.Causes)
	}
}

// BenchmarkRenewalStorm is the renewal storm of scripts/bench.sh: HEARTH_STORM_DEVICES agents
// (default 10,000). Run it once: -benchtime 1x.
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
		b.ReportMetric(float64(r.Floor.Microseconds()), "floor-µs/device")
	}
}
