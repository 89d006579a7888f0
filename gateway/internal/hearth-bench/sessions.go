package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

// keepAlive is the sessions' MQTT keep-alive, the agent's default (agent/internal/mqtt).
const keepAlive = 60 * time.Second

// identity is one device's mutual-TLS identity, read from a hearth-agent state directory.
type identity struct {
	id   string
	cert tls.Certificate
}

// loadIdentities reads DIR/<device id>/current.pem (the chain, then the key: the layout of
// agent/internal/keystore) for up to n devices, in name order.
func loadIdentities(dir string, n int) ([]identity, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []identity
	for _, e := range entries {
		if !e.IsDir() || len(out) == n {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), "current.pem"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(data, data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		out = append(out, identity{id: e.Name(), cert: cert})
	}
	if len(out) < n {
		return nil, fmt.Errorf("%s holds %d device identities, want %d", dir, len(out), n)
	}
	return out, nil
}

// session is one device's MQTT 3.1.1 session as hearth-agent opens it: clean session,
// keep-alive 60 s, a retained offline Will on its state topic, one SUBSCRIBE (QoS 1) to its
// cert, ack, cmd and renewal topics and the CA, then its retained online state. After that
// a single goroutine reads, acknowledges QoS 1 publishes and sends PINGREQ when idle.
type session struct {
	conn net.Conn
	r    *bufio.Reader
}

// dialSession connects one device and returns once its state publish is acknowledged.
func dialSession(ctx context.Context, addr string, roots *x509.CertPool, topics protocol.Topics, dev identity, timeout time.Duration) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	dl, _ := ctx.Deadline()
	_ = raw.SetDeadline(dl)
	tc := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: host, Certificates: []tls.Certificate{dev.cert}, MinVersion: tls.VersionTLS12})
	s := &session{conn: tc, r: bufio.NewReaderSize(tc, 512)}
	if err := s.open(topics, dev.id); err != nil {
		_ = raw.Close()
		return nil, err
	}
	_ = raw.SetDeadline(time.Time{})
	return s, nil
}

func (s *session) open(topics protocol.Topics, id string) error {
	offline, err := protocol.Encode(&protocol.State{V: protocol.Version, State: protocol.Offline, AgentVersion: "bench"})
	if err != nil {
		return err
	}
	online, err := protocol.Encode(&protocol.State{V: protocol.Version, State: protocol.Online, AgentVersion: "bench"})
	if err != nil {
		return err
	}
	state := topics.Device(id, protocol.KindState)

	var p []byte
	p = appendString(p, "MQTT")
	p = append(p, 4, 0x02|0x04|0x08|0x20) // level 3.1.1; clean session, Will, Will QoS 1, Will retain
	p = binary.BigEndian.AppendUint16(p, uint16(keepAlive/time.Second))
	p = appendString(p, id+":bench")
	p = appendString(p, state)
	p = appendString(p, string(offline))
	if err := s.write(0x10, p); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	typ, body, err := s.read()
	if err != nil {
		return fmt.Errorf("connack: %w", err)
	}
	if typ != 0x20 || len(body) != 2 || body[1] != 0 {
		return fmt.Errorf("connack: refused (packet %#x %x)", typ, body)
	}

	p = binary.BigEndian.AppendUint16(nil, 1)
	for _, k := range []protocol.Kind{protocol.KindCert, protocol.KindAck, protocol.KindCmd, protocol.KindRenewal} {
		p = append(appendString(p, topics.Device(id, k)), 1)
	}
	p = append(appendString(p, topics.CA()), 1)
	if err := s.write(0x82, p); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	p = binary.BigEndian.AppendUint16(appendString(nil, state), 2)
	p = append(p, online...)
	if err := s.write(0x33, p); err != nil { // PUBLISH, QoS 1, retained
		return fmt.Errorf("publish state: %w", err)
	}
	for gotSuback, gotPuback := false, false; !gotSuback || !gotPuback; {
		typ, body, err := s.read()
		if err != nil {
			return fmt.Errorf("suback or puback: %w", err)
		}
		switch typ & 0xf0 {
		case 0x90:
			if slices.Contains(body[2:], 0x80) {
				return fmt.Errorf("suback: a subscription was refused (%x)", body[2:])
			}
			gotSuback = true
		case 0x40:
			gotPuback = true
		case 0x30:
			if err := s.ackPublish(typ, body); err != nil {
				return err
			}
		}
	}
	return nil
}

// hold reads until the connection ends: it acknowledges QoS 1 publishes (the retained CA,
// commands) and pings after three quarters of the keep-alive without traffic. It returns
// the error that ended the session.
func (s *session) hold() error {
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(keepAlive * 3 / 4))
		typ, body, err := s.read()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			if err := s.write(0xc0, nil); err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			continue
		case err != nil:
			return fmt.Errorf("read: %w", err)
		}
		if typ&0xf0 == 0x30 {
			if err := s.ackPublish(typ, body); err != nil {
				return fmt.Errorf("puback: %w", err)
			}
		}
	}
}

// ackPublish sends the PUBACK a QoS 1 PUBLISH needs.
func (s *session) ackPublish(typ byte, body []byte) error {
	if (typ>>1)&3 != 1 {
		return nil
	}
	if len(body) < 2 {
		return errors.New("short publish")
	}
	n := int(binary.BigEndian.Uint16(body))
	if len(body) < 2+n+2 {
		return errors.New("short publish")
	}
	return s.write(0x40, body[2+n:2+n+2])
}

func (s *session) write(header byte, body []byte) error {
	p := []byte{header}
	for n := len(body); ; {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		p = append(p, b)
		if n == 0 {
			break
		}
	}
	_, err := s.conn.Write(append(p, body...))
	return err
}

// read returns the next packet's first byte and body.
func (s *session) read() (byte, []byte, error) {
	typ, err := s.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, shift := 0, 0
	for {
		b, err := s.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		if shift += 7; shift > 21 {
			return 0, nil, errors.New("malformed remaining length")
		}
	}
	body := make([]byte, n)
	_, err = io.ReadFull(s.r, body)
	return typ, body, err
}

func appendString(p []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(p, uint16(len(s))), s...)
}

// wave connects every device, k at a time, and returns the sessions in device order (nil
// for a device that failed), the wall time and the first errors. opened, if not nil, is
// called with each session as soon as it is open, to hold it (read and ping) while the wave
// goes on: a wave longer than the keep-alive's grace (90 s) would otherwise let the broker
// close the first sessions, which sent nothing since their CONNECT.
func wave(ctx context.Context, addr string, roots *x509.CertPool, topics protocol.Topics, devs []identity, k int, timeout time.Duration, opened func(*session)) ([]*session, time.Duration, int, []error) {
	out := make([]*session, len(devs))
	var next atomic.Int64
	var mu sync.Mutex
	var errs []error
	failed := 0
	start := time.Now()
	var wg sync.WaitGroup
	for range k {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(devs) || ctx.Err() != nil {
					return
				}
				s, err := dialSession(ctx, addr, roots, topics, devs[i], timeout)
				if err != nil {
					mu.Lock()
					failed++
					if len(errs) < 5 {
						errs = append(errs, fmt.Errorf("%s: %w", devs[i].id, err))
					}
					mu.Unlock()
					continue
				}
				out[i] = s
				if opened != nil {
					opened(s)
				}
			}
		})
	}
	wg.Wait()
	return out, time.Since(start), failed, errs
}
