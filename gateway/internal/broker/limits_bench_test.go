package broker

import (
	"crypto/tls"
	"runtime"
	"testing"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// BenchmarkHeldConnectClaims measures the heap each connection costs that holds the largest
// CONNECT a password login may claim before authentication (MaxConnectPassword) and then
// sends nothing more: the most an unauthenticated client can hold, until the connect
// deadline or shedding. Times the pending limits, it bounds an idle flood's heap
// (gateway/README.md, "Limits"). Both ends of the TLS connections are in this process, so
// "heap-B/conn" overstates the hub's share. Run with -benchtime=1x.
func BenchmarkHeldConnectClaims(b *testing.B) {
	e := start(b, nil)
	const n = 300
	claim := append(header(0x10, MaxConnectPassword), 0x00, 0x04) // the claim and 2 bytes of it
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		conns := make([]*tls.Conn, 0, n)
		for range n {
			c, err := tls.Dial("tcp", e.b.Addr().String(), &tls.Config{RootCAs: e.pki.Pool()})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Write(claim); err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		// Every handshake is done (tls.Dial returned); wait until the broker counts them all.
		testkit.Eventually(b, waitFor, func() bool { p, _, _ := e.b.adm.counts(); return p == n }, "not all %d claims pending", n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/n, "heap-B/conn")
		for _, c := range conns {
			c.Close()
		}
		testkit.Eventually(b, waitFor, func() bool { p, _, _ := e.b.adm.counts(); return p == 0 }, "the claims were not closed")
	}
}
