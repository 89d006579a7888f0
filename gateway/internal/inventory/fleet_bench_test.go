package inventory

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkDeviceRecords is what the fleet view's flush and the scheduler's pass read of the
// devices a storm changed: DeviceRecords of 100 of 1,000 devices, each with its active
// certificate. ns/op, cpu-µs/op (the process's user + system time) and the allocations are
// per batch of 100.
func BenchmarkDeviceRecords(b *testing.B) {
	s := openTest(b)
	ctx := b.Context()
	const devices, batch = 1000, 100
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
	ids := make([]string, batch)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	i := 0
	for b.Loop() {
		for j := range ids {
			ids[j] = fmt.Sprintf("dev-%04d", (i*batch+j*7)%devices)
		}
		recs, err := s.DeviceRecords(ctx, ids)
		if err != nil || len(recs) != batch || recs[0].Active == nil {
			b.Fatalf("DeviceRecords() = %d records, %v; want %d with their certificates", len(recs), err, batch)
		}
		i++
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Microsecond)/float64(i), "cpu-µs/op")
}
