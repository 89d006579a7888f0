package admin_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/gateway/internal/admin"
	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/issuer"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/renewal"
	"github.com/hearth-pki/hearth/protocol"
)

var manualT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

// recordingBroker is the broker of the tests: it records what the service publishes.
type recordingBroker struct {
	mu        sync.Mutex
	published []string
}

func (b *recordingBroker) Publish(topic string, _ []byte, _ bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.published = append(b.published, topic)
	return nil
}

func (b *recordingBroker) Disconnect(string) int { return 0 }

func (b *recordingBroker) DisconnectAfter(string, time.Duration) int { return 0 }

// manualFixture is an admin service over a real inventory and a real CA, at a settable time.
type manualFixture struct {
	s       *admin.Service
	iss     *issuer.Issuer
	store   *inventory.Store
	ca      *ca.CA
	broker  *recordingBroker
	now     time.Time
	changed int
	events  []protocol.Event
}

func newManualFixture(t testing.TB) *manualFixture {
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
	f := &manualFixture{store: store, ca: authority, broker: &recordingBroker{}, now: manualT0}
	now := func() time.Time { return f.now }
	notify := func(e protocol.Event) { f.events = append(f.events, e) }
	f.iss = issuer.New(issuer.Config{CA: authority, Store: store, Now: now, Notify: notify})
	f.s = admin.New(admin.Config{Store: store, CA: authority, Broker: f.broker, Issuer: f.iss, Now: now,
		Revoker: runMachine(t, store, now), Changed: func() { f.changed++ }, Notify: notify})
	return f
}

// do runs op through Service.Do, as the bridge and the control socket do.
func (f *manualFixture) do(t *testing.T, op string, payload any) protocol.BridgeResponse {
	t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return f.s.Do(t.Context(), "test", op, b)
}

// ok runs op, which must succeed, and decodes its answer into out.
func (f *manualFixture) ok(t *testing.T, op string, payload, out any) {
	t.Helper()
	resp := f.do(t, op, payload)
	if resp.Status != "ok" {
		t.Fatalf("Do(%s) = %s %s: %s, want ok", op, resp.Status, resp.Code, resp.Error)
	}
	if err := json.Unmarshal(resp.Data, out); err != nil {
		t.Fatalf("Do(%s) answer %s: %v", op, resp.Data, err)
	}
}

// state is what the inventory holds, to prove a refused request wrote nothing.
type state struct{ devices, certs, events int }

func (f *manualFixture) state(t *testing.T) state {
	t.Helper()
	devs, err := f.store.Devices(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st := state{devices: len(devs)}
	for _, d := range devs {
		certs, err := f.store.Certificates(t.Context(), d.ID)
		if err != nil {
			t.Fatal(err)
		}
		st.certs += len(certs)
	}
	evs, err := f.store.Events(t.Context(), inventory.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	st.events = len(evs)
	return st
}

// refused runs op, which must fail with code, naming want and writing nothing.
func (f *manualFixture) refused(t *testing.T, op string, payload any, code protocol.Code, want string) {
	t.Helper()
	before, changed := f.state(t), f.changed
	resp := f.do(t, op, payload)
	if resp.Status != "error" || resp.Code != code || !strings.Contains(resp.Error, want) {
		t.Errorf("Do(%s) = %s %s %q, want a %s error containing %q", op, resp.Status, resp.Code, resp.Error, code, want)
	}
	if after := f.state(t); after != before || f.changed != changed {
		t.Errorf("Do(%s) refused but the inventory went from %+v to %+v (Changed called %d times)", op, before, after, f.changed-changed)
	}
}

// seedAgentDevice records a device run by hearth-agent, with an active certificate.
func (f *manualFixture) seedAgentDevice(t *testing.T, id string) {
	t.Helper()
	err := f.store.RecordIssuance(t.Context(), inventory.Issuance{
		Device:  inventory.Device{ID: id, Mechanism: inventory.MechanismAgent, Path: inventory.PathDirect},
		Cert:    inventory.Certificate{Serial: "aa01", NotBefore: manualT0, NotAfter: manualT0.Add(30 * day)},
		Attempt: inventory.Attempt{RequestID: "r1", Reason: "enroll", StartedAt: manualT0, FinishedAt: manualT0}})
	if err == nil {
		_, _, err = f.store.Activate(t.Context(), id, "aa01", manualT0)
	}
	if err != nil {
		t.Fatalf("seed agent device %s: %v", id, err)
	}
}

// vendorCA is a throwaway CA standing for a vendor's cloud.
type vendorCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newVendorCA(t *testing.T, name string) *vendorCA {
	t.Helper()
	key := newP256(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name, Organization: []string{"Acme"}},
		NotBefore: manualT0.Add(-365 * day), NotAfter: manualT0.Add(3650 * day), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	return &vendorCA{cert: createCert(t, tmpl, tmpl, key.Public(), key), key: key}
}

// leaf issues a device certificate valid from notBefore for a year, with serial.
func (v *vendorCA) leaf(t *testing.T, cn string, serial int64, notBefore time.Time, mod func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notBefore.Add(365 * day), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if mod != nil {
		mod(tmpl)
	}
	return createCert(t, tmpl, v.cert, newP256(t).Public(), v.key)
}

func createCert(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newP256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemOf(certs ...*x509.Certificate) string {
	var b strings.Builder
	for _, c := range certs {
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	return b.String()
}

func importReq(id, pemText string) protocol.ImportRequest {
	return protocol.ImportRequest{ManualDevice: protocol.ManualDevice{ID: id}, PEM: pemText}
}

func TestImportForeignCertificate(t *testing.T) {
	f := newManualFixture(t)
	ctx := t.Context()
	vendor := newVendorCA(t, "Acme Cloud Device CA")
	first := vendor.leaf(t, "ACME-CAM-0042", 0x4201, manualT0.Add(-10*day), nil)

	req := importReq("porch-cam", "Bag Attributes: from the vendor's portal\n"+pemOf(first, vendor.cert))
	req.Name, req.Family, req.Vendor, req.Model, req.Transaction = "Porch camera", "acme-cam", "Acme", "C42", "tx-1"
	resp := f.do(t, "device/import", req)
	if resp.Status != "ok" || resp.Transaction != "tx-1" {
		t.Fatalf("Do(device/import) = %s %q (transaction %q), want ok echoing tx-1", resp.Status, resp.Error, resp.Transaction)
	}
	var got protocol.DeviceImported
	if err := json.Unmarshal(resp.Data, &got); err != nil {
		t.Fatal(err)
	}
	want := protocol.DeviceImported{ID: "porch-cam", Serial: "4201", NotAfter: first.NotAfter, Issuer: first.Issuer.String(),
		Status: string(inventory.StatusActive)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("device/import answer (-want +got):\n%s", diff)
	}
	dev, err := f.store.Device(ctx, "porch-cam")
	if err != nil {
		t.Fatal(err)
	}
	if dev.Mechanism != inventory.MechanismManual || dev.State != inventory.StateActive || dev.Name != "Porch camera" ||
		dev.Family != "acme-cam" || dev.Vendor != "Acme" || dev.Model != "C42" || dev.Class != "default" {
		t.Errorf("device after import = %+v, want manual, active, with name, family, vendor and model", dev)
	}
	if dev.ClassHash != policy.Default().ClassHash() {
		t.Errorf("device after import has its class under %q, want the policy's %q", dev.ClassHash, policy.Default().ClassHash())
	}
	active, err := f.store.ActiveCertificate(ctx, "porch-cam")
	if err != nil {
		t.Fatalf("ActiveCertificate after import = %v", err)
	}
	if active.Serial != "4201" || !strings.Contains(active.Issuer, "Acme Cloud Device CA") || active.KeyAlgorithm != protocol.KeyP256 ||
		active.Fingerprint != protocol.FingerprintOf(first).Hex() || active.PEM != pemOf(first) {
		t.Errorf("active certificate = %+v, want serial 4201 from Acme's CA with its fingerprint and PEM", active)
	}
	atts, err := f.store.Attempts(ctx, "porch-cam", 0)
	if err != nil || len(atts) != 1 || atts[0].Reason != admin.ReasonImport || atts[0].Outcome != inventory.OutcomeCommitted ||
		atts[0].RequestID != "import-4201" {
		t.Errorf("attempts after import = %+v, %v; want one import-4201, reason import, committed", atts, err)
	}
	evs, err := f.store.Events(ctx, inventory.EventFilter{DeviceID: "porch-cam", Kind: protocol.EventCertActivated})
	if err != nil || len(evs) != 1 || evs[0].Actor != "test" {
		t.Errorf("activation events = %+v, %v; want one by actor test", evs, err)
	}
	if f.changed != 1 || len(f.events) != 1 || f.events[0].Type != protocol.EventCertActivated {
		t.Errorf("after import: Changed called %d times, events %+v; want once and one cert.activated", f.changed, f.events)
	}
	if len(f.broker.published) != 0 {
		t.Errorf("import published %v; a device without an agent has no topics to publish to", f.broker.published)
	}

	t.Run("again is idempotent", func(t *testing.T) {
		before := f.state(t)
		var again protocol.DeviceImported
		f.ok(t, "device/import", importReq("porch-cam", pemOf(first)), &again)
		want.AlreadyImported = true
		if diff := cmp.Diff(want, again); diff != "" {
			t.Errorf("second device/import answer (-want +got):\n%s", diff)
		}
		if after := f.state(t); after != before {
			t.Errorf("second import changed the inventory from %+v to %+v", before, after)
		}
	})

	second := vendor.leaf(t, "ACME-CAM-0042", 0x4202, manualT0.Add(-day), nil)
	t.Run("newer supersedes", func(t *testing.T) {
		var got protocol.DeviceImported
		f.ok(t, "device/import", importReq("porch-cam", pemOf(second, vendor.cert)), &got)
		if got.Serial != "4202" || got.Status != string(inventory.StatusActive) || got.Superseded != "4201" {
			t.Errorf("import of a newer certificate = %+v, want 4202 active superseding 4201", got)
		}
		old, err := f.store.Certificate(ctx, "4201")
		if err != nil || old.Status != inventory.StatusSuperseded {
			t.Errorf("Certificate(4201) = %s, %v; want superseded", old.Status, err)
		}
		if dev, _ := f.store.Device(ctx, "porch-cam"); dev.Name != "Porch camera" {
			t.Errorf("device name after an import without --name = %q, want it kept", dev.Name)
		}
	})
	t.Run("superseded again is idempotent", func(t *testing.T) {
		var got protocol.DeviceImported
		f.ok(t, "device/import", importReq("porch-cam", pemOf(first)), &got)
		if got.Serial != "4201" || got.Status != string(inventory.StatusSuperseded) || !got.AlreadyImported {
			t.Errorf("re-import of the superseded certificate = %+v, want its record, superseded", got)
		}
		if active, _ := f.store.ActiveCertificate(ctx, "porch-cam"); active.Serial != "4202" {
			t.Errorf("active after re-importing the old certificate = %s, want 4202", active.Serial)
		}
	})
	t.Run("older refused", func(t *testing.T) {
		older := vendor.leaf(t, "ACME-CAM-0042", 0x4200, manualT0.Add(-100*day), nil)
		f.refused(t, "device/import", importReq("porch-cam", pemOf(older)), protocol.CodeBadRequest, "newer certificate 4202")
	})
}

func TestImportRefused(t *testing.T) {
	f := newManualFixture(t)
	vendor, other := newVendorCA(t, "Acme Cloud Device CA"), newVendorCA(t, "Other CA")
	leaf := vendor.leaf(t, "cam", 7, manualT0.Add(-day), nil)
	// An agent-run device and an imported one, already in the inventory.
	garage := vendor.leaf(t, "g", 9, manualT0, nil)
	f.ok(t, "device/import", importReq("garage-cam", pemOf(garage)), &protocol.DeviceImported{})
	f.seedAgentDevice(t, "kitchen-plug")
	key, _ := x509.MarshalPKCS8PrivateKey(newP256(t))
	tooMany := strings.Repeat(pemOf(leaf), protocol.MaxImportChain+1)
	tests := []struct {
		name, id, pem, want string
		code                protocol.Code // "" for bad_request
	}{
		{"CA certificate", "cam-1", pemOf(vendor.cert), "is a CA certificate", ""},
		{"garbage", "cam-1", "this is not a certificate", "no CERTIFICATE block", ""},
		{"empty", "cam-1", "", "no CERTIFICATE block", ""},
		{"broken DER", "cam-1", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate 1 of the chain does not parse", ""},
		{"bad id", "Cam 1", pemOf(leaf), "device id", ""},
		{"empty id", "", pemOf(leaf), "device id", ""},
		{"private key", "cam-1", pemOf(leaf) + string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})), "private key", ""},
		{"CSR", "cam-1", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", `"CERTIFICATE REQUEST", want CERTIFICATE`, ""},
		{"too many", "cam-1", tooMany, "more than 8 certificates", ""},
		{"too large", "cam-1", strings.Repeat("x", protocol.MaxImportPEM+1), "over the limit", ""},
		{"wrong order", "cam-1", pemOf(leaf, other.cert), "is not issued by certificate 2", ""},
		{"agent device", "kitchen-plug", pemOf(leaf), "runs hearth-agent", protocol.CodePolicyDenied},
		{"same certificate, other device", "cam-2", pemOf(garage), `already recorded for device "garage-cam"`, ""},
		{"serial of another certificate", "cam-2", pemOf(vendor.leaf(t, "g", 9, manualT0, nil)), "another certificate", ""},
		{"names another device", "cam-1", pemOf(vendor.leaf(t, "x", 10, manualT0, func(c *x509.Certificate) {
			c.URIs = []*url.URL{protocol.DeviceURI("front-door")}
		})), "urn:hearth:device:front-door", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := tt.code
			if code == "" {
				code = protocol.CodeBadRequest
			}
			f.refused(t, "device/import", importReq(tt.id, tt.pem), code, tt.want)
		})
	}
	t.Run("control characters in the name", func(t *testing.T) {
		r := importReq("cam-1", pemOf(leaf))
		r.Name = "evil\x1b[2J"
		f.refused(t, "device/import", r, protocol.CodeBadRequest, "control characters")
	})
	t.Run("not JSON", func(t *testing.T) {
		before := f.state(t)
		if resp := f.s.Do(t.Context(), "test", "device/import", []byte(`{"id": 7}`)); resp.Status != "error" {
			t.Errorf("Do(device/import, id 7) = %s, want an error", resp.Status)
		}
		if after := f.state(t); after != before {
			t.Errorf("a payload that is not an import request changed the inventory")
		}
	})
}

// csrPEM makes a PEM CSR signed by key for cn with the given URIs.
func csrPEM(t *testing.T, key crypto.Signer, cn string, uris ...*url.URL) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, URIs: uris}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func signReq(id, csr string) protocol.SignRequest {
	return protocol.SignRequest{ManualDevice: protocol.ManualDevice{ID: id}, CSR: csr}
}

// verifyChain parses a signed chain and verifies it against the hub's root at now.
func verifyChain(t *testing.T, f *manualFixture, chain string) *x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for rest := []byte(chain); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("chain certificate: %v", err)
		}
		certs = append(certs, c)
	}
	if len(certs) != 2 || !certs[1].Equal(f.ca.Intermediate()) {
		t.Fatalf("chain has %d certificates, want the leaf and the hub's intermediate", len(certs))
	}
	inters := x509.NewCertPool()
	inters.AddCert(certs[1])
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.Root())
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: f.now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("signed chain does not verify against the hub's root: %v", err)
	}
	return certs[0]
}

func TestSignCSR(t *testing.T) {
	f := newManualFixture(t)
	ctx := t.Context()
	key := newP256(t)
	req := signReq("printer", csrPEM(t, key, "printer", protocol.DeviceURI("printer")))
	req.Name = "Office printer"
	var got protocol.DeviceSigned
	f.ok(t, "device/sign", req, &got)
	leaf := verifyChain(t, f, got.Chain)
	if id, err := protocol.DeviceIDFromCert(leaf); err != nil || id != "printer" {
		t.Errorf("DeviceIDFromCert(signed leaf) = %q, %v; want printer", id, err)
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Error("signed leaf does not carry the CSR's key")
	}
	if got.ID != "printer" || got.Serial != leaf.SerialNumber.Text(16) || !got.NotAfter.Equal(manualT0.Add(30*day)) ||
		got.Class != "default" || got.Superseded != "" {
		t.Errorf("device/sign = %+v, want printer's new serial, expiring in 30 days, class default", got)
	}
	dev, err := f.store.Device(ctx, "printer")
	if err != nil || dev.Mechanism != inventory.MechanismManual || dev.State != inventory.StateActive || dev.Name != "Office printer" {
		t.Errorf("device after sign = %+v, %v; want manual, active, named", dev, err)
	}
	active, err := f.store.ActiveCertificate(ctx, "printer")
	if err != nil || active.Serial != got.Serial || active.Status != inventory.StatusActive || active.Issuer != f.ca.Intermediate().Subject.String() {
		t.Errorf("ActiveCertificate(printer) = %+v, %v; want %s, issued by the intermediate", active, err, got.Serial)
	}
	atts, _ := f.store.Attempts(ctx, "printer", 0)
	if len(atts) != 1 || atts[0].Reason != "enroll" || atts[0].Outcome != inventory.OutcomeCommitted || !strings.HasPrefix(atts[0].RequestID, "sign-") {
		t.Errorf("attempts after the first sign = %+v, want one sign-… enroll, committed", atts)
	}

	t.Run("same key refused", func(t *testing.T) {
		f.refused(t, "device/sign", signReq("printer", csrPEM(t, key, "")), protocol.CodePolicyDenied, "rule classes.default.rekey")
	})
	t.Run("new key renews", func(t *testing.T) {
		var again protocol.DeviceSigned
		f.ok(t, "device/sign", signReq("printer", csrPEM(t, newP256(t), "")), &again)
		verifyChain(t, f, again.Chain)
		if again.Superseded != got.Serial || again.Serial == got.Serial {
			t.Errorf("second device/sign = %+v, want a new serial superseding %s", again, got.Serial)
		}
		c, _ := f.store.Certificate(ctx, again.Serial)
		if c.Replaces != got.Serial {
			t.Errorf("renewed certificate replaces %q, want %s", c.Replaces, got.Serial)
		}
		if atts, _ := f.store.Attempts(ctx, "printer", 1); len(atts) != 1 || atts[0].Reason != "command" {
			t.Errorf("latest attempt = %+v, want reason command", atts)
		}
	})
	t.Run("after expiry the upload re-enrolls", func(t *testing.T) {
		f.now = manualT0.Add(60 * day)
		defer func() { f.now = manualT0 }()
		var late protocol.DeviceSigned
		f.ok(t, "device/sign", signReq("printer", csrPEM(t, newP256(t), "printer")), &late)
		if atts, _ := f.store.Attempts(ctx, "printer", 1); len(atts) != 1 || atts[0].Reason != "enroll" {
			t.Errorf("latest attempt after expiry = %+v, want reason enroll", atts)
		}
	})
}

func TestSignRefused(t *testing.T) {
	f := newManualFixture(t)
	f.seedAgentDevice(t, "kitchen-plug")
	key := newP256(t)
	good := csrPEM(t, key, "printer")
	b, _ := pem.Decode([]byte(good))
	tampered := append([]byte(nil), b.Bytes...)
	tampered[len(tampered)-5] ^= 0xff // inside the signature
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	tests := []struct {
		name, id, csr string
		code          protocol.Code
		want          string
	}{
		{"bad signature", "printer", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered})),
			protocol.CodeBadCSR, "signature does not verify"},
		{"other CN", "printer", csrPEM(t, key, "front-door"), protocol.CodeIdentityMismatch, `names "front-door", not device "printer"`},
		{"other URI", "printer", csrPEM(t, key, "", protocol.DeviceURI("front-door")), protocol.CodeIdentityMismatch, "urn:hearth:device:front-door"},
		{"foreign URI", "printer", csrPEM(t, key, "", &url.URL{Scheme: "https", Host: "evil.example"}), protocol.CodeIdentityMismatch, "only urn:hearth:device:printer"},
		{"RSA 1024", "printer", csrPEM(t, rsa1024, "printer"), protocol.CodeWeakKey, "weak key: RSA 1024 bits"},
		{"private key", "printer", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})), protocol.CodeBadCSR, "keep the key on the device"},
		{"garbage", "printer", "not a CSR", protocol.CodeBadCSR, "no PEM block"},
		{"certificate", "printer", pemOf(f.ca.Intermediate()), protocol.CodeBadCSR, `"CERTIFICATE", want CERTIFICATE REQUEST`},
		{"bad id", "Printer!", good, protocol.CodeBadRequest, "device id"},
		{"agent device", "kitchen-plug", csrPEM(t, key, "kitchen-plug"), protocol.CodePolicyDenied, "runs hearth-agent"},
		{"too large", "printer", strings.Repeat("x", protocol.MaxCSRPEM+1), protocol.CodeBadRequest, "over the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.refused(t, "device/sign", signReq(tt.id, tt.csr), tt.code, tt.want)
		})
	}
	t.Run("quarantined device", func(t *testing.T) {
		f.ok(t, "device/sign", signReq("printer", good), &protocol.DeviceSigned{})
		f.ok(t, "device/revoke", protocol.DeviceRequest{ID: "printer"}, &protocol.DeviceRevoked{})
		f.refused(t, "device/sign", signReq("printer", csrPEM(t, newP256(t), "")), protocol.CodeRevoked, "is quarantined")
		f.refused(t, "device/import", importReq("printer", pemOf(newVendorCA(t, "V").leaf(t, "p", 3, manualT0, nil))), protocol.CodeRevoked, "is quarantined")
	})
	t.Run("without the issuer", func(t *testing.T) {
		s := admin.New(admin.Config{Store: f.store, CA: f.ca, Broker: f.broker})
		b, _ := json.Marshal(signReq("printer", csrPEM(t, newP256(t), "printer")))
		if resp := s.Do(t.Context(), "test", "device/sign", b); resp.Status != "error" || !strings.Contains(resp.Error, "needs the issuer") {
			t.Errorf("Do(device/sign) without an issuer = %s %q, want an error saying it needs the issuer", resp.Status, resp.Error)
		}
	})
}

// FuzzManual feeds arbitrary PEM text to device/import and device/sign: a refusal is fine,
// a panic or an answer that is neither ok nor error is not.
func FuzzManual(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "fz"}}, key)
	f.Add(false, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})))
	f.Add(false, "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n")
	f.Add(true, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	f.Add(true, "junk -----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n-----BEGIN X-----\n")
	fx := newManualFixture(f)
	f.Fuzz(func(t *testing.T, imp bool, text string) {
		op, payload := "device/sign", any(signReq("fz", text))
		if imp {
			op, payload = "device/import", importReq("fz", text)
		}
		b, _ := json.Marshal(payload)
		if resp := fx.s.Do(t.Context(), "fuzz", op, b); resp.Status != "ok" && resp.Status != "error" {
			t.Fatalf("Do(%s) status %q", op, resp.Status)
		}
	})
}

// commandRecorder is the renewal scheduler's Commander: it records every renew command.
type commandRecorder struct{ devices []string }

func (c *commandRecorder) Queue(_ context.Context, id string, _ inventory.Command) error {
	c.devices = append(c.devices, id)
	return nil
}

// TestManualDevicesGetReminders runs the real renewal scheduler over an imported and a
// signed device: they are reminded at the policy's thresholds and never commanded.
func TestManualDevicesGetReminders(t *testing.T) {
	f := newManualFixture(t)
	vendor := newVendorCA(t, "Acme Cloud Device CA")
	f.ok(t, "device/import", importReq("porch-cam", pemOf(vendor.leaf(t, "cam", 1, manualT0.Add(-10*day), nil))), &protocol.DeviceImported{})
	var signed protocol.DeviceSigned
	f.ok(t, "device/sign", signReq("printer", csrPEM(t, newP256(t), "printer")), &signed)

	cmds := &commandRecorder{}
	var reminders []protocol.Event
	at := signed.NotAfter.Add(-day + time.Hour) // past the printer's 1-day threshold
	sched := renewal.New(renewal.Config{Store: f.store, Commander: cmds, Now: func() time.Time { return at },
		Notify: func(e protocol.Event) {
			if e.Type == protocol.EventRenewalReminder {
				reminders = append(reminders, e)
			}
		}})
	if _, err := sched.Reconcile(t.Context()); err != nil {
		t.Fatalf("Reconcile() = %v", err)
	}
	if len(reminders) != 1 || reminders[0].DeviceID != "printer" || reminders[0].Data["threshold"] != "1d" ||
		reminders[0].Data["serial"] != signed.Serial {
		t.Errorf("reminders at %s = %+v, want one for printer's %s at threshold 1d (porch-cam's window is months away)",
			at, reminders, signed.Serial)
	}
	if len(cmds.devices) != 0 {
		t.Errorf("the scheduler commanded %v; devices without an agent get reminders, not commands", cmds.devices)
	}
}
