package broker

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// header returns an MQTT fixed header: type byte and remaining length.
func header(typ byte, remaining int) []byte {
	out := []byte{typ}
	for {
		b := byte(remaining & 0x7f)
		remaining >>= 7
		if remaining > 0 {
			out = append(out, b|0x80)
			continue
		}
		return append(out, b)
	}
}

// packet returns a packet of typ with a body of n bytes.
func packet(typ byte, n int) []byte { return append(header(typ, n), bytes.Repeat([]byte{'x'}, n)...) }

func TestFramesScan(t *testing.T) {
	first, rest := 100, 1000
	tests := []struct {
		name   string
		stream []byte
		ok     bool
	}{
		{"small CONNECT", packet(0x10, 100), true},
		{"CONNECT over its limit", header(0x10, 101), false},
		{"CONNECT claiming 256 KiB", header(0x10, 256<<10), false},
		{"CONNECT then a publish", append(packet(0x10, 50), packet(0x30, 1000)...), true},
		{"CONNECT then a publish over the session limit", append(packet(0x10, 50), header(0x30, 1001)...), false},
		{"many small packets", bytes.Repeat(packet(0xc0, 0), 50), true},
		{"five length bytes", []byte{0x10, 0x80, 0x80, 0x80, 0x80, 0x01}, false},
		{"empty", nil, true},
	}
	limit := func(n *int) func() int {
		return func() int {
			*n++
			if *n == 1 {
				return first
			}
			return rest
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var whole frames
			var n int
			errWhole := whole.scan(tt.stream, limit(&n))
			if (errWhole == nil) != tt.ok {
				t.Errorf("scan(%q…) = %v, want ok %v", tt.stream[:min(8, len(tt.stream))], errWhole, tt.ok)
			}
			if errWhole != nil && !errors.Is(errWhole, ErrPacketTooLarge) {
				t.Errorf("scan error %v does not wrap ErrPacketTooLarge", errWhole)
			}
			// Byte by byte, as a slow client sends it: the same verdict.
			var split frames
			var m int
			var errSplit error
			for i := range tt.stream {
				if errSplit = split.scan(tt.stream[i:i+1], limit(&m)); errSplit != nil {
					break
				}
			}
			if (errSplit == nil) != (errWhole == nil) {
				t.Errorf("scan byte by byte = %v, scan at once = %v", errSplit, errWhole)
			}
		})
	}
}

// FuzzFrames feeds junk to the framing check: it never panics, and feeding the same bytes in
// two pieces gives the same verdict as at once.
func FuzzFrames(f *testing.F) {
	f.Add(packet(0x10, 10), 3)
	f.Add(header(0x10, 1<<20), 1)
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0xff}, 2)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		limit := func() int { return 64 }
		var whole, split frames
		errWhole := whole.scan(b, limit)
		cut = max(0, min(len(b), cut))
		errSplit := split.scan(b[:cut], limit)
		if errSplit == nil {
			errSplit = split.scan(b[cut:], limit)
		}
		if (errWhole == nil) != (errSplit == nil) {
			t.Fatalf("scan(%x) = %v at once, %v cut at %d", b, errWhole, errSplit, cut)
		}
	})
}

// fakeConn returns a connection from src, last active at t, for the admission's unit tests.
func fakeConn(id uint64, src string, t int64) *conn {
	c := &conn{id: id, src: netip.MustParsePrefix(src)}
	c.active.Store(t)
	return c
}

func TestAdmissionShedsTheMostSilent(t *testing.T) {
	a := newAdmission(Limits{MaxPending: 4, MaxPendingPerSource: 3, MaxConns: 10, MaxConnsPerSource: 1, MaxSessionsPerDevice: 1})
	flood := []*conn{fakeConn(1, "192.0.2.1/32", 10), fakeConn(2, "192.0.2.1/32", 5), fakeConn(3, "192.0.2.1/32", 20)}
	for _, c := range flood {
		if v := a.arrive(c); v != nil {
			t.Fatalf("arrive(%d) shed %d below the limits", c.id, v.id)
		}
	}
	// The source is at its limit: its most silent connection (2) makes room.
	if v := a.arrive(fakeConn(4, "192.0.2.1/32", 30)); v != flood[1] {
		t.Fatalf("arrive at the source's limit shed %v, want connection 2 (silent longest)", v)
	}
	// A connection that never sent anything goes before any that did, even a newer one.
	mute := fakeConn(8, "203.0.113.5/32", 0)
	b := newAdmission(Limits{MaxPending: 10, MaxPendingPerSource: 2, MaxConns: 10, MaxConnsPerSource: 10, MaxSessionsPerDevice: 1})
	b.arrive(fakeConn(7, "203.0.113.5/32", 1))
	b.arrive(mute)
	if v := b.arrive(fakeConn(9, "203.0.113.5/32", 2)); v != mute {
		t.Errorf("arrive shed %v, want the connection that never sent a byte", v)
	}
	// Another source fills the total: the busiest source (192.0.2.1) gives way, not it.
	other := fakeConn(5, "198.51.100.7/32", 1)
	if v := a.arrive(other); v != nil {
		t.Fatalf("arrive(5) shed %d with room in total", v.id)
	}
	if v := a.arrive(fakeConn(6, "198.51.100.7/32", 40)); v == nil || v.src != flood[0].src {
		t.Fatalf("arrive at the total limit shed %v, want one of the busiest source 192.0.2.1", v)
	}
	if err := a.establish(other); err != nil {
		t.Fatalf("establish(5) = %v", err)
	}
	// One authenticated connection per source: a second from 198.51.100.7 is refused, one
	// from loopback never by the per-source limit.
	if err := a.establish(fakeConnPending(a, 7, "198.51.100.7/32")); !errors.Is(err, ErrRefused) {
		t.Errorf("establish over the per-source limit = %v, want ErrRefused", err)
	}
	for i := range 3 {
		if err := a.establish(fakeConnPending(a, uint64(10+i), "127.0.0.1/32")); err != nil {
			t.Errorf("establish(loopback #%d) = %v, want nil (loopback is exempt)", i+1, err)
		}
	}
	// The third loopback arrival found the total full again and shed a third connection.
	if p, c, shed := a.counts(); p != 3 || c != 4 || shed != 3 {
		t.Errorf("counts() = %d pending, %d conns, %d shed; want 3, 4, 3", p, c, shed)
	}
	a.leave(other)
	if err := a.establish(fakeConnPending(a, 20, "198.51.100.7/32")); err != nil {
		t.Errorf("establish after the other left = %v, want nil", err)
	}
}

func fakeConnPending(a *admission, id uint64, src string) *conn {
	c := fakeConn(id, src, time.Now().UnixNano())
	a.arrive(c)
	return c
}

func TestSourceOf(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"192.0.2.1:5000", "192.0.2.1/32"},
		{"[2001:db8:1:2:3:4:5:6]:5000", "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.1]:5000", "192.0.2.1/32"},
	}
	for _, tt := range tests {
		a, _ := net.ResolveTCPAddr("tcp", tt.addr)
		if got := sourceOf(a).String(); got != tt.want {
			t.Errorf("sourceOf(%s) = %s, want %s", tt.addr, got, tt.want)
		}
	}
}

// TestIdleFloodFromOneSource opens 2,000 idle sockets from 127.0.0.1 — twice the pending
// slots that used to fill — and then a device and an enrolling agent from the same address
// connect and publish: the idle sockets are shed, the talking clients are not.
func TestIdleFloodFromOneSource(t *testing.T) {
	e := start(t, nil)
	e.auth.tokens["dev-new"] = "tok-123"
	const flood = 2000
	idle := make([]net.Conn, 0, flood)
	t.Cleanup(func() {
		for _, c := range idle {
			_ = c.Close()
		}
	})
	for range flood {
		c, err := net.Dial("tcp", e.b.Addr().String())
		if err != nil {
			t.Fatalf("dial #%d: %v", len(idle)+1, err)
		}
		idle = append(idle, c)
	}
	testkit.Eventually(t, waitFor, func() bool {
		_, _, shed := e.b.adm.counts()
		return shed >= flood-DefaultMaxPendingPerSource
	}, "the flood was not shed down to the per-source limit")

	dev := mustConnect(t, e.clientOpts("dev-a", &e.a.cert))
	wait(t, "device Publish", dev.Publish(e.topic.Device("dev-a", protocol.KindHealth), 1, false, "{}"))
	if m := e.rec.next(t); m.from.Role != RoleDevice {
		t.Errorf("message from %v, want the device", m.from.Role)
	}
	enr := mustConnect(t, e.clientOpts("dev-new", nil).SetUsername("dev-new").SetPassword("tok-123"))
	wait(t, "enrolling Publish", enr.Publish(e.topic.Device("dev-new", protocol.KindCSR), 1, false, "{}"))
	if m := e.rec.next(t); m.from.Role != RoleEnrolling {
		t.Errorf("message from %v, want the enrolling session", m.from.Role)
	}
	pending, conns, shed := e.b.adm.counts()
	t.Logf("after the flood: %d pending, %d authenticated, %d shed", pending, conns, shed)
	if pending > DefaultMaxPendingPerSource {
		t.Errorf("%d pending connections from one source, want at most %d", pending, DefaultMaxPendingPerSource)
	}
}

// TestConnectSizeByKind checks each client kind's CONNECT limit from the fixed header, and
// that a flood of oversized claims allocates little: mochi would make a buffer of every
// claimed size (256 KiB each) before authentication.
func TestConnectSizeByKind(t *testing.T) {
	e := start(t, nil)
	dial := func(cert *tls.Certificate) *tls.Conn {
		tc := &tls.Config{RootCAs: e.pki.Pool()}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		c, err := tls.Dial("tcp", e.b.Addr().String(), tc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	t.Run("certificate", func(t *testing.T) {
		c := dial(&e.a.cert)
		if _, err := c.Write(header(0x10, MaxConnectCertificate+1)); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, c)
	})
	t.Run("password", func(t *testing.T) {
		c := dial(nil)
		if _, err := c.Write(header(0x10, MaxConnectPassword+1)); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, c)
	})
	t.Run("flood", func(t *testing.T) {
		const n = 200
		conns := make([]*tls.Conn, n)
		for i := range conns {
			conns[i] = dial(nil)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		claim := header(0x10, DefaultMaxPacketSize-8) // within mochi's packet limit
		for _, c := range conns {
			if _, err := c.Write(claim); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range conns {
			expectClosed(t, c)
		}
		runtime.ReadMemStats(&after)
		// TotalAlloc counts every allocation, freed or not: mochi's buffers alone would be
		// n × 256 KiB = 50 MiB.
		grew := after.TotalAlloc - before.TotalAlloc
		t.Logf("%d oversized CONNECT claims: %d bytes allocated (%d per connection)", n, grew, grew/n)
		if bound := uint64(n * 16 << 10); grew > bound {
			t.Errorf("allocations during %d claims of 256 KiB = %d bytes, want at most %d (16 KiB per connection)", n, grew, bound)
		}
	})
}

// TestSessionsPerDevice checks that a device holds at most MaxSessionsPerDevice sessions:
// each new one closes the oldest.
func TestSessionsPerDevice(t *testing.T) {
	e := start(t, func(c *Config) { c.Limits.MaxSessionsPerDevice = 2 })
	var lost []chan struct{}
	var clients []paho.Client
	for i := range 4 {
		ch := make(chan struct{})
		lost = append(lost, ch)
		clients = append(clients, mustConnect(t, e.clientOpts(fmt.Sprintf("dev-a:%d", i), &e.a.cert).
			SetConnectionLostHandler(func(paho.Client, error) { close(ch) })))
	}
	for i := range 2 {
		select {
		case <-lost[i]:
		case <-time.After(waitFor):
			t.Fatalf("session %d, older than the two newest, is still open", i)
		}
	}
	if n := len(e.b.reg.sessions("dev-a")); n != 2 {
		t.Errorf("dev-a has %d sessions, want 2", n)
	}
	// The two newest still work.
	for i := 2; i < 4; i++ {
		wait(t, fmt.Sprintf("Publish on session %d", i), clients[i].Publish(e.topic.Device("dev-a", protocol.KindHealth), 1, false, "{}"))
		if m := e.rec.next(t); m.from.Conn == 0 {
			t.Errorf("message without a connection number")
		}
	}
}

// TestMaxConns checks the total limit on authenticated connections.
func TestMaxConns(t *testing.T) {
	e := start(t, func(c *Config) { c.Limits.MaxConns = 1 })
	mustConnect(t, e.clientOpts("console", nil).SetUsername("admin").SetPassword("admin-secret"))
	if _, err := connect(t, e.clientOpts("dev-a", &e.a.cert)); err == nil {
		t.Error("Connect beyond MaxConns succeeded, want refused")
	}
}
