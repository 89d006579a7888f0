package hub

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

// writePair writes pair's chain and key for mosquitto_sub and returns the two paths.
func writePair(t *testing.T, dir, name string, pair tls.Certificate) (cert, key string) {
	t.Helper()
	var chain []byte
	for _, der := range pair.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	der, err := x509.MarshalECPrivateKey(pair.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cert, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// TestOldKeysDieAndQuarantine is issue 12's proof through the real broker: after a renewal's
// commit the superseded certificate logs in only during the overlap (a real mosquitto_sub
// presenting it afterwards is refused, the new one is accepted); revoking the device drops
// its session, refuses every certificate it held, lists them on the CRL with their reason
// and quarantines it; enrolling again with a new token makes it active.
func TestOldKeysDieAndQuarantine(t *testing.T) {
	sub := testkit.RequirePeer(t, "mosquitto_sub")
	cfg := hubkit.Config(t, "superseded_overlap: 1m\n")
	clock := testkit.NewClock(time.Now())
	h := runHub(t, cfg, Options{Version: "test", Now: clock.Now})
	ctx := t.Context()

	pair1, reply1, _ := enroll(t, h, "cam")
	if err := tryCommit(t, h, "cam", pair1, "enroll-1", reply1.Serial); err != nil {
		t.Fatal(err)
	}
	pair2, serial2, err := tryRenew(t, h, "cam", pair1, reply1.Serial, "r2")
	if err != nil {
		t.Fatal(err)
	}
	if err := tryCommit(t, h, "cam", pair2, "r2", serial2); err != nil {
		t.Fatal(err)
	}
	// Inside the overlap the superseded pair still logs in (an agent mid-reconnect).
	if c, err := client(t, h, "cam", "", &pair1); err != nil {
		t.Errorf("superseded certificate inside the overlap refused: %v", err)
	} else {
		c.Disconnect(0)
	}

	clock.Add(time.Minute + time.Second)
	dir := t.TempDir()
	root := testkit.WritePEM(t, dir, "root.pem", "CERTIFICATE", h.ca.Root().Raw)
	host, port, _ := strings.Cut(h.BrokerAddr().String(), ":")
	mosquittoSub := func(pair tls.Certificate, name string) (string, error) {
		cert, key := writePair(t, dir, name, pair)
		out, err := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "--cafile", root, "--cert", cert, "--key", key,
			"-i", "cam:"+name, "-V", "mqttv311", "-t", "hearth/v1/crl", "-C", "1", "-W", "10").CombinedOutput()
		return string(out), err
	}
	if out, err := mosquittoSub(pair1, "superseded"); err == nil {
		t.Errorf("mosquitto_sub with the superseded certificate after the overlap succeeded:\n%s", out)
	}
	if out, err := mosquittoSub(pair2, "active"); err != nil || !strings.Contains(out, "BEGIN X509 CRL") {
		t.Errorf("mosquitto_sub with the active certificate = %v:\n%s\nwant the retained CRL", err, out)
	}

	// Revoke the device: its live session is dropped, nothing it held logs in.
	live, err := client(t, h, "cam", "", &pair2)
	if err != nil {
		t.Fatal(err)
	}
	var revoked protocol.DeviceRevoked
	resp := h.Admin().Do(ctx, "test", "device/revoke", []byte(`{"id":"cam","reason":"keyCompromise","note":"stolen"}`))
	if resp.Status != "ok" {
		t.Fatalf("device/revoke = %+v", resp)
	}
	if err := remarshal(resp.Data, &revoked); err != nil || revoked.Revoked != 2 || revoked.Disconnected < 1 || !revoked.Quarantined {
		t.Errorf("device/revoke = %+v (%v), want 2 revoked, a session dropped, quarantined", revoked, err)
	}
	testkit.Eventually(t, 5*time.Second, func() bool { return !live.IsConnectionOpen() }, "the revoked device's session is still open")
	for name, pair := range map[string]tls.Certificate{"active": pair2, "superseded": pair1} {
		if _, err := client(t, h, "cam", "", &pair); err == nil {
			t.Errorf("the revoked %s certificate logged in", name)
		}
	}
	l, err := parseCRL(h.crl.Current())
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int{}
	for _, e := range l.RevokedCertificateEntries {
		codes[e.SerialNumber.Text(16)] = e.ReasonCode
	}
	for _, serial := range []string{reply1.Serial, serial2} {
		if code, ok := codes[serial]; !ok || code != 1 {
			t.Errorf("CRL entry of %s = %d, %v; want keyCompromise (1)", serial, code, ok)
		}
	}
	if d, _ := h.store.Device(ctx, "cam"); d.State != inventory.StateQuarantined {
		t.Errorf("state after the revocation = %q, want quarantined", d.State)
	}

	// Enrolling again with a new token: the device is active again.
	tok, err := h.Admin().CreateToken(ctx, protocol.TokenRequest{ID: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client(t, h, "cam", tok.Token, nil)
	if err != nil {
		t.Fatalf("enrollment login of the quarantined device: %v", err)
	}
	key, csr := testkit.KeyAndCSR(t, "cam")
	pair3, reply3, err := csrRoundTrip(h, c, "cam", key, &protocol.CSR{V: 1, RequestID: "enroll-2", CSR: csr, Reason: protocol.ReasonEnroll, Time: time.Now()})
	if err != nil {
		t.Fatalf("enrolling again: %v", err)
	}
	c.Disconnect(0)
	if err := tryCommit(t, h, "cam", pair3, "enroll-2", reply3.Serial); err != nil {
		t.Fatalf("commit after enrolling again: %v", err)
	}
	if d, _ := h.store.Device(ctx, "cam"); d.State != inventory.StateActive {
		t.Errorf("state after enrolling again = %q, want active", d.State)
	}
}

// remarshal converts a response's data into out.
func remarshal(data any, out any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

func parseCRL(raw []byte) (*x509.RevocationList, error) {
	b, _ := pem.Decode(raw)
	if b == nil {
		return nil, fmt.Errorf("no PEM CRL in %q", raw)
	}
	return x509.ParseRevocationList(b.Bytes)
}
