package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// allowAll admits every certificate the hub CA signed.
type allowAll struct{}

func (allowAll) Certificate(context.Context, string, string) error { return nil }
func (allowAll) Token(context.Context, string, string) error       { return nil }
func (allowAll) Admin(context.Context, string, string) bool        { return false }

// TestSessionsAgainstTheBroker runs a wave of hearth-bench sessions against the hub's real
// broker over mutual TLS, with identities laid out as hearth-fleet --keys-dir leaves them:
// every device comes online, subscribes to its command topic and publishes its state once,
// and goes offline when hearth-bench drops the session.
func TestSessionsAgainstTheBroker(t *testing.T) {
	ca := testkit.NewCA(t, "bench")
	srv := ca.Server(t, "127.0.0.1")
	topics, _ := protocol.NewTopics(protocol.DefaultPrefix)

	var mu sync.Mutex
	states := map[string]int{}
	subscribed := make(chan string, 16)
	handle := func(_ context.Context, from broker.Identity, tp protocol.Topic, _ []byte) {
		if tp.Kind == protocol.KindState {
			mu.Lock()
			states[from.DeviceID]++
			mu.Unlock()
		}
	}
	b, err := broker.New(broker.Config{
		Addr: "127.0.0.1:0", Topics: topics, Sessions: observer{subscribed},
		TLS: &tls.Config{Certificates: []tls.Certificate{srv.TLS}, ClientCAs: ca.Pool()},
	}, allowAll{}, handle, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	keys := t.TempDir()
	ids := []string{"dev-a", "dev-b", "dev-c"}
	for _, id := range ids {
		leaf := ca.Client(t, id, &url.URL{Scheme: "urn", Opaque: "hearth:device:" + id})
		chain, _ := os.ReadFile(leaf.CertFile)
		key, _ := os.ReadFile(leaf.KeyFile)
		os.MkdirAll(filepath.Join(keys, id), 0o700)
		os.WriteFile(filepath.Join(keys, id, "current.pem"), append(chain, key...), 0o600)
	}
	devs, err := loadIdentities(keys, len(ids))
	if err != nil {
		t.Fatalf("loadIdentities = %v", err)
	}
	// Each session is held (read, pinged) from the moment it is open, as hearth-bench does.
	var wg sync.WaitGroup
	var opened sync.Map
	held, _, failed, errs := wave(ctx, b.Addr().String(), ca.Pool(), topics, devs, 2, 10*time.Second, func(s *session) {
		opened.Store(s, true)
		wg.Go(func() {
			// Closed here: net.ErrClosed, or EOF when the broker's answer to the
			// close_notify arrives first.
			if err := s.hold(); !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
				t.Errorf("hold() = %v, want the end of the session closed here", err)
			}
		})
	})
	if failed != 0 {
		t.Fatalf("wave: %d failed: %v", failed, errs)
	}
	for range ids {
		<-subscribed
	}
	mu.Lock()
	for _, id := range ids {
		if states[id] != 1 {
			t.Errorf("device %s published its state %d times, want once", id, states[id])
		}
	}
	mu.Unlock()
	for i, s := range held {
		if _, ok := opened.Load(s); !ok {
			t.Errorf("session %d was not handed to opened", i)
		}
	}
	for _, id := range ids {
		if !b.Online(id) {
			t.Errorf("Online(%q) = false while hearth-bench holds its session", id)
		}
	}
	for _, s := range held {
		_ = s.conn.Close()
	}
	wg.Wait()
	testkit.Eventually(t, 10*time.Second, func() bool { return !b.Online("dev-a") }, "dev-a still online after its session closed")
}

// observer forwards each device's subscription to its command topic.
type observer struct{ subscribed chan<- string }

func (observer) SessionUp(broker.Identity)       {}
func (o observer) Subscribed(id broker.Identity) { o.subscribed <- id.DeviceID }
func (observer) SessionDown(broker.Identity)     {}
