package inventory

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkConcurrentWrites is the hub's write load in a storm: eight writers at once (the
// device state machine's shards) each recording presence, one transaction per write, every
// one on disk before it returns; ns/op and cpu-µs/op (the process's user + system time) are
// per write. Group commit lets the writes that arrive together share a commit.
func BenchmarkConcurrentWrites(b *testing.B) {
	s := openTest(b)
	const devices = 1000
	for i := range devices {
		if err := s.RecordIssuance(b.Context(), issuance(fmt.Sprintf("dev-%04d", i), fmt.Sprintf("%04x", i+1), "r", t0)); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	b.SetParallelism(4) // 8 goroutines on 2 cores
	b.ResetTimer()
	cpu0 := cpuTime(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if err := s.SetOnline(b.Context(), fmt.Sprintf("dev-%04d", i%devices), i%2 == 0, t0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
}
