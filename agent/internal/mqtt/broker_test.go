package mqtt

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/testkit"
)

// brokerDial connects to a real mosquitto (internal/testkit) over TLS, returning the
// connection and its transport, which the test may close to lose the connection abruptly.
func brokerDial(t *testing.T, b *testkit.Broker, cfg Config) (*Conn, net.Conn) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(b.CA.Root)
	d := tls.Dialer{Config: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	nc, err := d.DialContext(t.Context(), "tcp", b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Connect(t.Context(), nc, cfg)
	if err != nil {
		t.Fatalf("Connect(%s) = %v", cfg.ClientID, err)
	}
	t.Cleanup(c.Disconnect)
	return c, nc
}

// TestBroker runs the client against mosquitto: QoS 1 both ways, a payload near the hub's
// largest, retained messages flagged as such, and the Will published on an abrupt loss only.
func TestBroker(t *testing.T) {
	b := testkit.StartBroker(t, testkit.NewCA(t, "Test"), false)
	msgs := make(chan Message, 16)
	sub, _ := brokerDial(t, b, Config{ClientID: "watcher", OnMessage: func(m Message) { msgs <- m }})
	codes, err := sub.Subscribe(t.Context(), Subscription{"t/#", 1})
	if err != nil || !bytes.Equal(codes, []byte{1}) {
		t.Fatalf("Subscribe(t/#) = %v, %v; want [1]", codes, err)
	}
	next := func() Message {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("no message within 10s")
			return Message{}
		}
	}

	pub, _ := brokerDial(t, b, Config{ClientID: "publisher"})
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16)
	if err := pub.Publish(t.Context(), Message{Topic: "t/big", Payload: big, QoS: 1}); err != nil {
		t.Fatalf("Publish(64 KiB) = %v", err)
	}
	if m := next(); m.Topic != "t/big" || !bytes.Equal(m.Payload, big) || m.QoS != 1 || m.Retained {
		t.Errorf("received %q (%d bytes, QoS %d, retained %t), want t/big, 64 KiB, QoS 1, live", m.Topic, len(m.Payload), m.QoS, m.Retained)
	}

	// A retained message reaches a new subscriber flagged as retained.
	if err := pub.Publish(t.Context(), Message{Topic: "r/ca", Payload: []byte("pem"), QoS: 1, Retained: true}); err != nil {
		t.Fatal(err)
	}
	late := make(chan Message, 1)
	lc, _ := brokerDial(t, b, Config{ClientID: "late", OnMessage: func(m Message) { late <- m }})
	if _, err := lc.Subscribe(t.Context(), Subscription{"r/ca", 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-late:
		if string(m.Payload) != "pem" || !m.Retained {
			t.Errorf("retained copy = %q retained %t, want pem, retained", m.Payload, m.Retained)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no retained message within 10s")
	}

	// The Will: published when the transport just closes, not after DISCONNECT.
	will := func(id string) Config {
		return Config{ClientID: id, Will: &Message{Topic: "t/state/" + id, Payload: []byte("offline"), QoS: 1}}
	}
	clean, _ := brokerDial(t, b, will("clean"))
	clean.Disconnect()
	abrupt, nc := brokerDial(t, b, will("abrupt"))
	nc.Close()
	<-abrupt.Done()
	if m := next(); m.Topic != "t/state/abrupt" || string(m.Payload) != "offline" {
		t.Errorf("after an abrupt loss received %s %q, want the Will of abrupt only", m.Topic, m.Payload)
	}
	if err := abrupt.Err(); err == nil {
		t.Error("Err() after the transport closed = nil")
	}
}
