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

// The hub's broker limits every client's publishes (20 a second, bursts of 50) and drops the
// excess without telling the client. The bridge therefore paces each admin session below
// that rate, opens one session per adminsPerWorkers enrolling workers, and sends a request
// again (with a new transaction) when no answer comes within resendAfter: a dropped request
// was never handled, and a token minted for a lost answer just expires unused.
const (
	adminRate        = 15 // requests per second per admin session
	adminsPerWorkers = 4
	resendAfter      = 15 * time.Second
	maxSends         = 3
)

// bridge mints enrollment tokens through the hub's bridge API over admin sessions: requests
// on bridge/request/token/create, answers matched by transaction on
// bridge/response/token/create. Its methods are safe for concurrent use.
type bridge struct {
	sessions []*adminSession
	next     atomic.Uint64
	timeout  time.Duration
	resend   time.Duration // resendAfter; shorter in tests
}

// adminSession is one admin MQTT session of a bridge.
type adminSession struct {
	client mqtt.Client
	topics protocol.Topics
	prefix string // of this session's transactions: every admin sees the same responses
	seq    atomic.Uint64

	mu      sync.Mutex
	sendAt  time.Time // the earliest instant of the next request (pacing)
	waiting map[string]chan protocol.BridgeResponse
}

// dialBridge opens the admin sessions, verifying the hub against cfg.CA.
func dialBridge(ctx context.Context, cfg Config) (*bridge, error) {
	b := &bridge{timeout: cfg.Timeout, resend: resendAfter}
	for range max(1, (cfg.Concurrency+adminsPerWorkers-1)/adminsPerWorkers) {
		s, err := dialAdmin(ctx, cfg)
		if err != nil {
			b.close()
			return nil, err
		}
		b.sessions = append(b.sessions, s)
	}
	return b, nil
}

// dialAdmin opens one admin session and subscribes to the token/create answers.
func dialAdmin(ctx context.Context, cfg Config) (*adminSession, error) {
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
	s := &adminSession{topics: cfg.Topics, prefix: "fleet-" + hex.EncodeToString(suffix) + "-",
		waiting: map[string]chan protocol.BridgeResponse{}}
	opts := mqtt.NewClientOptions().AddBroker("ssl://" + u.Host).SetProtocolVersion(4).
		SetClientID("hearth-fleet-" + hex.EncodeToString(suffix)).SetCleanSession(true).
		SetUsername(cfg.Admin.User).SetPassword(cfg.Admin.Password).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(false).
		SetConnectTimeout(cfg.Timeout).SetWriteTimeout(cfg.Timeout).
		SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}).
		SetDefaultPublishHandler(s.route)
	s.client = mqtt.NewClient(opts)
	if err := wait(ctx, s.client.Connect(), cfg.Timeout); err != nil {
		return nil, fmt.Errorf("fleet: admin login to the hub as %q: %w", cfg.Admin.User, err)
	}
	if err := wait(ctx, s.client.Subscribe(s.topics.BridgeResponse(opTokenCreate), 1, nil), cfg.Timeout); err != nil {
		s.client.Disconnect(0)
		return nil, fmt.Errorf("fleet: subscribe to the bridge responses: %w", err)
	}
	return s, nil
}

// close ends the sessions.
func (b *bridge) close() {
	for _, s := range b.sessions {
		s.client.Disconnect(250)
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
	s := b.sessions[b.next.Add(1)%uint64(len(b.sessions))]
	deadline := time.Now().Add(b.timeout)
	for send := 1; ; send++ {
		patience := min(b.resend, time.Until(deadline))
		if send == maxSends {
			patience = time.Until(deadline)
		}
		r, err := s.request(ctx, opTokenCreate, protocol.TokenRequest{ID: id, Name: id, Family: "fleet"}, patience)
		switch {
		case errors.Is(err, errNoAnswer) && send < maxSends && time.Now().Before(deadline):
			continue
		case errors.Is(err, errNoAnswer):
			return "", fmt.Errorf("fleet: token/create for %s: %w within %s", id, device.ErrNoReply, b.timeout)
		case err != nil:
			return "", fmt.Errorf("fleet: token/create for %s: %w", id, err)
		case r.Status != "ok":
			return "", fmt.Errorf("fleet: token/create for %s: %w", id, &device.HubError{Code: string(r.Code), Message: r.Error})
		}
		var tok tokenCreated
		if err := json.Unmarshal(r.Data, &tok); err != nil || tok.Token == "" {
			return "", fmt.Errorf("fleet: token/create for %s: answer without a token (%v)", id, err)
		}
		return tok.Token, nil
	}
}

// errNoAnswer means a bridge request got no answer in time.
var errNoAnswer = errors.New("no answer")

// request publishes req (a TokenRequest, with its transaction set here) on op's request
// topic at the session's pace, and waits at most patience for the answer.
func (s *adminSession) request(ctx context.Context, op string, req protocol.TokenRequest, patience time.Duration) (protocol.BridgeResponse, error) {
	if err := s.pace(ctx); err != nil {
		return protocol.BridgeResponse{}, err
	}
	req.Transaction = s.prefix + strconv.FormatUint(s.seq.Add(1), 10)
	ch := make(chan protocol.BridgeResponse, 1)
	s.mu.Lock()
	s.waiting[req.Transaction] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiting, req.Transaction)
		s.mu.Unlock()
	}()
	payload, err := json.Marshal(req)
	if err != nil {
		return protocol.BridgeResponse{}, err
	}
	timer := time.NewTimer(patience)
	defer timer.Stop()
	if err := waitToken(ctx, s.client.Publish(s.topics.BridgeRequest(op), 1, false, payload), timer.C); err != nil {
		return protocol.BridgeResponse{}, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-timer.C:
		return protocol.BridgeResponse{}, errNoAnswer
	case <-ctx.Done():
		return protocol.BridgeResponse{}, ctx.Err()
	}
}

// pace waits for the session's next sending slot, 1/adminRate s after the previous one.
func (s *adminSession) pace(ctx context.Context) error {
	s.mu.Lock()
	now := time.Now()
	at := now
	if s.sendAt.After(now) {
		at = s.sendAt
	}
	s.sendAt = at.Add(time.Second / adminRate)
	s.mu.Unlock()
	if d := at.Sub(now); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// route hands a bridge response to the request waiting for its transaction.
func (s *adminSession) route(_ mqtt.Client, m mqtt.Message) {
	var r protocol.BridgeResponse
	if err := json.Unmarshal(m.Payload(), &r); err != nil {
		return
	}
	s.mu.Lock()
	ch := s.waiting[r.Transaction]
	delete(s.waiting, r.Transaction)
	s.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

// wait waits for a paho token, ctx or timeout.
func wait(ctx context.Context, tok mqtt.Token, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	return waitToken(ctx, tok, timer.C)
}

// waitToken waits for a paho token, ctx or expiry.
func waitToken(ctx context.Context, tok mqtt.Token, expiry <-chan time.Time) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-expiry:
		return errNoAnswer
	}
}
