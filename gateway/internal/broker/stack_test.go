//go:build !race

// The race detector's instrumentation changes the frames measured here.

package broker

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"testing"
)

// TestIdleSessionStack holds authenticated device sessions that send nothing more and checks
// that each costs the hub one goroutine stack of 8 KiB once the GC ran: the frames parked
// under mochi's read loop while a session is idle (listener.handle, mochi's attachClient and
// Client.Read, crypto/tls, net) use under a quarter of 16 KiB, so the GC halves the stack the
// TLS handshake grew. With the CONNECT handling inside attachClient's frame, or a packet in
// Client.Read's, they used about 7 KiB and every idle session kept 16 KiB. The clients are
// plain TLS connections of this goroutine, with no goroutine of their own.
func TestIdleSessionStack(t *testing.T) {
	e := start(t, func(c *Config) { c.Sessions = nil }) // nobody to tell of the sessions
	const n = 64
	devs := make([]device, n)
	for i := range devs {
		devs[i] = e.pki.device(t, fmt.Sprintf("dev-%03d", i))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, d := range devs {
		c, err := tls.Dial("tcp", e.b.Addr().String(), &tls.Config{RootCAs: e.pki.Pool(), Certificates: []tls.Certificate{d.cert}})
		if err != nil {
			t.Fatalf("dial %s: %v", d.id, err)
		}
		t.Cleanup(func() { c.Close() })
		var p []byte
		p = binary.BigEndian.AppendUint16(p, 4)
		p = append(p, "MQTT"...)
		p = append(p, 4, 0x02) // MQTT 3.1.1, clean session
		p = binary.BigEndian.AppendUint16(p, 60)
		p = binary.BigEndian.AppendUint16(p, uint16(len(d.id)))
		p = append(p, d.id...)
		if _, err := c.Write(append(header(0x10, len(p)), p...)); err != nil {
			t.Fatalf("CONNECT %s: %v", d.id, err)
		}
		ack := make([]byte, 4)
		if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
			t.Fatalf("CONNACK %s = %x, %v; want 20020000", d.id, ack, err)
		}
	}
	// Each GC halves a stack at most once.
	for range 4 {
		runtime.GC()
	}
	runtime.ReadMemStats(&after)
	per := (int64(after.StackInuse) - int64(before.StackInuse)) / n
	t.Logf("goroutine stacks per idle session: %d bytes (%d goroutines)", per, runtime.NumGoroutine())
	if per > 9<<10 {
		t.Errorf("goroutine stacks per idle session = %d bytes, want at most 8 KiB (and a little for the test's own)", per)
	}
}
