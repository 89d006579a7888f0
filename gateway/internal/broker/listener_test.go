package broker

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// TestOversizedConnectHeader sends, after a TLS handshake, a CONNECT fixed header that
// claims 1 MiB: the broker must close the connection without allocating the claimed size
// (mochi checks MaximumPacketSize in ReadFixedHeader, before ReadPacket allocates).
func TestOversizedConnectHeader(t *testing.T) {
	e := start(t, nil)
	header := []byte{0x10, 0x80, 0x80, 0x40} // CONNECT, remaining length 1048576
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	c, err := tls.Dial("tcp", e.b.Addr().String(), &tls.Config{RootCAs: e.pki.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(header); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)

	runtime.ReadMemStats(&after)
	// TotalAlloc counts every byte allocated since start, collected or not: a buffer of the
	// claimed size would show even if the GC already freed it. The TLS handshakes of both
	// ends account for the rest.
	t.Logf("TotalAlloc grew %d, HeapAlloc grew %d", after.TotalAlloc-before.TotalAlloc, int64(after.HeapAlloc)-int64(before.HeapAlloc))
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 512<<10 {
		t.Errorf("allocations during a 1 MiB CONNECT claim = %d bytes, want < %d", grew, 512<<10)
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 512<<10 {
		t.Errorf("heap growth during a 1 MiB CONNECT claim = %d bytes, want < %d", grew, 512<<10)
	}
}

// expectClosed reads from c until the peer closes it; a read deadline far beyond the
// broker's timeouts turns a hang into a failure.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(waitFor)); err != nil {
		t.Fatal(err)
	}
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v: %v", waitFor, err)
	}
}

// TestIdleConnectionClosed checks the deadline on the TLS handshake and the CONNECT packet:
// a socket that never sends a ClientHello, and one that completes TLS but never sends
// CONNECT, are both closed after ConnectTimeout.
func TestIdleConnectionClosed(t *testing.T) {
	e := start(t, func(c *Config) { c.ConnectTimeout = 300 * time.Millisecond })
	t.Run("no ClientHello", func(t *testing.T) {
		c, err := net.Dial("tcp", e.b.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		expectClosed(t, c)
	})
	t.Run("no CONNECT", func(t *testing.T) {
		c, err := tls.Dial("tcp", e.b.Addr().String(), &tls.Config{RootCAs: e.pki.Pool(), Certificates: []tls.Certificate{e.a.cert}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		expectClosed(t, c)
	})
	t.Run("partial CONNECT", func(t *testing.T) {
		c, err := tls.Dial("tcp", e.b.Addr().String(), &tls.Config{RootCAs: e.pki.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte{0x10, 0x20, 0x00}); err != nil { // 32 bytes announced, 1 sent
			t.Fatal(err)
		}
		expectClosed(t, c)
	})
	t.Run("authenticated client stays", func(t *testing.T) {
		c := mustConnect(t, e.clientOpts("dev-a", &e.a.cert).SetKeepAlive(30*time.Second))
		// Twice the connect timeout later, a round trip still works: the deadline was lifted.
		time.Sleep(600 * time.Millisecond)
		wait(t, "Publish after the connect timeout", c.Publish(e.topic.Device("dev-a", "health"), 1, false, "ok"))
		e.rec.next(t)
	})
}

// flakyListener is a net.Listener whose Accept fails with EMFILE a number of times, then
// reports itself closed; it records when Accept was called.
type flakyListener struct {
	mu       sync.Mutex
	failures int
	calls    []time.Time
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, time.Now())
	if len(l.calls) <= l.failures {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return nil, net.ErrClosed
}

func (l *flakyListener) Close() error   { return nil }
func (l *flakyListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestAcceptBackoff checks that Accept errors do not end the listener (mochi's returns on
// the first) and that retries back off from 5 ms, doubling, up to 1 s.
func TestAcceptBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fl := &flakyListener{failures: 10}
		l := &listener{id: "t", ln: fl, timeout: time.Second, log: slog.New(slog.DiscardHandler),
			onClose: func(*conn) {}, done: make(chan struct{}), conns: map[*conn]struct{}{}}
		start := time.Now()
		// Serve returns when Accept reports net.ErrClosed, after the failures.
		l.Serve(func(string, net.Conn) error { return nil })
		want := []time.Duration{0, 5, 15, 35, 75, 155, 315, 635, 1275, 2275, 3275} // ms after start
		if len(fl.calls) != len(want) {
			t.Fatalf("Accept called %d times, want %d", len(fl.calls), len(want))
		}
		for i, at := range fl.calls {
			if got := at.Sub(start); got != want[i]*time.Millisecond {
				t.Errorf("Accept call %d at %v, want %v", i, got, want[i]*time.Millisecond)
			}
		}
	})
}

// TestAcceptBackoffStopsOnClose checks that Close interrupts a backoff wait.
func TestAcceptBackoffStopsOnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fl := &flakyListener{failures: 1 << 30}
		l := &listener{id: "t", ln: fl, timeout: time.Second, log: slog.New(slog.DiscardHandler),
			onClose: func(*conn) {}, done: make(chan struct{}), conns: map[*conn]struct{}{}}
		served := make(chan struct{})
		go func() {
			defer close(served)
			l.Serve(func(string, net.Conn) error { return nil })
		}()
		time.Sleep(10 * time.Second) // well into the 1 s steps
		synctest.Wait()
		l.Close(func(string) {})
		synctest.Wait()
		select {
		case <-served:
		default:
			t.Fatal("Serve still running after Close")
		}
	})
}

var _ listeners.Listener = (*listener)(nil)
