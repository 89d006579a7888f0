package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/keystore"
	"github.com/hearth-pki/hearth/agent/internal/log"
	"github.com/hearth-pki/hearth/agent/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"mqtts://hub.local:8883", "mqtts://hub.local:8883", true},
		{"mqtts://hub.local", "mqtts://hub.local:8883", true},
		{"ssl://10.0.0.2:18883", "mqtts://10.0.0.2:18883", true},
		{"mqtts://[fd00::1]:8883", "mqtts://[fd00::1]:8883", true},
		{"mqtt://hub.local:1883", "", false},
		{"tcp://hub.local:1883", "", false},
		{"mqtts://user:pw@hub.local:8883", "", false},
		{"mqtts://hub.local:8883/path", "", false},
		{"mqtts://", "", false},
		{"hub.local:8883", "", false},
	} {
		u, err := ParseURL(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseURL(%q) error = %v, want ok %t", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && u.String() != tc.want {
			t.Errorf("ParseURL(%q) = %q, want %q", tc.in, u, tc.want)
		}
	}
}

type fixture struct {
	broker *testkit.Broker
	hub    *testkit.Responder
	tls    *tls.Config
}

func newFixture(t *testing.T) *fixture {
	ca := testkit.NewCA(t, "Test")
	b := testkit.StartBroker(t, ca, false)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Root)
	return &fixture{broker: b, hub: testkit.StartResponder(t, b), tls: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
}

func (f *fixture) dial(t *testing.T, cfg Config) *Session {
	t.Helper()
	cfg.URL, cfg.TLS, cfg.Logger = f.broker.URL, f.tls, log.New(io.Discard, log.Text, log.LevelInfo)
	if cfg.DeviceID == "" {
		cfg.DeviceID = "dev-1"
	}
	s, err := Dial(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Dial() = %v", err)
	}
	t.Cleanup(s.Drop)
	return s
}

func newCSR(t *testing.T, id, reqID string) *protocol.CSR {
	key, err := keystore.GenerateKey(protocol.KeyP256)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := keystore.NewCSR(key, id)
	if err != nil {
		t.Fatal(err)
	}
	return &protocol.CSR{V: protocol.Version, RequestID: reqID, CSR: string(pem), Reason: protocol.ReasonEnroll, Time: time.Now()}
}

func TestRequestCorrelation(t *testing.T) {
	f := newFixture(t)
	s := f.dial(t, Config{Mode: ModeDevice, Version: "test"})
	if st := <-f.hub.States; st.State != protocol.Online || st.AgentVersion != "test" {
		t.Errorf("state on connect = %+v, want online test", st)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	reply, err := s.Request(ctx, newCSR(t, "dev-1", "req-1"))
	if err != nil || reply.RequestID != "req-1" || reply.Chain == "" {
		t.Fatalf("Request(req-1) = %+v, %v; want the chain for req-1", reply, err)
	}
	ack, err := s.Commit(ctx, &protocol.Commit{V: protocol.Version, RequestID: "req-1", Serial: reply.Serial, Outcome: protocol.OutcomeCommitted, Time: time.Now()})
	if err != nil || ack.Serial != reply.Serial {
		t.Fatalf("Commit(req-1) = %+v, %v; want an ack of %s", ack, err, reply.Serial)
	}
}

func TestRequestNoReply(t *testing.T) {
	f := newFixture(t)
	f.hub.SetBehaviour(testkit.NoReply)
	s := f.dial(t, Config{Mode: ModeDevice})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := s.Request(ctx, newCSR(t, "dev-1", "req-1")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Request() with no reply = %v, want DeadlineExceeded", err)
	}
}

func TestRequestTable(t *testing.T) {
	f := newFixture(t)
	f.hub.SetBehaviour(testkit.NoReply)
	s := f.dial(t, Config{Mode: ModeDevice})
	ctx, cancel := context.WithCancel(t.Context())
	errs := make(chan error, MaxWaiters)
	for i := range MaxWaiters {
		go func() {
			_, err := s.Request(ctx, newCSR(t, "dev-1", "req-"+string(rune('a'+i))))
			errs <- err
		}()
	}
	// Wait until the table is full, then check that one more is refused.
	testkit.Eventually(t, 30*time.Second, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.certs) == MaxWaiters
	}, "the waiter table never filled up to %d", MaxWaiters)
	if _, err := s.Request(ctx, newCSR(t, "dev-1", "req-a")); !errors.Is(err, ErrDuplicateRequest) {
		t.Errorf("Request(duplicate id) = %v, want ErrDuplicateRequest", err)
	}
	if _, err := s.Request(ctx, newCSR(t, "dev-1", "req-z")); !errors.Is(err, ErrTooManyRequests) {
		t.Errorf("Request(one too many) = %v, want ErrTooManyRequests", err)
	}
	cancel()
	for range MaxWaiters {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Errorf("pending Request() after cancel = %v, want Canceled", err)
		}
	}
}

func TestConnectionLost(t *testing.T) {
	f := newFixture(t)
	f.hub.SetBehaviour(testkit.DropOnce)
	s := f.dial(t, Config{Mode: ModeDevice})
	_, err := s.Request(t.Context(), newCSR(t, "dev-1", "req-1"))
	if !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("Request() when kicked off = %v, want ErrConnectionLost", err)
	}
	select {
	case <-s.Lost():
	default:
		t.Error("Lost() not closed after the connection was lost")
	}
}

// TestSendAfterConnectionLost sends on a session whose connection is gone: paho fails the
// publish at once, and the caller must see ErrConnectionLost (to commit again on a new
// session), not paho's error, whichever of the two paho reports first.
func TestSendAfterConnectionLost(t *testing.T) {
	f := newFixture(t)
	f.hub.SetBehaviour(testkit.DropOnce)
	s := f.dial(t, Config{Mode: ModeDevice})
	if _, err := s.Request(t.Context(), newCSR(t, "dev-1", "req-1")); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("Request() when kicked off = %v, want ErrConnectionLost", err)
	}
	for i := range 20 {
		c := &protocol.Commit{V: protocol.Version, RequestID: fmt.Sprintf("req-%d", i), Serial: "01", Outcome: protocol.OutcomeCommitted, Time: time.Now()}
		if _, err := s.Commit(t.Context(), c); !errors.Is(err, ErrConnectionLost) {
			t.Fatalf("Commit() on a lost connection = %v, want ErrConnectionLost", err)
		}
	}
}

func TestInboxNeverBlocks(t *testing.T) {
	f := newFixture(t)
	s := f.dial(t, Config{Mode: ModeDevice, InboxSize: 1})
	for i := range 5 {
		f.hub.Command("dev-1", "cmd-"+string(rune('a'+i)), protocol.ActionReport)
	}
	// Handlers dropped what did not fit instead of blocking paho: requests still work.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := s.Request(ctx, newCSR(t, "dev-1", "req-1")); err != nil {
		t.Fatalf("Request() after a flood of commands = %v", err)
	}
	if n := len(s.Inbox()); n != 1 {
		t.Errorf("inbox holds %d messages, want its capacity 1", n)
	}
	in := <-s.Inbox()
	if in.Command == nil || in.Retained {
		t.Errorf("inbox message = %+v, want a live command", in)
	}
}

func TestDialErrors(t *testing.T) {
	f := newFixture(t)
	other := testkit.NewCA(t, "Other")
	pool := x509.NewCertPool()
	pool.AddCert(other.Root)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"untrusted server", Config{URL: f.broker.URL, DeviceID: "dev-1", TLS: &tls.Config{RootCAs: pool}}},
		{"nothing listening", Config{URL: "mqtts://127.0.0.1:1", DeviceID: "dev-1", TLS: f.tls}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = log.New(io.Discard, log.Text, log.LevelInfo)
			_, err := Dial(t.Context(), tc.cfg)
			var de *DialError
			if !errors.As(err, &de) {
				t.Errorf("Dial(%s) = %v, want a *DialError", tc.name, err)
			}
		})
	}
}

// TestDialAlertIsARefusal: a hub that answers the TLS handshake with an alert (as for a
// certificate it does not trust) is told apart from one that cannot be reached.
func TestDialAlertIsARefusal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			_, _ = c.Read(buf)
			_, _ = c.Write([]byte{21, 3, 3, 0, 2, 2, 42}) // fatal bad_certificate
			c.Close()
		}
	}()
	cfg := Config{URL: "mqtts://" + ln.Addr().String(), DeviceID: "dev-1", TLS: &tls.Config{MinVersion: tls.VersionTLS12}, Mode: ModeDevice}
	_, err = Dial(t.Context(), cfg)
	var de *DialError
	if !errors.As(err, &de) || !de.Alert {
		t.Errorf("Dial to a server answering an alert = %v, want a DialError with Alert", err)
	}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln2.Addr().String()
	ln2.Close() // nothing listens there now
	cfg.URL = "mqtts://" + addr
	_, err = Dial(t.Context(), cfg)
	if !errors.As(err, &de) || de.Alert {
		t.Errorf("Dial to a closed port = %v, want a DialError without Alert", err)
	}
}
