package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/protocol"
)

// recorder is a Publisher that keeps what was published.
type recorder struct {
	mu   sync.Mutex
	msgs []published
}

type published struct {
	topic   string
	payload []byte
	retain  bool
}

func (r *recorder) Publish(topic string, payload []byte, retain bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, published{topic, append([]byte(nil), payload...), retain})
	return nil
}

// last returns the last message on topic, decoded into m.
func (r *recorder) last(t *testing.T, topic string, m protocol.Message) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.msgs) - 1; i >= 0; i-- {
		if r.msgs[i].topic == topic {
			if err := protocol.Decode(r.msgs[i].payload, m); err != nil {
				t.Fatalf("reply on %s does not decode: %v\n%s", topic, err, r.msgs[i].payload)
			}
			return
		}
	}
	t.Fatalf("nothing published on %s", topic)
}

type fixture struct {
	iss   *Issuer
	store *inventory.Store
	ca    *ca.CA
	pub   *recorder
	now   time.Time
	pol   *policy.Policy // the policy in force; tests may replace it
}

var topics protocol.Topics

func newFixture(t *testing.T) *fixture {
	t.Helper()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	c, err := ca.InitWithIterations(filepath.Join(dir, "ca"), []byte("test passphrase"), now, ca.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	store, err := inventory.Open(t.Context(), filepath.Join(dir, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	f := &fixture{store: store, ca: c, pub: &recorder{}, now: now, pol: policy.Default()}
	f.iss = New(Config{CA: c, Store: store, Policy: func() *policy.Policy { return f.pol }, Pub: f.pub, Now: func() time.Time { return f.now }})
	return f
}

func (f *fixture) token(t *testing.T, device string) string {
	t.Helper()
	tok := secret.NewToken()
	err := f.store.CreateToken(t.Context(), inventory.Token{Hash: secret.HashToken(tok), DeviceID: device, Name: "Hall", Family: "thermostat",
		CreatedAt: f.now, ExpiresAt: f.now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func csrFor(t *testing.T, key crypto.Signer, cn string, uris ...string) string {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}
	for _, u := range uris {
		p, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, p)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func p256(t *testing.T) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func encode(t *testing.T, m protocol.Message) []byte {
	t.Helper()
	b, err := protocol.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// enroll runs an enrollment of device and returns the reply.
func (f *fixture) enroll(t *testing.T, device, requestID string) protocol.Cert {
	t.Helper()
	tok := f.token(t, device)
	req := &protocol.CSR{V: 1, RequestID: requestID, CSR: csrFor(t, p256(t), device), Reason: protocol.ReasonEnroll, Time: f.now}
	f.iss.HandleCSR(t.Context(), Sender{DeviceID: device, TokenHash: secret.HashToken(tok)}, encode(t, req))
	var reply protocol.Cert
	f.pub.last(t, topics.Device(device, protocol.KindCert), &reply)
	return reply
}

func TestEnrollCommitRenew(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	reply := f.enroll(t, "thermostat-hall", "r1")
	if reply.Error != nil {
		t.Fatalf("enroll reply error = %v", reply.Error)
	}
	cert, err := f.store.Certificate(ctx, reply.Serial)
	if err != nil || cert.Status != inventory.StatusPending {
		t.Fatalf("issued certificate in inventory = %+v, %v; want pending", cert, err)
	}
	dev, err := f.store.Device(ctx, "thermostat-hall")
	if err != nil || dev.Name != "Hall" || dev.Family != "thermostat" {
		t.Errorf("device after enrollment = %+v, %v; want name and family from the token", dev, err)
	}
	if dev.Class != "default" || dev.ClassHash != f.pol.ClassHash() {
		t.Errorf("device class after enrollment = %q under %q, want default under the policy's %q", dev.Class, dev.ClassHash, f.pol.ClassHash())
	}
	if reply.Renewal == nil || !reply.Renewal.WindowStart.After(f.now) {
		t.Errorf("reply renewal window = %+v, want one in the future", reply.Renewal)
	}
	leafBlock, rest := pem.Decode([]byte(reply.Chain))
	if interBlock, _ := pem.Decode(rest); leafBlock == nil || interBlock == nil {
		t.Fatalf("chain = %q, want leaf and intermediate", reply.Chain)
	}

	// Resubmitting the same request id gets the same certificate, not a second one.
	again := f.enroll(t, "thermostat-hall", "r1")
	if again.Serial != reply.Serial {
		t.Errorf("resubmitted request got serial %s, want %s", again.Serial, reply.Serial)
	}

	// The device commits (the state machine records it; see gateway/internal/lifecycle).
	if _, err := f.store.Commit(ctx, "thermostat-hall", "r1", reply.Serial, false, f.now); err != nil {
		t.Fatal(err)
	}
	f.iss.PublishRenewal(ctx, mustCert(t, f.store, reply.Serial), f.now)
	var info protocol.RenewalInfo
	f.pub.last(t, topics.Device("thermostat-hall", protocol.KindRenewal), &info)
	if info.Serial != reply.Serial {
		t.Errorf("retained renewal info serial = %s, want %s", info.Serial, reply.Serial)
	}
	// The scheduler's form, with the window it computed, publishes the same message.
	active := mustCert(t, f.store, reply.Serial)
	dev, _ = f.store.Device(ctx, "thermostat-hall")
	w := f.pol.Window(policy.Subject{DeviceID: dev.ID, Family: dev.Family, Tags: dev.Tags},
		policy.CertInfo{Serial: active.Serial, NotBefore: active.NotBefore, NotAfter: active.NotAfter}, f.now)
	f.iss.PublishWindow(ctx, active, w, f.now)
	var viaWindow protocol.RenewalInfo
	f.pub.last(t, topics.Device("thermostat-hall", protocol.KindRenewal), &viaWindow)
	if diff := cmp.Diff(info, viaWindow); diff != "" {
		t.Errorf("PublishWindow's message differs from PublishRenewal's (-PublishRenewal +PublishWindow):\n%s", diff)
	}

	// Renewal from the device's own session, with a fresh key.
	f.now = f.now.Add(21 * 24 * time.Hour)
	req := &protocol.CSR{V: 1, RequestID: "r2", CSR: csrFor(t, p256(t), "thermostat-hall"), Reason: protocol.ReasonWindow,
		Replaces: reply.Serial, Time: f.now}
	f.iss.HandleCSR(ctx, Sender{DeviceID: "thermostat-hall", Serial: reply.Serial}, encode(t, req))
	var renewed protocol.Cert
	f.pub.last(t, topics.Device("thermostat-hall", protocol.KindCert), &renewed)
	if renewed.Error != nil || renewed.Serial == reply.Serial {
		t.Fatalf("renewal reply = %+v, want a new certificate", renewed)
	}
	if _, err := f.store.Commit(ctx, "thermostat-hall", "r2", renewed.Serial, false, f.now); err != nil {
		t.Fatal(err)
	}
	old, _ := f.store.Certificate(ctx, reply.Serial)
	if old.Status != inventory.StatusSuperseded {
		t.Errorf("old certificate status = %s, want superseded", old.Status)
	}
}

func TestCSRRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		payload func(t *testing.T) []byte
		code    protocol.Code
	}{
		{"malformed json", func(*testing.T) []byte { return []byte(`{"v":1,"request_id":"bad1","csr":`) }, protocol.CodeBadRequest},
		{"wrong type", func(*testing.T) []byte { return []byte(`{"v":1,"request_id":"bad2","csr":42}`) }, protocol.CodeBadRequest},
		{"oversized", func(*testing.T) []byte {
			return []byte(`{"v":1,"request_id":"bad3","csr":"` + strings.Repeat("A", protocol.MaxMessageSize) + `"}`)
		}, protocol.CodeTooLarge},
		{"other identity", func(t *testing.T) []byte {
			return encode(t, &protocol.CSR{V: 1, RequestID: "bad4", CSR: csrFor(t, p256(t), "camera-door"), Reason: protocol.ReasonEnroll, Time: f.now})
		}, protocol.CodeIdentityMismatch},
		{"other identity uri", func(t *testing.T) []byte {
			return encode(t, &protocol.CSR{V: 1, RequestID: "bad5", CSR: csrFor(t, p256(t), "", "urn:hearth:device:camera-door"), Reason: protocol.ReasonEnroll, Time: f.now})
		}, protocol.CodeIdentityMismatch},
		{"rsa 1024", func(t *testing.T) []byte {
			return encode(t, &protocol.CSR{V: 1, RequestID: "bad6", CSR: csrFor(t, rsa1024, "thermostat-hall"), Reason: protocol.ReasonEnroll, Time: f.now})
		}, protocol.CodeWeakKey},
		{"bad signature", func(t *testing.T) []byte {
			p := csrFor(t, p256(t), "thermostat-hall")
			b, _ := pem.Decode([]byte(p))
			b.Bytes[len(b.Bytes)-5] ^= 0xff
			return encode(t, &protocol.CSR{V: 1, RequestID: "bad7", CSR: string(pem.EncodeToMemory(b)), Reason: protocol.ReasonEnroll, Time: f.now})
		}, protocol.CodeBadCSR},
	}
	tok := f.token(t, "thermostat-hall")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.iss.HandleCSR(ctx, Sender{DeviceID: "thermostat-hall", TokenHash: secret.HashToken(tok)}, tt.payload(t))
			var reply protocol.Cert
			f.pub.last(t, topics.Device("thermostat-hall", protocol.KindCert), &reply)
			if reply.Error == nil || reply.Error.Code != tt.code {
				t.Fatalf("reply = %+v, want error %s", reply, tt.code)
			}
		})
	}
	// Nothing was written: no device, no certificate, the token still unused.
	if _, err := f.store.Device(ctx, "thermostat-hall"); err == nil {
		t.Error("a refused enrollment created the device")
	}
	if err := f.store.CheckToken(ctx, "thermostat-hall", secret.HashToken(tok), f.now); err != nil {
		t.Errorf("token after refused CSRs: %v, want still valid", err)
	}
}

func TestTokenSingleUse(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, "cam")
	send := func(id string) protocol.Cert {
		req := &protocol.CSR{V: 1, RequestID: id, CSR: csrFor(t, p256(t), "cam"), Reason: protocol.ReasonEnroll, Time: f.now}
		f.iss.HandleCSR(t.Context(), Sender{DeviceID: "cam", TokenHash: secret.HashToken(tok)}, encode(t, req))
		var reply protocol.Cert
		f.pub.last(t, topics.Device("cam", protocol.KindCert), &reply)
		return reply
	}
	if r := send("e1"); r.Error != nil {
		t.Fatalf("first enrollment: %v", r.Error)
	}
	if r := send("e2"); r.Error == nil || r.Error.Code != protocol.CodeUnauthorized {
		t.Fatalf("second enrollment with the same token = %+v, want unauthorized", r)
	}
}

func mustCert(t *testing.T, s *inventory.Store, serial string) inventory.Certificate {
	t.Helper()
	c, err := s.Certificate(t.Context(), serial)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRekeyRequired checks that a renewal reusing the current key is refused under the
// default policy (re-key on every renewal).
func TestRekeyRequired(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	key := p256(t)
	tok := f.token(t, "cam")
	enroll := &protocol.CSR{V: 1, RequestID: "e1", CSR: csrFor(t, key, "cam"), Reason: protocol.ReasonEnroll, Time: f.now}
	f.iss.HandleCSR(ctx, Sender{DeviceID: "cam", TokenHash: secret.HashToken(tok)}, encode(t, enroll))
	var reply protocol.Cert
	f.pub.last(t, topics.Device("cam", protocol.KindCert), &reply)
	if reply.Error != nil {
		t.Fatal(reply.Error)
	}
	same := &protocol.CSR{V: 1, RequestID: "r1", CSR: csrFor(t, key, "cam"), Reason: protocol.ReasonWindow, Replaces: reply.Serial, Time: f.now}
	f.iss.HandleCSR(ctx, Sender{DeviceID: "cam", Serial: reply.Serial}, encode(t, same))
	var refused protocol.Cert
	f.pub.last(t, topics.Device("cam", protocol.KindCert), &refused)
	if refused.Error == nil || refused.Error.Code != protocol.CodePolicyDenied || !strings.Contains(refused.Error.Message, "rekey") {
		t.Fatalf("renewal with the same key = %+v, want policy_denied naming the rekey rule", refused)
	}
}
