package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// Accept backoff bounds: an Accept error (EMFILE, ENFILE, ECONNABORTED…) is retried after a
// delay that starts at minAcceptDelay and doubles up to maxAcceptDelay. mochi's own TCP
// listener returns on the first error and never accepts again.
const (
	minAcceptDelay = 5 * time.Millisecond
	maxAcceptDelay = time.Second
)

// maxPending bounds the connections that have not finished their TLS handshake and CONNECT:
// beyond it new connections are closed at once, so a flood of idle sockets cannot grow the
// goroutines and TLS state without bound.
const maxPending = 1024

// nextDelay returns the accept backoff after prev (zero for the first error).
func nextDelay(prev time.Duration) time.Duration {
	if prev <= 0 {
		return minAcceptDelay
	}
	return min(2*prev, maxAcceptDelay)
}

// listener implements mochi's listeners.Listener over a net.Listener bound by New. Each
// accepted connection gets its own goroutine, which does the TLS handshake eagerly under a
// deadline of timeout (mochi's TCP listener handshakes lazily and sets no deadline, so an
// idle socket stays forever) and then hands the connection to mochi. The deadline also
// covers the CONNECT packet: mochi replaces it with the keepalive deadline once it has
// read CONNECT.
type listener struct {
	id  string
	ln  net.Listener
	tls *tls.Config // nil: plaintext (loopback only, checked by New)
	// acceptExpired: tls only requests client certificates, verifyClient checks them.
	acceptExpired bool
	timeout       time.Duration
	log           *slog.Logger
	onClose       func(*conn)    // called once per connection, when it closes
	ids           *atomic.Uint64 // the broker's connection counter, shared by its listeners

	done    chan struct{} // closed by Close
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[*conn]struct{} // every open connection, to close them all on Close
	pending int                // connections not yet handed to mochi
	closed  bool
}

var _ listeners.Listener = (*listener)(nil)

// ID returns the listener's id.
func (l *listener) ID() string { return l.id }

// Address returns the bound address.
func (l *listener) Address() string { return l.ln.Addr().String() }

// Protocol returns "tls" or "tcp".
func (l *listener) Protocol() string {
	if l.tls != nil {
		return "tls"
	}
	return "tcp"
}

// Init does nothing: New bound the socket already, so that Addr is known before Run.
func (l *listener) Init(*slog.Logger) error { return nil }

// Serve accepts connections until Close, backing off on Accept errors instead of returning.
// The loop itself is not waited for: it returns as soon as Close closed the socket.
func (l *listener) Serve(establish listeners.EstablishFn) {
	var delay time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if l.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			delay = nextDelay(delay)
			l.log.Warn("mqtt accept failed, backing off", "listener", l.id, "error", err, "delay", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		c := &conn{Conn: raw, raw: raw, onClose: l.forget, id: l.ids.Add(1)}
		if !l.track(c) {
			_ = raw.Close()
			continue
		}
		go l.handle(c, establish)
	}
}

// track registers a new connection; it refuses when closed or over maxPending.
func (l *listener) track(c *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	if l.pending >= maxPending {
		l.log.Warn("mqtt connection refused: too many pending handshakes", "listener", l.id, "remote", c.raw.RemoteAddr().String())
		return false
	}
	l.pending++
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	return true
}

// handle runs one connection: handshake, then mochi's client loop until it ends.
func (l *listener) handle(c *conn, establish listeners.EstablishFn) {
	defer l.wg.Done()
	defer c.Close()
	remote := c.raw.RemoteAddr().String()
	ready := func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.pending--
		return !l.closed
	}
	_ = c.raw.SetDeadline(time.Now().Add(l.timeout))
	if l.tls != nil {
		tc := tls.Server(c.raw, l.tls)
		if err := tc.Handshake(); err != nil {
			ready()
			l.log.Debug("mqtt tls handshake failed", "listener", l.id, "remote", remote, "error", err)
			return
		}
		c.Conn = tc
		c.leaf = peerLeaf(tc.ConnectionState(), l.acceptExpired)
	}
	if !ready() {
		return
	}
	if err := establish(l.id, c); err != nil {
		l.log.Debug("mqtt client ended", "listener", l.id, "remote", remote, "error", err)
	}
}

// forget drops a connection that closed and reports it to onClose.
func (l *listener) forget(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	l.onClose(c)
}

func (l *listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Close stops accepting and closes every connection, including those still in their
// handshake or CONNECT that mochi does not know about, then lets mochi clean up its clients.
// Closing the sockets first keeps mochi's DISCONNECT writes from blocking on a stuck peer.
func (l *listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.done)
	conns := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	_ = l.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	closeClients(l.id)
}

// wait blocks until every connection goroutine returned.
func (l *listener) wait() { l.wg.Wait() }

// conn is one client connection as mochi sees it (mochi's Client.Net.Conn), carrying the
// session's state for the hook: the verified client certificate and, once authenticated,
// its grant.
type conn struct {
	net.Conn                    // the *tls.Conn, or the raw connection on the plaintext listener
	raw       net.Conn          // the TCP connection
	id        uint64            // Identity.Conn: numbered in accept order
	leaf      *x509.Certificate // the verified client certificate; nil without one
	onClose   func(*conn)
	closeOnce sync.Once

	grant atomic.Pointer[grant] // set once the CONNECT is authenticated

	// Guarded by registry.mu.
	deviceID   string
	registered bool // in registry.byDevice
	online     bool // counted for presence (RoleDevice, authenticated)
	ended      bool // closed; never registered again

	// bucket limits publishes; only the client's read goroutine uses it.
	bucket tokenBucket
}

// Close closes the TCP connection without a TLS close_notify, which could block for
// seconds on a peer that does not read; MQTT does not rely on it.
func (c *conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.raw.Close()
		c.onClose(c)
	})
	return err
}

// tokenBucket is a publish rate limiter.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

// allow takes one token if there is one, refilling at rate per second up to burst.
func (b *tokenBucket) allow(now time.Time, rate float64, burst int) bool {
	switch {
	case b.last.IsZero():
		b.tokens = float64(burst)
		b.last = now
	case now.After(b.last):
		b.tokens = min(float64(burst), b.tokens+now.Sub(b.last).Seconds()*rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
