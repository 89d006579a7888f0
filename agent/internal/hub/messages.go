package hub

import (
	"context"
	"fmt"

	"github.com/hearth-pki/hearth/agent/internal/mqtt"
	"github.com/hearth-pki/hearth/protocol"
)

// maxCASize bounds the retained CA topic's PEM payload.
const maxCASize = 64 << 10

// maxCRLSize bounds the retained CRL topic's PEM payload (some 4,000 revoked certificates).
const maxCRLSize = 256 << 10

// route is the connection's message handler. It runs on the connection's reading goroutine
// and never blocks.
func (s *Session) route(m mqtt.Message) {
	payload := m.Payload
	t, err := s.cfg.Topics.Parse(m.Topic)
	if err != nil {
		s.log.Debug("ignoring message on unexpected topic", "topic", m.Topic)
		return
	}
	if t.DeviceID != "" && t.DeviceID != s.cfg.DeviceID {
		s.log.Debug("ignoring message for another device", "topic", m.Topic)
		return
	}
	switch t.Kind {
	case protocol.KindCert:
		var c protocol.Cert
		if err := protocol.Decode(payload, &c); err != nil {
			s.log.Warn("ignoring invalid cert reply", "err", err)
			return
		}
		deliver(s, s.certs, c.RequestID, &c)
	case protocol.KindAck:
		var a protocol.Ack
		if err := protocol.Decode(payload, &a); err != nil {
			s.log.Warn("ignoring invalid ack", "err", err)
			return
		}
		deliver(s, s.acks, a.RequestID, &a)
	case protocol.KindCmd:
		var c protocol.Command
		if err := protocol.Decode(payload, &c); err != nil {
			s.log.Warn("ignoring invalid command", "err", err)
			return
		}
		s.push(Inbound{Command: &c, Retained: m.Retained})
	case protocol.KindRenewal:
		if len(payload) == 0 {
			return // the hub cleared the retained window
		}
		var r protocol.RenewalInfo
		if err := protocol.Decode(payload, &r); err != nil {
			s.log.Warn("ignoring invalid renewal info", "err", err)
			return
		}
		s.push(Inbound{Renewal: &r, Retained: m.Retained})
	case protocol.KindCA:
		if len(payload) == 0 || len(payload) > maxCASize {
			s.log.Warn("ignoring CA message of unexpected size", "bytes", len(payload))
			return
		}
		s.push(Inbound{CA: string(payload), Retained: m.Retained})
	case protocol.KindCRL:
		if len(payload) == 0 || len(payload) > maxCRLSize {
			s.log.Warn("ignoring CRL message of unexpected size", "bytes", len(payload))
			return
		}
		s.push(Inbound{CRL: string(payload), Retained: m.Retained})
	}
}

// push hands a message to the Inbox without blocking.
func (s *Session) push(in Inbound) {
	select {
	case s.inbox <- in:
	default:
		s.log.Warn("inbox full, dropping a hub message")
	}
}

// deliver hands a reply to the waiter of its request id without blocking.
func deliver[T any](s *Session, table map[string]chan T, id string, v T) {
	s.mu.Lock()
	ch, ok := table[id]
	s.mu.Unlock()
	if !ok {
		s.log.Debug("ignoring reply to no pending request", "request_id", id)
		return
	}
	select {
	case ch <- v:
	default: // a duplicate reply; the first one is waiting to be read
	}
}

// register adds a waiter for id to table; release removes it.
func register[T any](s *Session, table map[string]chan T, id string) (ch chan T, release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := table[id]; dup {
		return nil, nil, fmt.Errorf("%w: %s", ErrDuplicateRequest, id)
	}
	if len(s.certs)+len(s.acks) >= MaxWaiters {
		return nil, nil, ErrTooManyRequests
	}
	ch = make(chan T, 1)
	table[id] = ch
	return ch, func() {
		s.mu.Lock()
		delete(table, id)
		s.mu.Unlock()
	}, nil
}

// roundTrip publishes payload on topic after registering a waiter for id, and waits for the
// reply, ctx, or the loss of the connection (ErrConnectionLost).
func roundTrip[T any](ctx context.Context, s *Session, table map[string]chan T, id, topic string, payload []byte) (T, error) {
	var zero T
	ch, release, err := register(s, table, id)
	if err != nil {
		return zero, err
	}
	defer release()
	if err := s.publish(ctx, topic, false, payload); err != nil {
		return zero, err
	}
	select {
	case v := <-ch:
		return v, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-s.conn.Done():
		return zero, s.lostError()
	}
}

// Request sends csr and waits for the hub's Cert with the same request id. It returns
// ErrConnectionLost (wrapped) if the connection drops first, so that the caller can resubmit
// the same request on a new Session, and ctx's error when ctx ends. A Cert carrying an error is
// returned as is: the caller decides what the code means.
func (s *Session) Request(ctx context.Context, csr *protocol.CSR) (*protocol.Cert, error) {
	b, err := protocol.Encode(csr)
	if err != nil {
		return nil, fmt.Errorf("hub: request: %w", err)
	}
	c, err := roundTrip(ctx, s, s.certs, csr.RequestID, s.cfg.Topics.Device(s.cfg.DeviceID, protocol.KindCSR), b)
	if err != nil {
		return nil, fmt.Errorf("hub: request %s: %w", csr.RequestID, err)
	}
	return c, nil
}

// Commit sends c and waits for the hub's Ack with the same request id, like Request.
func (s *Session) Commit(ctx context.Context, c *protocol.Commit) (*protocol.Ack, error) {
	b, err := protocol.Encode(c)
	if err != nil {
		return nil, fmt.Errorf("hub: commit: %w", err)
	}
	a, err := roundTrip(ctx, s, s.acks, c.RequestID, s.cfg.Topics.Device(s.cfg.DeviceID, protocol.KindCommit), b)
	if err != nil {
		return nil, fmt.Errorf("hub: commit %s: %w", c.RequestID, err)
	}
	return a, nil
}

// Report publishes a commit or health message that expects no reply, waiting for the hub's
// PUBACK.
func (s *Session) Report(ctx context.Context, m protocol.Message) error {
	var kind protocol.Kind
	switch m.(type) {
	case *protocol.Health:
		kind = protocol.KindHealth
	case *protocol.Commit:
		kind = protocol.KindCommit
	default:
		return fmt.Errorf("hub: report: cannot publish a %T", m)
	}
	b, err := protocol.Encode(m)
	if err != nil {
		return fmt.Errorf("hub: report %s: %w", kind, err)
	}
	if err := s.publish(ctx, s.cfg.Topics.Device(s.cfg.DeviceID, kind), false, b); err != nil {
		return fmt.Errorf("hub: report %s: %w", kind, err)
	}
	return nil
}
