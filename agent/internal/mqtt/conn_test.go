package mqtt

import (
	"bytes"
	"context"
	"errors"
	"net"
	"reflect"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// server is the far end of a net.Pipe, playing the broker with paho's codec: a goroutine
// reads every packet the client sends into got, so the client's writes never wait for the test.
type server struct {
	t    *testing.T
	conn net.Conn
	got  chan packets.ControlPacket
}

// pipe returns the client's end of a new pipe and the server at the other end. Tests run in a
// synctest bubble: net.Pipe blocks durably, so the keep-alive and the timeouts run on fake time.
func pipe(t *testing.T) (net.Conn, *server) {
	t.Helper()
	c, s := net.Pipe()
	srv := &server{t: t, conn: s, got: make(chan packets.ControlPacket, 64)}
	go func() {
		defer close(srv.got)
		for {
			p, err := packets.ReadPacket(s)
			if err != nil {
				return
			}
			srv.got <- p
		}
	}()
	t.Cleanup(func() { s.Close() })
	return c, srv
}

// next returns the next packet the client sent, or nil if the client closed the connection.
func (s *server) next() packets.ControlPacket {
	s.t.Helper()
	select {
	case p := <-s.got:
		return p
	case <-time.After(time.Hour):
		s.t.Fatal("the client sent nothing within an hour")
		return nil
	}
}

// send writes p to the client.
func (s *server) send(p packets.ControlPacket) {
	s.t.Helper()
	if err := p.Write(s.conn); err != nil {
		s.t.Errorf("server write %s: %v", p, err)
	}
}

// accept answers the client's CONNECT with CONNACK rc and returns the CONNECT. It may run on
// its own goroutine, so it reports a failure with Errorf.
func (s *server) accept(rc byte) *packets.ConnectPacket {
	var p *packets.ConnectPacket
	select {
	case got := <-s.got:
		p, _ = got.(*packets.ConnectPacket)
	case <-time.After(time.Hour):
	}
	if p == nil {
		s.t.Errorf("the client's first packet is not CONNECT")
		return nil
	}
	ack := packets.NewControlPacket(packets.Connack).(*packets.ConnackPacket)
	ack.ReturnCode = rc
	if err := ack.Write(s.conn); err != nil {
		s.t.Errorf("server write CONNACK: %v", err)
	}
	return p
}

// dial connects a client with cfg to a server that accepts it.
func dial(t *testing.T, cfg Config) (*Conn, *server) {
	t.Helper()
	nc, srv := pipe(t)
	go srv.accept(packets.Accepted)
	if cfg.ClientID == "" {
		cfg.ClientID = "dev-1:0a0b0c0d"
	}
	c, err := Connect(t.Context(), nc, cfg)
	if err != nil {
		t.Fatalf("Connect() = %v", err)
	}
	t.Cleanup(c.Disconnect)
	return c, srv
}

func TestConnectPacket(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want packets.ConnectPacket
	}{
		{"defaults", Config{ClientID: "dev-1:01"}, packets.ConnectPacket{
			ProtocolName: "MQTT", ProtocolVersion: 4, CleanSession: true, Keepalive: 60, ClientIdentifier: "dev-1:01",
		}},
		{"credentials", Config{ClientID: "dev-1:02", Username: "dev-1", Password: "hst_token", KeepAlive: 1500 * time.Millisecond}, packets.ConnectPacket{
			ProtocolName: "MQTT", ProtocolVersion: 4, CleanSession: true, Keepalive: 2, ClientIdentifier: "dev-1:02",
			UsernameFlag: true, Username: "dev-1", PasswordFlag: true, Password: []byte("hst_token"),
		}},
		{"will", Config{ClientID: "dev-1:03", Will: &Message{Topic: "hearth/v1/dev/dev-1/state", Payload: []byte(`{"state":"offline"}`), QoS: 1, Retained: true}}, packets.ConnectPacket{
			ProtocolName: "MQTT", ProtocolVersion: 4, CleanSession: true, Keepalive: 60, ClientIdentifier: "dev-1:03",
			WillFlag: true, WillQos: 1, WillRetain: true, WillTopic: "hearth/v1/dev/dev-1/state", WillMessage: []byte(`{"state":"offline"}`),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				nc, srv := pipe(t)
				got := make(chan *packets.ConnectPacket, 1)
				go func() { got <- srv.accept(packets.Accepted) }()
				c, err := Connect(t.Context(), nc, tc.cfg)
				if err != nil {
					t.Fatalf("Connect() = %v", err)
				}
				defer c.Disconnect()
				p := <-got
				if p == nil {
					return // accept reported it
				}
				p.FixedHeader = packets.FixedHeader{}
				if !reflect.DeepEqual(&tc.want, p) {
					t.Errorf("CONNECT = %+v, want %+v", p, &tc.want)
				}
			})
		})
	}
}

func TestConnectInvalidConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no client id", Config{}},
		{"password without username", Config{ClientID: "a", Password: "p"}},
		{"keep-alive too long", Config{ClientID: "a", KeepAlive: 65536 * time.Second}},
		{"will QoS 2", Config{ClientID: "a", Will: &Message{Topic: "t", QoS: 2}}},
		{"will on a wildcard", Config{ClientID: "a", Will: &Message{Topic: "t/#"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, _ := net.Pipe()
			if c, err := Connect(t.Context(), nc, tc.cfg); err == nil {
				c.Disconnect()
				t.Errorf("Connect(%s) = nil error, want one", tc.name)
			}
		})
	}
}

func TestConnectRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nc, srv := pipe(t)
		go srv.accept(packets.ErrRefusedNotAuthorised)
		_, err := Connect(t.Context(), nc, Config{ClientID: "dev-1:01"})
		var refused *RefusedError
		if !errors.As(err, &refused) || refused.Code != packets.ErrRefusedNotAuthorised {
			t.Fatalf("Connect() = %v, want a *RefusedError with code 5", err)
		}
		if want := "mqtt: connection refused: not authorised (code 5)"; err.Error() != want {
			t.Errorf("Connect() error = %q, want %q", err, want)
		}
		if p := srv.next(); p != nil {
			t.Errorf("after a refusal the client sent %s, want the connection closed", p)
		}
	})
}

func TestConnectNoAnswer(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			nc, srv := pipe(t)
			start := time.Now()
			_, err := Connect(t.Context(), nc, Config{ClientID: "dev-1:01", Timeout: 5 * time.Second})
			if err == nil || time.Since(start) != 5*time.Second {
				t.Errorf("Connect() to a silent server = %v after %s, want an error after 5s", err, time.Since(start))
			}
			srv.next() // the CONNECT
			if p := srv.next(); p != nil {
				t.Errorf("after the timeout the client sent %s, want the connection closed", p)
			}
		})
	})
	t.Run("context", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			nc, _ := pipe(t)
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			if _, err := Connect(ctx, nc, Config{ClientID: "dev-1:01"}); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Connect() with a context ending first = %v, want DeadlineExceeded", err)
			}
		})
	})
}

func TestPublish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, srv := dial(t, Config{})
		errs := make(chan error, 2)
		go func() { errs <- c.Publish(t.Context(), Message{Topic: "a", Payload: []byte("1"), QoS: 1}) }()
		first := srv.next().(*packets.PublishPacket)
		go func() {
			errs <- c.Publish(t.Context(), Message{Topic: "b", Payload: []byte("2"), QoS: 1, Retained: true})
		}()
		second := srv.next().(*packets.PublishPacket)
		if first.MessageID == second.MessageID || first.MessageID == 0 || second.MessageID == 0 {
			t.Fatalf("packet identifiers %d and %d, want two distinct non-zero ones", first.MessageID, second.MessageID)
		}
		if second.TopicName != "b" || string(second.Payload) != "2" || !second.Retain || second.Qos != 1 {
			t.Errorf("second PUBLISH = %s, want topic b, payload 2, QoS 1, retained", second)
		}
		// Acknowledged out of order: each Publish returns on its own PUBACK.
		ack := packets.NewControlPacket(packets.Puback).(*packets.PubackPacket)
		ack.MessageID = second.MessageID
		srv.send(ack)
		if err := <-errs; err != nil {
			t.Errorf("Publish(b) = %v", err)
		}
		synctest.Wait()
		select {
		case err := <-errs:
			t.Fatalf("Publish(a) returned %v before its PUBACK", err)
		default:
		}
		ack.MessageID = first.MessageID
		srv.send(ack)
		if err := <-errs; err != nil {
			t.Errorf("Publish(a) = %v", err)
		}
		if err := c.Publish(t.Context(), Message{Topic: "c"}); err != nil {
			t.Errorf("Publish(QoS 0) = %v", err)
		}
		if p := srv.next().(*packets.PublishPacket); p.Qos != 0 || p.TopicName != "c" {
			t.Errorf("QoS 0 PUBLISH = %s", p)
		}
		for _, m := range []Message{{Topic: ""}, {Topic: "a/+"}, {Topic: "a", QoS: 2}} {
			if err := c.Publish(t.Context(), m); err == nil {
				t.Errorf("Publish(%+v) = nil, want an error", m)
			}
		}
	})
}

func TestPublishEnds(t *testing.T) {
	t.Run("context", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, srv := dial(t, Config{})
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			if err := c.Publish(ctx, Message{Topic: "a", QoS: 1}); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Publish() without a PUBACK = %v, want DeadlineExceeded", err)
			}
			// A late PUBACK is ignored; the connection stays up.
			ack := packets.NewControlPacket(packets.Puback).(*packets.PubackPacket)
			ack.MessageID = srv.next().Details().MessageID
			srv.send(ack)
			synctest.Wait()
			if err := c.Err(); err != nil {
				t.Errorf("Err() after a late PUBACK = %v, want nil", err)
			}
		})
	})
	t.Run("connection lost", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c, srv := dial(t, Config{})
			errs := make(chan error, 1)
			go func() { errs <- c.Publish(t.Context(), Message{Topic: "a", QoS: 1}) }()
			srv.next()
			srv.conn.Close()
			err := <-errs
			if err == nil || err != c.Err() {
				t.Errorf("Publish() when the server hangs up = %v, want Err() = %v", err, c.Err())
			}
			<-c.Done()
			if err := c.Publish(t.Context(), Message{Topic: "a", QoS: 1}); err == nil {
				t.Error("Publish() after the end = nil, want an error")
			}
		})
	})
}

func TestSubscribe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, srv := dial(t, Config{})
		type result struct {
			codes []byte
			err   error
		}
		res := make(chan result, 1)
		go func() {
			codes, err := c.Subscribe(t.Context(), Subscription{"a/+", 1}, Subscription{"b/#", 0})
			res <- result{codes, err}
		}()
		sub := srv.next().(*packets.SubscribePacket)
		if want := []string{"a/+", "b/#"}; !slices.Equal(sub.Topics, want) {
			t.Errorf("SUBSCRIBE topics = %q, want %q", sub.Topics, want)
		}
		if want := []byte{1, 0}; !bytes.Equal(sub.Qoss, want) {
			t.Errorf("SUBSCRIBE QoS = %v, want %v", sub.Qoss, want)
		}
		ack := packets.NewControlPacket(packets.Suback).(*packets.SubackPacket)
		ack.MessageID, ack.ReturnCodes = sub.MessageID, []byte{1, SubackFailure}
		srv.send(ack)
		if r := <-res; r.err != nil || !bytes.Equal(r.codes, []byte{1, SubackFailure}) {
			t.Errorf("Subscribe() = %v, %v; want [1 128]", r.codes, r.err)
		}

		// A SUBACK that does not answer every filter is a protocol error.
		go func() {
			codes, err := c.Subscribe(t.Context(), Subscription{"c", 1})
			res <- result{codes, err}
		}()
		sub = srv.next().(*packets.SubscribePacket)
		ack.MessageID, ack.ReturnCodes = sub.MessageID, []byte{1, 1}
		srv.send(ack)
		if r := <-res; r.err == nil {
			t.Errorf("Subscribe() answered with two codes for one filter = %v, want an error", r.codes)
		}
		<-c.Done()
	})
}

func TestReceive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []Message
		c, srv := dial(t, Config{OnMessage: func(m Message) { got = append(got, m) }})
		publish := func(topic, payload string, qos byte, retain bool, id uint16) {
			p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
			p.TopicName, p.Payload, p.Qos, p.Retain, p.MessageID = topic, []byte(payload), qos, retain, id
			srv.send(p)
		}
		publish("a", "zero", 0, false, 0)
		publish("b", "one", 1, true, 7)
		if ack, ok := srv.next().(*packets.PubackPacket); !ok || ack.MessageID != 7 {
			t.Fatalf("answer to a QoS 1 PUBLISH = %v, want PUBACK 7", ack)
		}
		publish("c", "", 1, false, 8) // an empty payload: a retained message cleared
		if ack, ok := srv.next().(*packets.PubackPacket); !ok || ack.MessageID != 8 {
			t.Fatalf("answer to an empty QoS 1 PUBLISH = %v, want PUBACK 8", ack)
		}
		publish("d", "two", 2, false, 9)
		if rec, ok := srv.next().(*packets.PubrecPacket); !ok || rec.MessageID != 9 {
			t.Fatalf("answer to a QoS 2 PUBLISH = %v, want PUBREC 9", rec)
		}
		rel := packets.NewControlPacket(packets.Pubrel).(*packets.PubrelPacket)
		rel.MessageID = 9
		srv.send(rel)
		if comp, ok := srv.next().(*packets.PubcompPacket); !ok || comp.MessageID != 9 {
			t.Fatalf("answer to PUBREL = %v, want PUBCOMP 9", comp)
		}
		want := []Message{
			{Topic: "a", Payload: []byte("zero")},
			{Topic: "b", Payload: []byte("one"), QoS: 1, Retained: true},
			{Topic: "c", Payload: []byte{}, QoS: 1},
			{Topic: "d", Payload: []byte("two"), QoS: 2},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("messages = %+v, want %+v", got, want)
		}
		if err := c.Err(); err != nil {
			t.Errorf("Err() = %v, want nil", err)
		}
	})
}

func TestKeepAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, srv := dial(t, Config{KeepAlive: 60 * time.Second, Timeout: 20 * time.Second})
		start := time.Now()
		// Idle: a PINGREQ within the keep-alive interval, answered, twice.
		for i := range 2 {
			if _, ok := srv.next().(*packets.PingreqPacket); !ok {
				t.Fatalf("ping %d: the client sent something else", i)
			}
			if d := time.Since(start); d < 45*time.Second || d >= 60*time.Second {
				t.Errorf("ping %d came %s after the last packet, want within [45s, 60s)", i, d)
			}
			start = time.Now()
			srv.send(packets.NewControlPacket(packets.Pingresp))
		}
		// Unanswered: the connection ends once the timeout passed.
		srv.next()
		pinged := time.Now()
		<-c.Done()
		if d := time.Since(pinged); d < 20*time.Second || d > 30*time.Second {
			t.Errorf("the connection ended %s after an unanswered PINGREQ, want 20s to 30s", d)
		}
		if err := c.Err(); !errors.Is(err, ErrNoPingResponse) {
			t.Errorf("Err() = %v, want ErrNoPingResponse", err)
		}
	})
}

func TestProtocolErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"oversized", []byte{packets.Publish << 4, 0x81, 0x80, 0x40}}, // 1 MiB + 1, nothing follows
		{"length longer than four bytes", []byte{packets.Publish << 4, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"CONNECT from the server", []byte{packets.Connect << 4, 0}},
		{"PUBREC for nothing sent at QoS 2", []byte{packets.Pubrec << 4, 2, 0, 1}},
		{"second CONNACK", []byte{packets.Connack << 4, 2, 0, 0}},
		{"QoS 3", []byte{packets.Publish<<4 | 6, 3, 0, 1, 'a'}},
		{"reserved type", []byte{15 << 4, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, srv := dial(t, Config{})
				if _, err := srv.conn.Write(tc.raw); err != nil {
					t.Fatal(err)
				}
				<-c.Done()
				if err := c.Err(); err == nil || errors.Is(err, ErrClosed) {
					t.Errorf("Err() after %s = %v, want a protocol error", tc.name, err)
				}
			})
		})
	}
}

func TestSubackForPublish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, srv := dial(t, Config{})
		errs := make(chan error, 1)
		go func() { errs <- c.Publish(t.Context(), Message{Topic: "a", QoS: 1}) }()
		ack := packets.NewControlPacket(packets.Suback).(*packets.SubackPacket)
		ack.MessageID, ack.ReturnCodes = srv.next().Details().MessageID, []byte{1}
		srv.send(ack)
		if err := <-errs; err == nil {
			t.Error("Publish() answered by a SUBACK = nil, want an error")
		}
	})
}

func TestDisconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, srv := dial(t, Config{})
		c.Disconnect()
		if _, ok := srv.next().(*packets.DisconnectPacket); !ok {
			t.Error("Disconnect() sent no DISCONNECT")
		}
		if p := srv.next(); p != nil {
			t.Errorf("after DISCONNECT the client sent %s, want the connection closed", p)
		}
		if err := c.Err(); !errors.Is(err, ErrClosed) {
			t.Errorf("Err() after Disconnect = %v, want ErrClosed", err)
		}
		c.Disconnect() // again: no effect
		if err := c.Publish(t.Context(), Message{Topic: "a", QoS: 1}); !errors.Is(err, ErrClosed) {
			t.Errorf("Publish() after Disconnect = %v, want ErrClosed", err)
		}
	})
}
