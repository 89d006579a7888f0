package inventory

import (
	"fmt"
	"testing"
	"time"
)

// benchIssuance returns the i-th issuance of a renewal storm over 1000 devices.
func benchIssuance(i int) Issuance {
	in := issuance(fmt.Sprintf("dev-%04d", i%1000), fmt.Sprintf("%012x", i), fmt.Sprintf("r%d", i), t0.Add(time.Duration(i)*time.Millisecond))
	in.Attempt.Reason = "window"
	return in
}

// BenchmarkRecordIssuance records one issuance per transaction; ns/op is per issuance.
func BenchmarkRecordIssuance(b *testing.B) {
	s := openTest(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.RecordIssuance(b.Context(), benchIssuance(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "issuances/s")
}

// BenchmarkRecordIssuancesBatch100 records issuances in batches of 100 per transaction;
// ns/op is per issuance.
func BenchmarkRecordIssuancesBatch100(b *testing.B) {
	s := openTest(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 100 {
		batch := make([]Issuance, min(100, b.N-i))
		for j := range batch {
			batch[j] = benchIssuance(i + j)
		}
		for _, err := range s.RecordIssuances(b.Context(), batch) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "issuances/s")
}
