package fleet

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/hearth-pki/hearth/agent/device"
	"github.com/hearth-pki/hearth/agent/internal/hub"
	"github.com/hearth-pki/hearth/protocol"
)

// opTokenCreate is the bridge operation that mints an enrollment token (protocol/README.md,
// "Bridge API").
const opTokenCreate = "token/create"

// bridge is an admin session on the hub's broker that mints enrollment tokens through the
// bridge API: requests on bridge/request/token/create, answers matched by transaction on
// bridge/response/token/create. Its methods are safe for concurrent use.
type bridge struct {
	client  mqtt.Client
	topics  protocol.Topics
	timeout time.Duration
	prefix  string // of this session's transactions: other admins see the same responses
	seq     atomic.Uint64

	mu      sync.Mutex
	waiting map[string]chan protocol.BridgeResponse
}

// dialBridge opens the admin session, verifying the hub against ca.
func dialBridge(ctx context.Context, cfg Config) (*bridge, error) {
	u, err := hub.ParseURL(cfg.HubURL)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range cfg.CA {
		pool.AddCert(c)
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	b := &bridge{topics: cfg.Topics, timeout: cfg.Timeout, prefix: "fleet-" + hex.EncodeToString(suffix) + "-",
		waiting: map[string]chan protocol.BridgeResponse{}}
	opts := mqtt.NewClientOptions().AddBroker("ssl://" + u.Host).SetProtocolVersion(4).
		SetClientID("hearth-fleet-" + hex.EncodeToString(suffix)).SetCleanSession(true).
		SetUsername(cfg.Admin.User).SetPassword(cfg.Admin.Password).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(false).
		SetConnectTimeout(cfg.Timeout).SetWriteTimeout(cfg.Timeout).
		SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}).
		SetDefaultPublishHandler(b.route)
	b.client = mqtt.NewClient(opts)
	if err := wait(ctx, b.client.Connect(), cfg.Timeout); err != nil {
		return nil, fmt.Errorf("fleet: admin login to the hub as %q: %w", cfg.Admin.User, err)
	}
	if err := wait(ctx, b.client.Subscribe(b.topics.BridgeResponse(opTokenCreate), 1, nil), cfg.Timeout); err != nil {
		b.client.Disconnect(0)
		return nil, fmt.Errorf("fleet: subscribe to the bridge responses: %w", err)
	}
	return b, nil
}

// close ends the session.
func (b *bridge) close() { b.client.Disconnect(250) }

// route hands a bridge response to the request waiting for its transaction.
func (b *bridge) route(_ mqtt.Client, m mqtt.Message) {
	var r protocol.BridgeResponse
	if err := json.Unmarshal(m.Payload(), &r); err != nil {
		return
	}
	b.mu.Lock()
	ch := b.waiting[r.Transaction]
	delete(b.waiting, r.Transaction)
	b.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

// tokenCreated is the part of a token/create answer the fleet needs.
type tokenCreated struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

// createToken mints an enrollment token for device id. A refusal is a *device.HubError with
// the response's code, so that it is counted like the hub's other refusals.
func (b *bridge) createToken(ctx context.Context, id string) (string, error) {
	tx := b.prefix + strconv.FormatUint(b.seq.Add(1), 10)
	ch := make(chan protocol.BridgeResponse, 1)
	b.mu.Lock()
	b.waiting[tx] = ch
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.waiting, tx)
		b.mu.Unlock()
	}()
	req, err := json.Marshal(protocol.TokenRequest{Transaction: tx, ID: id, Name: id, Family: "fleet"})
	if err != nil {
		return "", err
	}
	if err := wait(ctx, b.client.Publish(b.topics.BridgeRequest(opTokenCreate), 1, false, req), b.timeout); err != nil {
		return "", fmt.Errorf("fleet: token/create for %s: %w", id, err)
	}
	timer := time.NewTimer(b.timeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.Status != "ok" {
			return "", fmt.Errorf("fleet: token/create for %s: %w", id, &device.HubError{Code: string(r.Code), Message: r.Error})
		}
		var tok tokenCreated
		if err := json.Unmarshal(r.Data, &tok); err != nil || tok.Token == "" {
			return "", fmt.Errorf("fleet: token/create for %s: answer without a token (%v)", id, err)
		}
		return tok.Token, nil
	case <-timer.C:
		return "", fmt.Errorf("fleet: token/create for %s: %w within %s", id, device.ErrNoReply, b.timeout)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// wait waits for a paho token, ctx or timeout.
func wait(ctx context.Context, tok mqtt.Token, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return errors.New("no answer from the hub within " + timeout.String())
	}
}
