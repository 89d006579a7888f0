package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/hearth-pki/hearth/agent/device"
	"github.com/hearth-pki/hearth/agent/internal/hub"
	"github.com/hearth-pki/hearth/agent/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// hangGuard bounds every wait of these tests: a guard against a hang, never a timing
// assertion.
const hangGuard = 60 * time.Second

// testHub is a throwaway CA, a real mosquitto and a responder playing the hub.
type testHub struct {
	ca     *testkit.CA
	broker *testkit.Broker
	resp   *testkit.Responder
}

func newTestHub(t *testing.T) *testHub {
	t.Helper()
	ca := testkit.NewCA(t, "Fleet")
	b := testkit.StartBroker(t, ca, true)
	return &testHub{ca: ca, broker: b, resp: testkit.StartResponder(t, b)}
}

// config is a fleet of n devices against h with tokens (the responder accepts any).
func (h *testHub) config(t *testing.T, n int) Config {
	var toks []Token
	for i := range n {
		toks = append(toks, Token{ID: fmt.Sprintf("sim-%05d", i), Token: "token"})
	}
	return Config{
		HubURL: h.broker.URL, CA: []*x509.Certificate{h.ca.Intermediate, h.ca.Root}, Devices: n, Tokens: toks,
		Timeout: 10 * time.Second, ProgressEvery: 20 * time.Millisecond, StateFile: filepath.Join(t.TempDir(), "state.json"),
	}
}

// started is a fleet running in the background.
type started struct {
	f    *Fleet
	stop context.CancelFunc
	done chan error
}

func start(t *testing.T, cfg Config) *started {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	s := &started{f: f, stop: cancel, done: make(chan error, 1)}
	go func() { s.done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// eventually waits until ok holds, looking every few milliseconds, at most hangGuard.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, hangGuard)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ready waits until s has started every device, and checks that all n are online.
func (s *started) ready(t *testing.T, n int) {
	t.Helper()
	eventually(t, "ready fleet", func() bool { return s.f.Summary().Phase != PhaseStarting })
	if sum := s.f.Summary(); sum.Online != n {
		t.Fatalf("ready fleet: %d of %d devices online: %+v", sum.Online, n, sum)
	}
}

// wait waits for Run to return and returns its error.
func (s *started) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return err
	case <-time.After(hangGuard):
		t.Fatalf("Run did not return within %s", hangGuard)
		return nil
	}
}

// TestRenewOnCommand runs a fleet until every device renewed on a hub command, and checks
// the summary against what the hub saw.
func TestRenewOnCommand(t *testing.T) {
	h := newTestHub(t)
	const n = 4
	cfg := h.config(t, n)
	cfg.UntilRenewed = true
	var progress strings.Builder
	var mu sync.Mutex
	cfg.Progress = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return progress.Write(p)
	})
	s := start(t, cfg)
	s.ready(t, n)
	for i := range n {
		h.resp.Command(fmt.Sprintf("sim-%05d", i), fmt.Sprintf("cmd-%d", i), protocol.ActionRenew)
	}
	if err := s.wait(t); err != nil {
		t.Fatalf("Run() = %v", err)
	}

	// The last committed serial of each device, as the hub acknowledged it.
	want := map[string]string{}
	for len(h.resp.Commits) > 0 {
		c := <-h.resp.Commits
		if c.Outcome == protocol.OutcomeCommitted {
			want[c.RequestID] = c.Serial
		}
	}
	sum := s.f.Summary()
	if sum.Phase != PhaseStopped || sum.Enrolled != n || sum.Committed != n || sum.DevicesRenewed != n || !sum.AllRenewed ||
		sum.Failed != 0 || sum.Commands != n || sum.Online != 0 || sum.EnrollFailed != 0 {
		t.Errorf("Summary() = %+v, want stopped, %d enrolled, committed and renewed, no failure, %d commands, none online", sum, n, n)
	}
	if sum.Latency.P50 <= 0 || sum.Latency.P99 < sum.Latency.P50 || sum.Latency.Max < sum.Latency.P99 || sum.RenewalsPerSecond <= 0 {
		t.Errorf("latency %+v, rate %v: want 0 < p50 <= p99 <= max and a rate", sum.Latency, sum.RenewalsPerSecond)
	}
	held := map[string]bool{}
	for _, d := range sum.DeviceList {
		if d.Renewals != 1 || d.Serial == "" {
			t.Errorf("device %+v: want one renewal and a serial", d)
		}
		if d.LastAttempt.IsZero() || d.LastCommit.Before(d.LastAttempt) {
			t.Errorf("device %s: last attempt %v, last commit %v; want an attempt and its later commit", d.ID, d.LastAttempt, d.LastCommit)
		}
		held[d.Serial] = true
	}
	renewed := 0
	for _, serial := range want {
		if held[serial] {
			renewed++
		}
	}
	if renewed != n {
		t.Errorf("%d devices hold the serial of their last commit, want %d (held %v, committed %v)", renewed, n, held, want)
	}

	var onDisk Summary
	b, err := os.ReadFile(cfg.StateFile)
	if err == nil {
		err = json.Unmarshal(b, &onDisk)
	}
	if err != nil {
		t.Fatalf("state file: %v", err)
	}
	if !slices.Equal(sum.DeviceList, onDisk.DeviceList) || onDisk.Phase != PhaseStopped {
		t.Errorf("state file: phase %q, devices %+v; want %q, %+v", onDisk.Phase, onDisk.DeviceList, PhaseStopped, sum.DeviceList)
	}
	mu.Lock()
	out := progress.String()
	mu.Unlock()
	if !strings.Contains(out, "hearth-fleet: ready after") || !strings.Contains(out, "committed 4 (4 devices)") {
		t.Errorf("progress output lacks the ready line or the final counts:\n%s", out)
	}
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// TestFailuresByCause makes the hub refuse every renewal and checks that the failures are
// counted under the protocol error code.
func TestFailuresByCause(t *testing.T) {
	h := newTestHub(t)
	cfg := h.config(t, 2)
	s := start(t, cfg)
	s.ready(t, 2)
	h.resp.SetErrorCode(protocol.CodeBusy)
	h.resp.SetBehaviour(testkit.ErrorReply)
	h.resp.Command("sim-00000", "cmd-0", protocol.ActionRenew)
	h.resp.Command("sim-00001", "cmd-1", protocol.ActionRenew)
	eventually(t, "two failures", func() bool { return s.f.Summary().Failed == 2 })
	s.stop()
	if err := s.wait(t); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	sum := s.f.Summary()
	if want := map[string]int{string(protocol.CodeBusy): 2}; !maps.Equal(want, sum.Failures) || sum.Committed != 0 || sum.AllRenewed {
		t.Errorf("failures %v, committed %d, all renewed %v; want %v and nothing committed", sum.Failures, sum.Committed, sum.AllRenewed, want)
	}
	if len(sum.FailureExamples) != 2 || sum.DeviceList[0].Error == "" || sum.DeviceList[0].Failures != 1 {
		t.Errorf("examples %q, device %+v: want two examples and the device's error", sum.FailureExamples, sum.DeviceList[0])
	}
}

// TestKeysDir keeps the keys in per-device state directories, and a second fleet reuses the
// devices enrolled there without tokens.
func TestKeysDir(t *testing.T) {
	h := newTestHub(t)
	cfg := h.config(t, 2)
	cfg.KeysDir = t.TempDir()
	s := start(t, cfg)
	s.ready(t, 2)
	s.stop()
	if err := s.wait(t); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	first := s.f.Summary()
	for _, d := range first.DeviceList {
		st, err := device.ReadStatus(device.Config{Dir: filepath.Join(cfg.KeysDir, d.ID)})
		if err != nil || st.Serial != d.Serial {
			t.Errorf("status of %s on disk = serial %q, %v; want %q", d.ID, st.Serial, err, d.Serial)
		}
	}
	for len(h.resp.CSRs) > 0 {
		<-h.resp.CSRs
	}

	cfg.Tokens = nil
	again := start(t, cfg)
	again.ready(t, 2)
	again.stop()
	if err := again.wait(t); err != nil {
		t.Fatalf("second Run() = %v", err)
	}
	sum := again.f.Summary()
	if sum.Reused != 2 || sum.Enrolled != 2 || len(h.resp.CSRs) != 0 {
		t.Errorf("second run: reused %d, enrolled %d, %d CSRs; want 2 reused, no enrollment", sum.Reused, sum.Enrolled, len(h.resp.CSRs))
	}
	if !slices.Equal(first.DeviceList, sum.DeviceList) {
		t.Errorf("devices of the second run = %+v, want those of the first %+v", sum.DeviceList, first.DeviceList)
	}
}

// TestMintTokens mints the enrollment tokens through the bridge API: a fake hub bridge on the
// broker answers token/create, refusing one device.
func TestMintTokens(t *testing.T) {
	h := newTestHub(t)
	requests := fakeBridge(t, h, "sim-00001")
	cfg := h.config(t, 3)
	cfg.Tokens = nil
	cfg.Admin = &AdminLogin{Password: "secret"}
	s := start(t, cfg)
	eventually(t, "started fleet", func() bool { return s.f.Summary().Phase == PhaseHolding })
	s.stop()
	if err := s.wait(t); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	sum := s.f.Summary()
	if sum.Enrolled != 2 || sum.EnrollFailed != 1 || sum.EnrollFailures[string(protocol.CodeBadRequest)] != 1 {
		t.Errorf("Summary() enrolled %d, failed %d %v; want 2 enrolled and 1 bad_request", sum.Enrolled, sum.EnrollFailed, sum.EnrollFailures)
	}
	got := map[string]bool{}
	for len(requests) > 0 {
		got[<-requests] = true
	}
	if want := map[string]bool{"sim-00000": true, "sim-00001": true, "sim-00002": true}; !maps.Equal(want, got) {
		t.Errorf("token/create requests for %v, want %v", got, want)
	}
}

// fakeBridge answers token/create requests on h's broker as the hub's bridge does, with an
// error for refuse, and returns the channel of the ids asked for.
func fakeBridge(t *testing.T, h *testHub, refuse string) <-chan string {
	return fakeBridgeDropping(t, h, refuse, 0)
}

// fakeBridgeDropping is fakeBridge ignoring the first drop requests, as the hub's publish rate
// limit does.
func fakeBridgeDropping(t *testing.T, h *testHub, refuse string, drop int) <-chan string {
	t.Helper()
	ids := make(chan string, 64)
	pool := x509.NewCertPool()
	pool.AddCert(h.ca.Root)
	var c mqtt.Client
	var dropped atomic.Int32
	topics := protocol.Topics{}
	c = mqtt.NewClient(mqtt.NewClientOptions().AddBroker("ssl://" + h.broker.Addr).SetClientID("fake-bridge").
		SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}).SetOrderMatters(false).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			var r protocol.TokenRequest
			if err := json.Unmarshal(m.Payload(), &r); err != nil {
				t.Errorf("fake bridge: %v", err)
				return
			}
			ids <- r.ID
			if dropped.Add(1) <= int32(drop) {
				return
			}
			resp := protocol.BridgeResponse{Transaction: r.Transaction, Status: "ok", Data: protocol.RawJSON(`{"id":"` + r.ID + `","token":"hst_fake"}`)}
			if r.ID == refuse {
				resp = protocol.BridgeResponse{Transaction: r.Transaction, Status: "error", Error: "refused", Code: protocol.CodeBadRequest}
			}
			b, _ := json.Marshal(resp)
			c.Publish(topics.BridgeResponse(opTokenCreate), 1, false, b)
		}))
	if tok := c.Connect(); !tok.WaitTimeout(hangGuard) || tok.Error() != nil {
		t.Fatalf("fake bridge connect: %v", tok.Error())
	}
	if tok := c.Subscribe(topics.BridgeRequest(opTokenCreate), 1, nil); !tok.WaitTimeout(hangGuard) || tok.Error() != nil {
		t.Fatalf("fake bridge subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return ids
}

func TestParseTokens(t *testing.T) {
	tests := []struct {
		name, in string
		want     []Token
		wantErr  bool
	}{
		{name: "lines", in: "# tokens\nplug-1 hst_a\n\n  cam-2\thst_b  \n", want: []Token{{"plug-1", "hst_a"}, {"cam-2", "hst_b"}}},
		{name: "empty", in: "\n# nothing\n"},
		{name: "missing token", in: "plug-1\n", wantErr: true},
		{name: "extra field", in: "plug-1 a b\n", wantErr: true},
		{name: "bad id", in: "Plug_1 a\n", wantErr: true},
		{name: "duplicate", in: "plug-1 a\nplug-1 b\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTokens(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseTokens(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !slices.Equal(tt.want, got) {
				t.Errorf("ParseTokens(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestCause(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("device: renew: %w", &device.HubError{Code: "busy"}), "busy"},
		{fmt.Errorf("%w: %w", device.ErrNotCommitted, &device.HubError{Code: "not_presented"}), "not_presented"},
		{fmt.Errorf("%w: %w", device.ErrNotCommitted, fmt.Errorf("%w: %w", device.ErrNoReply, context.DeadlineExceeded)), CauseNoReply},
		{fmt.Errorf("%w: hub: commit: %w", device.ErrNotCommitted, hub.ErrConnectionLost), CauseConnectionLost},
		{fmt.Errorf("%w: the hub acknowledged serial 1, not 2", device.ErrNotCommitted), CauseNotCommitted},
		{fmt.Errorf("reconnect: %w", &hub.RefusedError{Code: 5}), CauseRefused},
		{&hub.DialError{Err: errors.New("connection refused")}, CauseDial},
		{fmt.Errorf("x: %w", device.ErrBadChain), CauseBadChain},
		{device.ErrFingerprintMismatch, CauseFingerprint},
		{context.DeadlineExceeded, CauseTimeout},
		{errors.New("something"), CauseOther},
	}
	for _, tt := range tests {
		if got := cause(tt.err); got != tt.want {
			t.Errorf("cause(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestConfigRefuses(t *testing.T) {
	ca := testkit.NewCA(t, "Config")
	good := Config{HubURL: "mqtts://127.0.0.1:8883", CA: []*x509.Certificate{ca.Root}, Devices: 2, Admin: &AdminLogin{Password: "p"}}
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"no hub", func(c *Config) { c.HubURL = "" }},
		{"plain mqtt", func(c *Config) { c.HubURL = "mqtt://127.0.0.1:1883" }},
		{"no root", func(c *Config) { c.CA = []*x509.Certificate{ca.Intermediate} }},
		{"no devices", func(c *Config) { c.Devices = 0 }},
		{"no tokens nor admin", func(c *Config) { c.Admin = nil }},
		{"too few tokens", func(c *Config) { c.Tokens = []Token{{"a", "t"}} }},
		{"admin without password", func(c *Config) { c.Admin = &AdminLogin{User: "admin"} }},
		{"bad prefix", func(c *Config) { c.IDPrefix = "Sim_" }},
	}
	if _, err := New(good); err != nil {
		t.Fatalf("New(good) = %v", err)
	}
	for _, tt := range tests {
		c := good
		tt.change(&c)
		if _, err := New(c); err == nil {
			t.Errorf("New(%s) = nil error, want a refusal", tt.name)
		}
	}
}

// TestBridgeResends sends a token/create request again when the hub drops it.
func TestBridgeResends(t *testing.T) {
	h := newTestHub(t)
	requests := fakeBridgeDropping(t, h, "", 1)
	cfg, err := Config{HubURL: h.broker.URL, CA: []*x509.Certificate{h.ca.Root}, Devices: 1, Admin: &AdminLogin{Password: "p"}}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	b, err := dialBridge(t.Context(), cfg)
	if err != nil {
		t.Fatalf("dialBridge() = %v", err)
	}
	defer b.close()
	b.resend = 100 * time.Millisecond
	tok, err := b.createToken(t.Context(), "plug-1")
	if err != nil || tok != "hst_fake" {
		t.Fatalf("createToken() = %q, %v; want the token of the second request", tok, err)
	}
	if len(requests) != 2 {
		t.Errorf("%d requests reached the bridge, want 2 (one dropped, one answered)", len(requests))
	}
}
