package mqtt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Defaults of Config's zero fields.
const (
	DefaultKeepAlive = 60 * time.Second
	DefaultTimeout   = 20 * time.Second
)

// SubackFailure is the SUBACK return code of a refused subscription (MQTT 3.1.1 §3.9.3).
const SubackFailure = 0x80

// Message is an application message, received or to publish.
type Message struct {
	Topic   string
	Payload []byte
	// QoS is 0 or 1 when publishing; a received message may have 2.
	QoS byte
	// Retained is the RETAIN flag. On a received message it means the broker's retained
	// copy, sent because of a new subscription, not a live publication (§3.3.1.3).
	Retained bool
}

// Subscription is one topic filter of a SUBSCRIBE and the maximum QoS asked for.
type Subscription struct {
	Filter string
	QoS    byte
}

// Config describes one connection. The zero value of each field means its default.
type Config struct {
	// ClientID is the MQTT client identifier. Required.
	ClientID string
	// Username and Password are sent when not empty; a password needs a username (§3.1.2.9).
	Username, Password string
	// Will, if set, is published by the server when the connection ends without a
	// DISCONNECT; its QoS is 0 or 1.
	Will *Message
	// KeepAlive is the keep-alive interval (§3.1.2.10), rounded up to whole seconds, at most
	// 65535 s; zero means DefaultKeepAlive. A PINGREQ goes out when nothing was sent for three quarters of it.
	KeepAlive time.Duration
	// Timeout bounds the wait for CONNACK, each write and the wait for a PINGRESP; zero means
	// DefaultTimeout.
	Timeout time.Duration
	// OnMessage receives the server's publications, on the reading goroutine: it must not
	// block. Nil discards them.
	OnMessage func(Message)
}

// ErrClosed is the reason of a connection ended by Disconnect.
var ErrClosed = errors.New("mqtt: connection closed by the client")

// ErrNoPingResponse means the server did not answer a PINGREQ within Config.Timeout.
var ErrNoPingResponse = errors.New("mqtt: no PINGRESP from the server")

// RefusedError means the server answered CONNECT with a refusal.
type RefusedError struct {
	// Code is the CONNACK return code (§3.2.2.3), 1 to 5 or a value the standard reserves.
	Code byte
}

// Error names the refusal.
func (e *RefusedError) Error() string {
	if reason, ok := packets.ConnackReturnCodes[e.Code]; ok {
		reason = strings.TrimPrefix(reason, "Connection Refused: ")
		return fmt.Sprintf("mqtt: connection refused: %s (code %d)", strings.ToLower(reason), e.Code)
	}
	return fmt.Sprintf("mqtt: connection refused: code %d", e.Code)
}

// Conn is an MQTT connection. Create it with Connect.
type Conn struct {
	cfg  Config
	nc   net.Conn
	r    *bufio.Reader
	done chan struct{}

	wmu sync.Mutex // serializes writes

	mu        sync.Mutex
	err       error // why the connection ended; nil while it is up
	lastWrite time.Time
	pingSent  time.Time // when the unanswered PINGREQ went out; zero if none
	nextID    uint16
	pending   map[uint16]*waiter
}

// waiter is a PUBLISH or SUBSCRIBE awaiting its acknowledgment.
type waiter struct {
	ack byte // packets.Puback or packets.Suback
	ch  chan packets.ControlPacket
}

// Connect sends CONNECT on nc, waits for the CONNACK and returns the connection, which owns nc
// from then on. On failure nc is closed and the error is a *RefusedError if the server refused,
// or ctx's error if ctx ended first.
func Connect(ctx context.Context, nc net.Conn, cfg Config) (*Conn, error) {
	p, err := cfg.connectPacket()
	if err != nil {
		nc.Close()
		return nil, err
	}
	c := &Conn{
		cfg:     cfg,
		nc:      nc,
		r:       bufio.NewReader(nc),
		done:    make(chan struct{}),
		pending: make(map[uint16]*waiter),
	}
	// ctx ending interrupts the handshake by moving the deadline into the past.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	err = c.handshake(p)
	if !stop() && ctx.Err() != nil {
		nc.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	c.lastWrite = time.Now()
	go c.read()
	go c.keepAlive()
	return c, nil
}

// connectPacket validates cfg, fills its defaults in and builds the CONNECT packet.
func (cfg *Config) connectPacket() (*packets.ConnectPacket, error) {
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	cfg.KeepAlive = (cfg.KeepAlive + time.Second - 1).Truncate(time.Second) // the wire counts seconds
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	switch {
	case cfg.ClientID == "":
		return nil, errors.New("mqtt: connect: no client id")
	case cfg.KeepAlive > 65535*time.Second:
		return nil, fmt.Errorf("mqtt: connect: keep-alive %s longer than 65535 s", cfg.KeepAlive)
	case cfg.Password != "" && cfg.Username == "":
		return nil, errors.New("mqtt: connect: a password needs a username")
	case cfg.Will != nil && cfg.Will.QoS > 1:
		return nil, errors.New("mqtt: connect: Will QoS above 1")
	}
	p := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	p.ProtocolName, p.ProtocolVersion = "MQTT", 4
	p.CleanSession = true
	p.Keepalive = uint16(cfg.KeepAlive / time.Second)
	p.ClientIdentifier = cfg.ClientID
	if cfg.Username != "" {
		p.UsernameFlag, p.Username = true, cfg.Username
	}
	if cfg.Password != "" {
		p.PasswordFlag, p.Password = true, []byte(cfg.Password)
	}
	if w := cfg.Will; w != nil {
		if err := checkTopic(w.Topic); err != nil {
			return nil, fmt.Errorf("mqtt: connect: Will: %w", err)
		}
		p.WillFlag, p.WillTopic, p.WillMessage, p.WillQos, p.WillRetain = true, w.Topic, w.Payload, w.QoS, w.Retained
	}
	return p, nil
}

// handshake writes CONNECT and reads CONNACK, within cfg.Timeout.
func (c *Conn) handshake(p *packets.ConnectPacket) error {
	c.nc.SetDeadline(time.Now().Add(c.cfg.Timeout))
	b, err := encode(p)
	if err != nil {
		return fmt.Errorf("mqtt: connect: %w", err)
	}
	if _, err := c.nc.Write(b); err != nil {
		return fmt.Errorf("mqtt: connect: %w", err)
	}
	reply, err := readPacket(c.r)
	if err != nil {
		return fmt.Errorf("mqtt: no CONNACK: %w", eofReason(err))
	}
	ack, ok := reply.(*packets.ConnackPacket)
	if !ok {
		return fmt.Errorf("mqtt: got %s instead of CONNACK", packets.PacketNames[kindOf(reply)])
	}
	if ack.ReturnCode != packets.Accepted {
		return &RefusedError{Code: ack.ReturnCode}
	}
	return nil
}

// Done returns a channel closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (ErrClosed after Disconnect), or nil while it is up.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Disconnect sends DISCONNECT, so that the server discards the Will (§3.14.4), and closes the
// connection. It is safe to call more than once.
func (c *Conn) Disconnect() {
	c.wmu.Lock()
	if c.Err() == nil {
		if b, err := encode(packets.NewControlPacket(packets.Disconnect)); err == nil {
			c.nc.SetWriteDeadline(time.Now().Add(min(c.cfg.Timeout, time.Second)))
			c.nc.Write(b)
		}
	}
	c.wmu.Unlock()
	c.end(ErrClosed)
}

// end records why the connection ended, closes it and releases every waiter. Only the first
// call has an effect.
func (c *Conn) end(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	c.pending = nil
	c.mu.Unlock()
	c.nc.Close()
	close(c.done)
}

// write sends one packet within cfg.Timeout; a failure ends the connection.
func (c *Conn) write(p packets.ControlPacket) error {
	b, err := encode(p)
	if err != nil {
		return fmt.Errorf("mqtt: encode %s: %w", p.String(), err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.Err(); err != nil {
		return err
	}
	now := time.Now()
	c.nc.SetWriteDeadline(now.Add(c.cfg.Timeout))
	if _, err := c.nc.Write(b); err != nil {
		c.end(fmt.Errorf("mqtt: write: %w", err))
		return c.Err()
	}
	c.mu.Lock()
	c.lastWrite = now
	c.mu.Unlock()
	return nil
}

// Publish sends m. At QoS 0 it returns once m is written; at QoS 1 it waits for the server's
// PUBACK, ctx, or the end of the connection (then Err's reason).
func (c *Conn) Publish(ctx context.Context, m Message) error {
	if err := checkTopic(m.Topic); err != nil {
		return fmt.Errorf("mqtt: publish: %w", err)
	}
	if m.QoS > 1 {
		return errors.New("mqtt: publish: QoS above 1 is not supported")
	}
	p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	p.TopicName, p.Payload, p.Qos, p.Retain = m.Topic, m.Payload, m.QoS, m.Retained
	if m.QoS == 0 {
		return c.write(p)
	}
	_, err := c.roundTrip(ctx, p, packets.Puback, func(id uint16) { p.MessageID = id })
	return err
}

// Subscribe sends one SUBSCRIBE with subs and waits for the SUBACK, ctx, or the end of the
// connection. It returns the return code of each subscription, in order: the QoS granted, or
// SubackFailure.
func (c *Conn) Subscribe(ctx context.Context, subs ...Subscription) ([]byte, error) {
	if len(subs) == 0 {
		return nil, errors.New("mqtt: subscribe: no topic filter")
	}
	p := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
	for _, s := range subs {
		if s.Filter == "" || s.QoS > 2 {
			return nil, fmt.Errorf("mqtt: subscribe: invalid subscription %q QoS %d", s.Filter, s.QoS)
		}
		p.Topics, p.Qoss = append(p.Topics, s.Filter), append(p.Qoss, s.QoS)
	}
	reply, err := c.roundTrip(ctx, p, packets.Suback, func(id uint16) { p.MessageID = id })
	if err != nil {
		return nil, err
	}
	codes := reply.(*packets.SubackPacket).ReturnCodes
	if len(codes) != len(subs) {
		err := fmt.Errorf("mqtt: SUBACK with %d return codes for %d subscriptions", len(codes), len(subs))
		c.end(err)
		return nil, err
	}
	return codes, nil
}

// roundTrip registers a waiter under a free packet identifier, lets setID put it in p, writes
// p and waits for the acknowledgment of type ack.
func (c *Conn) roundTrip(ctx context.Context, p packets.ControlPacket, ack byte, setID func(uint16)) (packets.ControlPacket, error) {
	id, w, err := c.register(ack)
	if err != nil {
		return nil, err
	}
	defer c.release(id)
	setID(id)
	if err := c.write(p); err != nil {
		return nil, err
	}
	select {
	case reply := <-w.ch:
		return reply, nil
	case <-c.done:
		return nil, c.Err()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// register allocates a packet identifier (§2.3.1: non-zero, not in use) for a waiter.
func (c *Conn) register(ack byte) (uint16, *waiter, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, nil, c.err
	}
	for range 1 << 16 {
		c.nextID++
		if c.nextID == 0 {
			continue
		}
		if _, used := c.pending[c.nextID]; !used {
			w := &waiter{ack: ack, ch: make(chan packets.ControlPacket, 1)}
			c.pending[c.nextID] = w
			return c.nextID, w, nil
		}
	}
	return 0, nil, errors.New("mqtt: every packet identifier is in use")
}

func (c *Conn) release(id uint16) {
	c.mu.Lock()
	delete(c.pending, id) // a no-op once end set pending to nil
	c.mu.Unlock()
}

// read is the reading goroutine: it runs until the connection ends.
func (c *Conn) read() {
	for {
		p, err := readPacket(c.r)
		if err != nil {
			c.end(fmt.Errorf("mqtt: read: %w", eofReason(err)))
			return
		}
		if err := c.handle(p); err != nil {
			c.end(err)
			return
		}
	}
}

// handle acts on one packet from the server.
func (c *Conn) handle(p packets.ControlPacket) error {
	switch p := p.(type) {
	case *packets.PublishPacket:
		if c.cfg.OnMessage != nil {
			c.cfg.OnMessage(Message{Topic: p.TopicName, Payload: p.Payload, QoS: p.Qos, Retained: p.Retain})
		}
		switch p.Qos {
		case 1:
			ack := packets.NewControlPacket(packets.Puback).(*packets.PubackPacket)
			ack.MessageID = p.MessageID
			return c.write(ack)
		case 2:
			// Delivered on PUBLISH (§4.3.3, method A allows it); PUBREL is answered below.
			rec := packets.NewControlPacket(packets.Pubrec).(*packets.PubrecPacket)
			rec.MessageID = p.MessageID
			return c.write(rec)
		}
	case *packets.PubrelPacket:
		comp := packets.NewControlPacket(packets.Pubcomp).(*packets.PubcompPacket)
		comp.MessageID = p.MessageID
		return c.write(comp)
	case *packets.PubackPacket:
		return c.complete(p.MessageID, packets.Puback, p)
	case *packets.SubackPacket:
		return c.complete(p.MessageID, packets.Suback, p)
	case *packets.PingrespPacket:
		c.mu.Lock()
		c.pingSent = time.Time{}
		c.mu.Unlock()
	default:
		return fmt.Errorf("mqtt: unexpected %s packet from the server", packets.PacketNames[kindOf(p)])
	}
	return nil
}

// complete hands an acknowledgment to its waiter. One that nobody waits for any more (its
// caller gave up) is ignored; one of the wrong type is a protocol error.
func (c *Conn) complete(id uint16, kind byte, p packets.ControlPacket) error {
	c.mu.Lock()
	w, ok := c.pending[id]
	c.mu.Unlock()
	if !ok {
		return nil
	}
	if w.ack != kind {
		return fmt.Errorf("mqtt: %s for packet %d, which awaits a %s", packets.PacketNames[kind], id, packets.PacketNames[w.ack])
	}
	select {
	case w.ch <- p:
	default: // a duplicate
	}
	return nil
}

// keepAlive is the keep-alive goroutine: a PINGREQ when nothing was written for 3/4 of the
// interval, and the end of the connection when its PINGRESP is later than cfg.Timeout. It
// checks at a quarter of the interval (at most half the timeout), so a PINGREQ leaves before
// the interval is over, as §3.1.2.10 requires.
func (c *Conn) keepAlive() {
	ka := c.cfg.KeepAlive
	tick := time.NewTicker(max(min(ka/4, c.cfg.Timeout/2), time.Millisecond))
	defer tick.Stop()
	for {
		var now time.Time
		select {
		case <-c.done:
			return
		case now = <-tick.C:
		}
		c.mu.Lock()
		idle, ping := now.Sub(c.lastWrite), c.pingSent
		if ping.IsZero() && idle >= ka-ka/4 {
			c.pingSent = now
		}
		c.mu.Unlock()
		switch {
		case !ping.IsZero() && now.Sub(ping) >= c.cfg.Timeout:
			c.end(fmt.Errorf("%w within %s", ErrNoPingResponse, c.cfg.Timeout))
			return
		case ping.IsZero() && idle >= ka-ka/4:
			if c.write(packets.NewControlPacket(packets.Pingreq)) != nil {
				return
			}
		}
	}
}

// checkTopic checks a topic name to publish (§4.7.3): not empty, no wildcard.
func checkTopic(t string) error {
	if t == "" || strings.ContainsAny(t, "+#") {
		return fmt.Errorf("invalid topic name %q", t)
	}
	return nil
}

// eofReason names the server closing the connection, the common case of a read error.
func eofReason(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("the server closed the connection: %w", err)
	}
	return err
}
