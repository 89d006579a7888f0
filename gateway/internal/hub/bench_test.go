package hub

import (
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// benchClients is the number of concurrent paho clients in the broker benchmarks.
const benchClients = 16

// BenchmarkEnrollment measures enrollments through the real broker over TLS: token login,
// CSR, signed chain back, recorded in SQLite. benchClients run at once.
func BenchmarkEnrollment(b *testing.B) {
	h, _ := startHub(b)
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	per := (b.N + benchClients - 1) / benchClients
	for w := range benchClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if int(next.Add(1)) > b.N {
					return
				}
				if _, _, _, err := tryEnroll(b, h, fmt.Sprintf("bench-%d-%d", w, i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "enrollments/s")
}

// BenchmarkRenewalRoundTrip measures full renewals of enrolled devices through the real
// broker: CSR on the device's mutual-TLS session, chain back, reconnect with the new
// certificate (the proof), commit, ack. benchClients devices renew concurrently.
func BenchmarkRenewalRoundTrip(b *testing.B) {
	h, _ := startHub(b)
	type dev struct {
		id     string
		pair   tls.Certificate
		serial string
	}
	devs := make([]*dev, benchClients)
	for i := range devs {
		id := fmt.Sprintf("renew-%d", i)
		pair, reply, _, err := tryEnroll(b, h, id)
		if err != nil {
			b.Fatal(err)
		}
		if err := tryCommit(b, h, id, pair, "enroll-1", reply.Serial); err != nil {
			b.Fatal(err)
		}
		devs[i] = &dev{id: id, pair: pair, serial: reply.Serial}
	}
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				if int(next.Add(1)) > b.N {
					return
				}
				reqID := fmt.Sprintf("renew-%d", n)
				pair, serial, err := tryRenew(b, h, d.id, d.pair, d.serial, reqID)
				if err == nil {
					err = tryCommit(b, h, d.id, pair, reqID, serial)
				}
				if err != nil {
					b.Error(err)
					return
				}
				d.pair, d.serial = pair, serial
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "renewals/s")
}
