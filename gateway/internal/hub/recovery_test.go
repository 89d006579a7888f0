package hub

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

// TestRecoveryAfterExpiry is issue 12's item 7 through the real broker, under the hub's
// injected clock: a device whose certificate expired within its class's grace connects with
// it (a recovery session), renews with a recovery CSR, commits the new certificate on a
// normal session and carries on; its recovery session may send nothing but that CSR. Past
// the grace the CSR is answered expired: enroll again, and the hub shows the device expired.
func TestRecoveryAfterExpiry(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("classes:\n  - name: default\n    grace: 2d\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := hubkit.Config(t, "policy_file: "+pol+"\n")
	clock := testkit.NewClock(time.Now())
	h := runHub(t, cfg, Options{Version: "test", Now: clock.Now})

	pair1, reply1, _ := enroll(t, h, "cam")
	if err := tryCommit(t, h, "cam", pair1, "enroll-1", reply1.Serial); err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair1.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	clock.Set(leaf.NotAfter.Add(time.Hour)) // expired an hour ago: inside the 2-day grace

	c, err := client(t, h, "cam", "", &pair1)
	if err != nil {
		t.Fatalf("expired certificate inside the grace refused at CONNECT: %v", err)
	}
	// Anything but a recovery CSR replacing the presented certificate is refused.
	key, csr := testkit.KeyAndCSR(t, "cam")
	if _, reply, err := csrRoundTrip(h, c, "cam", key, &protocol.CSR{V: 1, RequestID: "w1", CSR: csr, Reason: protocol.ReasonWindow,
		Replaces: reply1.Serial, Time: clock.Now()}); err == nil || reply.Error == nil || reply.Error.Code != protocol.CodePolicyDenied {
		t.Errorf("window CSR on a recovery session = %+v, %v; want policy_denied", reply.Error, err)
	}
	pair2, reply2, err := csrRoundTrip(h, c, "cam", key, &protocol.CSR{V: 1, RequestID: "rec-1", CSR: csr, Reason: protocol.ReasonRecovery,
		Replaces: reply1.Serial, Time: clock.Now()})
	if err != nil {
		t.Fatalf("recovery CSR: %v", err)
	}
	c.Disconnect(0)
	if err := tryCommit(t, h, "cam", pair2, "rec-1", reply2.Serial); err != nil {
		t.Fatalf("commit of the recovered certificate: %v", err)
	}
	if active, err := h.store.ActiveCertificate(t.Context(), "cam"); err != nil || active.Serial != reply2.Serial {
		t.Errorf("active certificate after recovery = %s, %v; want %s", active.Serial, err, reply2.Serial)
	}

	// Past the grace: told to enroll again.
	pair3, reply3, _ := enroll(t, h, "door")
	if err := tryCommit(t, h, "door", pair3, "enroll-1", reply3.Serial); err != nil {
		t.Fatal(err)
	}
	leaf3, _ := x509.ParseCertificate(pair3.Certificate[0])
	clock.Set(leaf3.NotAfter.Add(3 * 24 * time.Hour))
	c3, err := client(t, h, "door", "", &pair3)
	if err != nil {
		t.Fatalf("expired certificate past the grace refused at CONNECT (it must be told to enroll again): %v", err)
	}
	key3, csr3 := testkit.KeyAndCSR(t, "door")
	_, reply, err := csrRoundTrip(h, c3, "door", key3, &protocol.CSR{V: 1, RequestID: "rec-2", CSR: csr3, Reason: protocol.ReasonRecovery,
		Replaces: reply3.Serial, Time: clock.Now()})
	if err == nil || reply.Error == nil || reply.Error.Code != protocol.CodeExpired {
		t.Errorf("recovery CSR past the grace = %+v, %v; want code expired", reply.Error, err)
	}
	sum, err := h.Admin().Get(t.Context(), "door")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(sum.Problems, "expired") {
		t.Errorf("hub problems of the device past its grace = %v, want expired", sum.Problems)
	}
}
