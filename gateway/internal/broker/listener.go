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
	adm           *admission     // the broker's connection counts, shared by its listeners
	limit         func(*conn) int

	done   chan struct{} // closed by Close
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[*conn]struct{} // every open connection, to close them all on Close
	closed bool
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
		// active stays 0 until the client sends something: a socket that never did is shed
		// before any that did (mostSilent), oldest first.
		c := &conn{raw: raw, onClose: l.forget, id: l.ids.Add(1), src: sourceOf(raw.RemoteAddr()), limit: l.limit}
		c.Conn = activityConn{Conn: raw, active: &c.active}
		if !l.track(c) {
			_ = raw.Close()
			continue
		}
		go l.handle(c, establish)
	}
}

// track registers a new connection as pending; it refuses when closed. A pending
// connection shed to make room for it is closed here.
func (l *listener) track(c *conn) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	if victim := l.adm.arrive(c); victim != nil {
		silent := "since it connected (sent nothing)"
		if t := victim.active.Load(); t != 0 {
			silent = time.Since(time.Unix(0, t)).Round(time.Millisecond).String()
		}
		l.log.Debug("mqtt pending connection shed to make room", "listener", l.id, "remote", victim.raw.RemoteAddr().String(), "silent", silent)
		_ = victim.Close()
	}
	return true
}

// handle runs one connection: handshake, then mochi's client loop until it ends.
//
// Its frame stays at the bottom of the stack of every idle session, below mochi's parked read
// loop: the handshake and the logging are in functions of their own so that it stays small
// (a stack whose parked frames use under a quarter of it is halved by the GC; README.md,
// Performance).
func (l *listener) handle(c *conn, establish listeners.EstablishFn) {
	defer l.wg.Done()
	defer c.Close()
	_ = c.raw.SetDeadline(time.Now().Add(l.timeout))
	if l.tls != nil && !l.handshake(c) {
		return
	}
	if l.isClosed() {
		return
	}
	if err := establish(l.id, c); err != nil {
		l.logEnded(c, err)
	}
}

// handshake runs c's TLS handshake and keeps its verified client certificate; it reports
// whether the handshake succeeded.
//
//go:noinline
func (l *listener) handshake(c *conn) bool {
	tc := tls.Server(c.Conn, l.tls)
	if err := tc.Handshake(); err != nil {
		l.log.Debug("mqtt tls handshake failed", "listener", l.id, "remote", c.raw.RemoteAddr().String(), "error", err)
		return false
	}
	c.Conn = tc
	c.leaf = peerLeaf(tc.ConnectionState(), l.acceptExpired)
	return true
}

// logEnded logs the end of c's client loop.
//
//go:noinline
func (l *listener) logEnded(c *conn, err error) {
	l.log.Debug("mqtt client ended", "listener", l.id, "remote", c.raw.RemoteAddr().String(), "error", err)
}

// forget drops a connection that closed and reports it to onClose.
func (l *listener) forget(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	l.adm.leave(c)
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
	net.Conn                    // the *tls.Conn, or the activityConn on the plaintext listener
	raw       net.Conn          // the TCP connection
	id        uint64            // Identity.Conn: numbered in accept order
	src       source            // where it comes from, for the connection limits
	leaf      *x509.Certificate // the verified client certificate; nil without one
	onClose   func(*conn)
	closeOnce sync.Once
	active    atomic.Int64 // unix nanoseconds of the last read from the socket that returned data; 0: none yet

	state connState // guarded by admission.mu

	// Only the client's read goroutine (mochi's) uses these.
	frames  frames
	packets int             // packets whose size was checked so far
	limit   func(*conn) int // the largest remaining length allowed for c's next packet

	grant atomic.Pointer[grant] // set once the CONNECT is authenticated

	// A refused session's reason and its closing timer (RoleRefused only).
	refusal *refusal // set before grant, read after it
	expire  atomic.Pointer[time.Timer]

	// Guarded by registry.mu.
	deviceID   string
	registered bool // in registry.byDevice
	online     bool // counted for presence (RoleDevice, authenticated)
	ended      bool // closed; never registered again

	// bucket limits publishes; only the client's read goroutine uses it.
	bucket tokenBucket
}

// Read reads from the connection, checking the size every packet claims before the bytes
// reach mochi: one that claims more than the session may send closes the connection and
// fails with ErrPacketTooLarge.
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		if ferr := c.frames.scan(p[:n], c.nextLimit); ferr != nil {
			_ = c.Close()
			return 0, ferr
		}
	}
	return n, err
}

func (c *conn) nextLimit() int {
	max := c.limit(c)
	c.packets++
	return max
}

// Close closes the TCP connection without a TLS close_notify, which could block for
// seconds on a peer that does not read; MQTT does not rely on it.
func (c *conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		if t := c.expire.Load(); t != nil {
			t.Stop()
		}
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
