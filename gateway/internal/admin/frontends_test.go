package admin_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/admin"
	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/issuer"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/protocol"
)

// payloads is the issuer's Publisher in these tests: it keeps the last payload per topic.
type payloads struct {
	mu   sync.Mutex
	last map[string][]byte
}

func (p *payloads) Publish(topic string, payload []byte, _ bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last[topic] = append([]byte(nil), payload...)
	return nil
}

// hub is what the two front ends share in the hub: one inventory, one CA, one issuer (its
// policy and rate limit), and the admin service wired to that issuer, as hub.New wires them.
type hub struct {
	store *inventory.Store
	iss   *issuer.Issuer
	svc   *admin.Service
	pub   *payloads
	now   time.Time
}

func newHub(t *testing.T, pol *policy.Policy, burst int) *hub {
	t.Helper()
	store, err := inventory.Open(t.Context(), filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatalf("inventory.Open() = %v", err)
	}
	t.Cleanup(func() { store.Close() })
	authority, err := ca.InitWithIterations(t.TempDir(), []byte("test passphrase"), manualT0.Add(-30*day), ca.MinIterations)
	if err != nil {
		t.Fatalf("ca.InitWithIterations() = %v", err)
	}
	h := &hub{store: store, pub: &payloads{last: map[string][]byte{}}, now: manualT0}
	now := func() time.Time { return h.now }
	cfg := issuer.Config{CA: authority, Store: store, Policy: func() *policy.Policy { return pol }, Pub: h.pub, Now: now}
	if burst > 0 {
		cfg.Rate, cfg.Burst = 1e-6, burst
	}
	h.iss = issuer.New(cfg)
	h.svc = admin.New(admin.Config{Store: store, CA: authority, Broker: &recordingBroker{}, Issuer: h.iss,
		Revoker: runMachine(t, store, now), Policy: func() *policy.Policy { return pol }, Now: now})
	return h
}

// devState is where device "dev" stands when the refused CSR arrives.
type devState int

const (
	fresh   devState = iota // not in the inventory: enrolling with a token / a person's first upload
	active                  // its active certificate holds the case's current key
	revoked                 // as active, then revoked by an admin (device/revoke)
)

// frontEnd brings "dev" to a state on a fresh hub and sends it one CSR, returning the code
// of the answer ("" when it was not refused).
type frontEnd struct {
	name string
	send func(t *testing.T, h *hub, st devState, current crypto.Signer, csr string) protocol.Code
}

// mqtt is the agent's path: HandleCSR on the device's csr topic, the answer on its cert topic.
var mqtt = frontEnd{"mqtt", func(t *testing.T, h *hub, st devState, current crypto.Signer, csr string) protocol.Code {
	t.Helper()
	ctx := t.Context()
	tok := func() string {
		tok := secret.NewToken()
		if err := h.store.CreateToken(ctx, inventory.Token{Hash: secret.HashToken(tok), DeviceID: "dev",
			CreatedAt: h.now, ExpiresAt: h.now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		return secret.HashToken(tok)
	}
	send := func(from issuer.Sender, m *protocol.CSR) *protocol.Cert {
		b, err := protocol.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		h.iss.HandleCSR(ctx, from, b)
		var reply protocol.Cert
		if err := protocol.Decode(h.pub.last[protocol.Topics{}.Device("dev", protocol.KindCert)], &reply); err != nil {
			t.Fatalf("cert reply: %v", err)
		}
		return &reply
	}
	m := &protocol.CSR{V: 1, RequestID: "refused", CSR: csr, Reason: protocol.ReasonEnroll, Time: h.now}
	from := issuer.Sender{DeviceID: "dev", TokenHash: tok()}
	if st != fresh {
		enrolled := send(from, &protocol.CSR{V: 1, RequestID: "enroll", CSR: csrPEM(t, current, "dev"), Reason: protocol.ReasonEnroll, Time: h.now})
		if enrolled.Error != nil {
			t.Fatalf("enroll: %+v", enrolled.Error)
		}
		// The device commits (the state machine records it; see gateway/internal/lifecycle).
		if _, err := h.store.Commit(ctx, "dev", "enroll", enrolled.Serial, false, h.now); err != nil {
			t.Fatal(err)
		}
		from = issuer.Sender{DeviceID: "dev", Serial: enrolled.Serial}
		m.Reason, m.Replaces = protocol.ReasonWindow, enrolled.Serial
	}
	if st == revoked {
		mustRevoke(t, h)
	}
	reply := send(from, m)
	if reply.Error == nil {
		return ""
	}
	return reply.Error.Code
}}

// manual is a person's path: device/sign through Service.Do, as the CLI and the bridge call it.
var manual = frontEnd{"manual", func(t *testing.T, h *hub, st devState, current crypto.Signer, csr string) protocol.Code {
	t.Helper()
	sign := func(csr string) protocol.BridgeResponse {
		b, err := json.Marshal(signReq("dev", csr))
		if err != nil {
			t.Fatal(err)
		}
		return h.svc.Do(t.Context(), "test", "device/sign", b)
	}
	if st != fresh {
		if resp := sign(csrPEM(t, current, "dev")); resp.Status != "ok" {
			t.Fatalf("first sign: %s %s", resp.Code, resp.Error)
		}
	}
	if st == revoked {
		mustRevoke(t, h)
	}
	resp := sign(csr)
	if resp.Status == "ok" {
		return ""
	}
	return resp.Code
}}

func mustRevoke(t *testing.T, h *hub) {
	t.Helper()
	b, _ := json.Marshal(protocol.DeviceRequest{ID: "dev"})
	if resp := h.svc.Do(t.Context(), "test", "device/revoke", b); resp.Status != "ok" {
		t.Fatalf("device/revoke: %s", resp.Error)
	}
}

// TestFrontEndsRefuseAlike is issue 9's proof that there is one issuance pipeline: the same
// refused CSR gets the same wire code whether an agent sends it over MQTT or a person
// uploads it with device sign. Each case runs on a fresh hub per front end, with device
// "dev" brought to the same state on both.
//
// Refusals that exist for one front end only are not in the table: an unknown device with
// a certificate, a token that renews or is used up (MQTT: no person's upload has them), a
// device run by an agent (manual: an agent's CSRs come over MQTT), and a recovery past the
// grace (a person's upload after expiry re-enrolls instead). The issuer's own tests cover
// those.
func TestFrontEndsRefuseAlike(t *testing.T) {
	current := newP256(t)
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tampered := func() string {
		b, _ := pem.Decode([]byte(csrPEM(t, newP256(t), "dev")))
		b.Bytes[len(b.Bytes)-5] ^= 0xff // inside the signature
		return string(pem.EncodeToMemory(b))
	}()
	p384Only, err := policy.Parse([]byte("classes:\n  - name: strict\n    match: {devices: [dev]}\n    keys: [p384]\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		state devState
		csr   string
		pol   *policy.Policy // nil: policy.Default()
		burst int            // > 0: the hub may issue this many, then no more
		want  protocol.Code
	}{
		{name: "accepted, as a control", state: fresh, csr: csrPEM(t, newP256(t), "dev"), want: ""},
		{name: "renewal accepted, as a control", state: active, csr: csrPEM(t, newP256(t), ""), want: ""},
		{name: "bad signature", state: fresh, csr: tampered, want: protocol.CodeBadCSR},
		{name: "subject names another device", state: fresh, csr: csrPEM(t, newP256(t), "front-door"), want: protocol.CodeIdentityMismatch},
		{name: "URI names another device", state: active, csr: csrPEM(t, newP256(t), "", protocol.DeviceURI("front-door")), want: protocol.CodeIdentityMismatch},
		{name: "weak key", state: fresh, csr: csrPEM(t, rsa1024, "dev"), want: protocol.CodeWeakKey},
		{name: "key the CA does not sign", state: fresh, csr: csrPEM(t, p521, "dev"), want: protocol.CodeWeakKey},
		{name: "key algorithm the class does not allow", state: fresh, csr: csrPEM(t, rsa2048, "dev"), want: protocol.CodeWeakKey},
		{name: "key algorithm a device's class does not allow", state: fresh, csr: csrPEM(t, newP256(t), "dev"), pol: p384Only, want: protocol.CodeWeakKey},
		{name: "policy denied: the current key again", state: active, csr: csrPEM(t, current, "dev"), want: protocol.CodePolicyDenied},
		{name: "rate limited", state: fresh, csr: csrPEM(t, newP256(t), "dev"), burst: 1, want: protocol.CodeRateLimited},
		{name: "revoked device", state: revoked, csr: csrPEM(t, newP256(t), "dev"), want: protocol.CodeRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := tt.pol
			if pol == nil {
				pol = policy.Default()
			}
			got := map[string]protocol.Code{}
			for _, fe := range []frontEnd{mqtt, manual} {
				h := newHub(t, pol, tt.burst)
				if tt.burst > 0 {
					// Another device's issuance (any front end: there is one limit) uses the budget up.
					if _, err := h.iss.Issue(t.Context(), issuer.Request{DeviceID: "other", RequestID: "r1",
						CSR: csrPEM(t, newP256(t), "other"), Auth: issuer.AuthAdmin}); err != nil {
						t.Fatalf("Issue(other) = %v", err)
					}
				}
				got[fe.name] = fe.send(t, h, tt.state, current, tt.csr)
				if got[fe.name] != tt.want {
					t.Errorf("%s: code %q, want %q", fe.name, got[fe.name], tt.want)
				}
			}
			if got[mqtt.name] != got[manual.name] {
				t.Errorf("the same CSR is answered %q over MQTT and %q by device sign", got[mqtt.name], got[manual.name])
			}
		})
	}
}
