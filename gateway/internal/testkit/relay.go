package testkit

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Relay is a TCP relay on 127.0.0.1 in front of a server, passing bytes both ways untouched
// (TLS goes through end to end), that can be told to refuse the next connections. It cuts one
// client connection at a precise step — an agent's reconnection with its new certificate, say
// — without touching the server or the client.
type Relay struct {
	// Addr is the relay's host:port, to give clients instead of the server's.
	Addr string

	ln net.Listener
	wg sync.WaitGroup

	mu       sync.Mutex
	target   string
	refuse   int // connections still to refuse
	refused  int
	accepted int
	conns    map[net.Conn]struct{}
	closed   bool
}

// StartRelay starts a relay to target (host:port), or to nowhere yet if target is empty (see
// SetTarget). Connections it passes are opened to the target when accepted; the relay and
// every connection through it are closed at cleanup.
func StartRelay(t testing.TB, target string) *Relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{Addr: ln.Addr().String(), ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(func() {
		r.mu.Lock()
		r.closed = true
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		ln.Close()
		r.wg.Wait()
	})
	return r
}

// SetTarget sets the server to relay to, for a server that must know the relay's address
// before it starts (to advertise it). Until a target is set, connections are closed.
func (r *Relay) SetTarget(target string) {
	r.mu.Lock()
	r.target = target
	r.mu.Unlock()
}

// RefuseNext makes the relay refuse the next n connections as a TLS server refuses a client
// certificate, without reaching the server: a fatal bad_certificate alert to the
// ClientHello, then close.
func (r *Relay) RefuseNext(n int) {
	r.mu.Lock()
	r.refuse = n
	r.mu.Unlock()
}

// Refused returns how many connections the relay refused so far.
func (r *Relay) Refused() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

// Accepted returns how many connections the relay accepted so far, refused ones included.
func (r *Relay) Accepted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.accepted++
		refuse, target := r.refuse > 0, r.target
		if refuse {
			r.refuse--
			r.refused++
		}
		r.mu.Unlock()
		if refuse {
			// Turn the client down as a TLS server does a certificate it does not trust:
			// read its ClientHello, answer a fatal bad_certificate alert (RFC 8446, 6.2),
			// close.
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				_, _ = c.Read(buf)
				_, _ = c.Write([]byte{21, 3, 3, 0, 2, 2, 42})
			}()
			continue
		}
		if target == "" {
			c.Close()
			continue
		}
		r.wg.Add(1)
		go r.pass(c, target)
	}
}

// pass relays c to a new connection to the target until either side closes.
func (r *Relay) pass(c net.Conn, target string) {
	defer r.wg.Done()
	s, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	if !r.track(c, s) {
		return
	}
	var once sync.Once
	end := func() {
		once.Do(func() {
			c.Close()
			s.Close()
		})
	}
	done := make(chan struct{})
	go func() {
		io.Copy(s, c)
		end()
		close(done)
	}()
	io.Copy(c, s)
	end()
	<-done
	r.mu.Lock()
	delete(r.conns, c)
	delete(r.conns, s)
	r.mu.Unlock()
}

// track records c and s for cleanup, or closes them if the relay is closing.
func (r *Relay) track(c, s net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		s.Close()
		return false
	}
	r.conns[c], r.conns[s] = struct{}{}, struct{}{}
	return true
}
