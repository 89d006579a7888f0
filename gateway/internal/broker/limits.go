package broker

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Connection limit defaults (issue 15, item 3). A pending connection is one that has not yet
// authenticated: its TLS handshake and CONNECT are still to come. An idle flood fills the
// pending slots; a new connection is never refused for that: the most silent pending
// connection of the busiest source is closed to make room instead, so sockets that send
// nothing are shed first and a client that talks gets through.
const (
	DefaultMaxPending           = 2048  // pending connections in total
	DefaultMaxPendingPerSource  = 512   // pending connections from one source
	DefaultMaxConns             = 16384 // authenticated connections in total
	DefaultMaxConnsPerSource    = 1024  // authenticated connections from one source (loopback exempt)
	DefaultMaxSessionsPerDevice = 4     // sessions (device or enrolling) of one device id
)

// CONNECT sizes allowed before authentication, checked from the packet's fixed header before
// mochi allocates a buffer of the claimed size. A device's CONNECT carries its client id and
// its Will ({"v":1,"state":"offline"} on its state topic); a password login a user name and a
// password or token. Both fit many times over.
const (
	MaxConnectCertificate = 2 << 10 // a session that presented a client certificate
	MaxConnectPassword    = 4 << 10 // a session without one (enrollment, admin)
)

// packetOverhead is what an authenticated session's packet may carry beside its payload of
// at most protocol.MaxMessageSize: fixed and variable header, topic, packet id, properties.
const packetOverhead = 1 << 10

// ErrPacketTooLarge is returned by a connection's Read when a packet's fixed header claims
// more than the session may send; the connection is closed.
var ErrPacketTooLarge = errors.New("broker: packet larger than the session may send")

// Limits are the broker's connection limits; zero values mean the defaults above.
type Limits struct {
	MaxPending           int
	MaxPendingPerSource  int
	MaxConns             int
	MaxConnsPerSource    int
	MaxSessionsPerDevice int
}

func (l Limits) withDefaults() (Limits, error) {
	set := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	set(&l.MaxPending, DefaultMaxPending)
	set(&l.MaxPendingPerSource, DefaultMaxPendingPerSource)
	set(&l.MaxConns, DefaultMaxConns)
	set(&l.MaxConnsPerSource, DefaultMaxConnsPerSource)
	set(&l.MaxSessionsPerDevice, DefaultMaxSessionsPerDevice)
	if l.MaxPending < 1 || l.MaxPendingPerSource < 1 || l.MaxConns < 1 || l.MaxConnsPerSource < 1 || l.MaxSessionsPerDevice < 1 {
		return l, fmt.Errorf("%w: negative connection limit", ErrConfig)
	}
	return l, nil
}

// source is where a connection comes from: its IPv4 address, or its IPv6 /64 (one host
// holds a whole /64, so per-address limits would not hold it).
type source = netip.Prefix

func sourceOf(a net.Addr) source {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// admission counts connections by source and decides which are shed or refused. It is
// shared by the broker's listeners. Every method is O(1) except shedding, which scans the
// pending connections of one source (at most MaxPendingPerSource) and, when the total is
// full, the sources with pending connections (at most MaxPending).
type admission struct {
	lim Limits

	mu      sync.Mutex
	sources map[source]*sourceState
	pending int
	conns   int
	shed    uint64 // pending connections closed to make room
}

type sourceState struct {
	pending map[*conn]struct{}
	conns   int
}

// connState is where a connection stands in the admission's counts.
type connState int

const (
	stateNone        connState = iota // not counted (closed, or never admitted)
	statePending                      // counted as pending
	stateEstablished                  // counted as an authenticated connection
)

func newAdmission(lim Limits) *admission {
	return &admission{lim: lim, sources: map[source]*sourceState{}}
}

// arrive counts c as pending and returns the connection to close to make room, if any: the
// most silent pending connection of c's source when that source is at its limit, else of the
// source with most pending connections when the total is at its limit. c itself is never
// returned.
func (a *admission) arrive(c *conn) *conn {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.sources[c.src]
	if s == nil {
		s = &sourceState{pending: map[*conn]struct{}{}}
		a.sources[c.src] = s
	}
	var victim *conn
	switch {
	case len(s.pending) >= a.lim.MaxPendingPerSource:
		victim = mostSilent(s)
	case a.pending >= a.lim.MaxPending:
		var busiest *sourceState
		for _, o := range a.sources {
			if busiest == nil || len(o.pending) > len(busiest.pending) {
				busiest = o
			}
		}
		victim = mostSilent(busiest)
	}
	if victim != nil {
		a.drop(victim)
		a.shed++
	}
	s.pending[c] = struct{}{}
	c.state = statePending
	a.pending++
	return victim
}

// mostSilent returns the pending connection of s to shed: one that never sent a byte (the
// oldest of them), else the one silent longest. A legitimate client sends its ClientHello at
// once, so an idle flood goes first; among clients that talked, the one that stalled longest.
func mostSilent(s *sourceState) *conn {
	var out *conn
	var oldest int64
	for c := range s.pending {
		if t := c.active.Load(); out == nil || t < oldest || (t == oldest && c.id < out.id) {
			out, oldest = c, t
		}
	}
	return out
}

// establish moves c from pending to authenticated, or refuses it when the total or its
// source (unless loopback) is at its limit. It returns false when c was already closed or
// shed.
func (a *admission) establish(c *conn) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c.state != statePending {
		return fmt.Errorf("%w: connection closed during CONNECT", ErrRefused)
	}
	s := a.sources[c.src]
	switch {
	case a.conns >= a.lim.MaxConns:
		return fmt.Errorf("%w: the broker holds %d connections, its limit", ErrRefused, a.conns)
	case !c.src.Addr().IsLoopback() && s.conns >= a.lim.MaxConnsPerSource:
		return fmt.Errorf("%w: %d connections from %s, the limit per source", ErrRefused, s.conns, c.src)
	}
	delete(s.pending, c)
	a.pending--
	s.conns++
	a.conns++
	c.state = stateEstablished
	return nil
}

// leave uncounts c, which closed.
func (a *admission) leave(c *conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.drop(c)
}

// drop uncounts c; a.mu must be held.
func (a *admission) drop(c *conn) {
	s := a.sources[c.src]
	switch c.state {
	case statePending:
		delete(s.pending, c)
		a.pending--
	case stateEstablished:
		s.conns--
		a.conns--
	default:
		return
	}
	c.state = stateNone
	if len(s.pending) == 0 && s.conns == 0 {
		delete(a.sources, c.src)
	}
}

// counts returns the pending and authenticated connections and how many were shed.
func (a *admission) counts() (pending, conns int, shed uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pending, a.conns, a.shed
}

// activityConn is the TCP connection under TLS; it records when it last received bytes,
// which is how shedding tells an idle socket from a client in the middle of its handshake.
type activityConn struct {
	net.Conn
	active *atomic.Int64 // unix nanoseconds of the last read that returned data
}

func (c activityConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.active.Store(time.Now().UnixNano())
	}
	return n, err
}

// frames follows the MQTT packet framing of what a client sends, to check each packet's
// claimed size from its fixed header before mochi reads the header and allocates the claimed
// size (mochi's ReadPacket makes a buffer of the full remaining length at once). It holds no
// buffer: only the position within the current packet.
type frames struct {
	remaining int // body bytes of the current packet still to pass
	inHeader  bool
	length    int // remaining length decoded so far
	shift     uint
	lenBytes  int
}

// scan advances over p; limit returns the largest remaining length allowed for the next
// packet (it is asked once per packet, when its length is known).
func (f *frames) scan(p []byte, limit func() int) error {
	for len(p) > 0 {
		if f.remaining > 0 {
			n := min(f.remaining, len(p))
			f.remaining -= n
			p = p[n:]
			continue
		}
		b := p[0]
		p = p[1:]
		if !f.inHeader { // the packet type byte
			f.inHeader, f.length, f.shift, f.lenBytes = true, 0, 0, 0
			continue
		}
		f.length |= int(b&0x7f) << f.shift
		f.shift += 7
		f.lenBytes++
		if b&0x80 != 0 {
			if f.lenBytes == 4 {
				return fmt.Errorf("%w: malformed remaining length", ErrPacketTooLarge)
			}
			continue
		}
		f.inHeader = false
		if max := limit(); f.length > max {
			return fmt.Errorf("%w: %d bytes claimed, at most %d", ErrPacketTooLarge, f.length, max)
		}
		f.remaining = f.length
	}
	return nil
}
