package inventory

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRenewalWrites is what the device state machine writes for one renewal of a device
// with a live session, one write after the other as one device's events arrive: the command
// seen (ClearCommand), the issuance (RecordIssuance), the old session down and the new one up
// (SetOnline twice), the commit (Commit) and the agent's health report (RecordHealth). ns/op
// and cpu-µs/op (the process's user + system time) are per renewal.
func BenchmarkRenewalWrites(b *testing.B) {
	s := openTest(b)
	ctx := b.Context()
	const devices = 1000
	for i := range devices {
		id := fmt.Sprintf("dev-%04d", i)
		in := issuance(id, fmt.Sprintf("%012x", i+1), "enroll", t0)
		if err := s.RecordIssuance(ctx, in); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Commit(ctx, id, "enroll", in.Cert.Serial, false, t0); err != nil {
			b.Fatal(err)
		}
		if err := s.SetCommand(ctx, id, Command{ID: "c", Action: "renew", Reason: "window", Deadline: t0.Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("dev-%04d", i%devices)
		in := issuance(id, fmt.Sprintf("%012x", devices+i+1), fmt.Sprintf("r%d", i), t0)
		in.Attempt.Reason = "window"
		now := t0.Add(time.Duration(i) * time.Millisecond)
		if err := s.ClearCommand(ctx, id, "c"); err != nil {
			b.Fatal(err)
		}
		if err := s.RecordIssuance(ctx, in); err != nil {
			b.Fatal(err)
		}
		if err := s.SetOnline(ctx, id, false, now); err != nil {
			b.Fatal(err)
		}
		if err := s.SetOnline(ctx, id, true, now); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Commit(ctx, id, in.Attempt.RequestID, in.Cert.Serial, false, now); err != nil {
			b.Fatal(err)
		}
		if err := s.RecordHealth(ctx, id, Health{ReportedSerial: in.Cert.Serial, ReportedNotAfter: in.Cert.NotAfter,
			ChainOK: true, AgentVersion: "1.0.0", At: now}); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Microsecond)/float64(i), "cpu-µs/op")
}

// cpuTime is the process's user + system time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRenewalReads is what the hub reads of one device for a renewal: the state
// machine's Lifecycle when it takes the command up, the issuer's device and certificate
// renewed (Device, Certificate), the reconnection's login (LoginOf), and after the commit
// the device's policy inputs (Subject) and the attempt (its latency). ns/op and cpu-µs/op
// are per renewal.
func BenchmarkRenewalReads(b *testing.B) {
	s := openTest(b)
	ctx := b.Context()
	const devices = 1000
	for i := range devices {
		id := fmt.Sprintf("dev-%04d", i)
		in := issuance(id, fmt.Sprintf("%012x", i+1), "enroll", t0)
		if err := s.RecordIssuance(ctx, in); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Commit(ctx, id, "enroll", in.Cert.Serial, false, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	i := 0
	for b.Loop() {
		n := i % devices
		id := fmt.Sprintf("dev-%04d", n)
		if _, err := s.Lifecycle(ctx, id); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Subject(ctx, id); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Attempt(ctx, id, "enroll"); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Certificate(ctx, fmt.Sprintf("%012x", n+1)); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Device(ctx, id); err != nil {
			b.Fatal(err)
		}
		if _, err := s.LoginOf(ctx, fmt.Sprintf("%012x", n+1)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Microsecond)/float64(i), "cpu-µs/op")
}
