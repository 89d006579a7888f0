package hub

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

// brokerCertAt opens a TLS connection to the broker, verifying it at the hub clock's time as
// agents at that time would, and returns the certificate it presented.
func brokerCertAt(t *testing.T, h *Hub, now func() time.Time) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", h.BrokerAddr().String(), &tls.Config{RootCAs: h.ca.Roots(), ServerName: "localhost", Time: now})
	if err != nil {
		t.Fatalf("TLS dial to the broker at %v = %v", now(), err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// TestBrokerCertificateRenewedWithoutRestart: under the hub's injected clock, the broker's
// certificate renewed at its renewal time is what new connections get, while a device
// session opened before the swap stays connected and keeps working.
func TestBrokerCertificateRenewedWithoutRestart(t *testing.T) {
	clock := testkit.NewClock(time.Now().Truncate(time.Second))
	h := runHub(t, hubkit.Config(t, ""), Options{Version: "test", Now: clock.Now})
	pair, reply, _ := enroll(t, h, "porch-camera")
	c, err := client(t, h, "porch-camera", "", &pair)
	if err != nil {
		t.Fatalf("mutual TLS login = %v", err)
	}
	commit := func(c mqtt.Client) protocol.Ack {
		t.Helper()
		var ack protocol.Ack
		raw := request(t, c, h.topics.Device("porch-camera", protocol.KindCommit),
			&protocol.Commit{V: 1, RequestID: "enroll-1", Serial: reply.Serial, Outcome: protocol.OutcomeCommitted, Time: clock.Now()},
			h.topics.Device("porch-camera", protocol.KindAck))
		if err := protocol.Decode(raw, &ack); err != nil {
			t.Fatalf("ack %s: %v", raw, err)
		}
		return ack
	}
	if ack := commit(c); ack.Error != nil || ack.Serial != reply.Serial {
		t.Fatalf("commit ack = %+v, want serial %s", ack, reply.Serial)
	}

	before := brokerCertAt(t, h, clock.Now)
	if renewed, err := h.serverCert.Renew(clock.Now()); renewed || err != nil {
		t.Fatalf("Renew(fresh certificate) = %v, %v; want false, nil", renewed, err)
	}
	clock.Add(250 * 24 * time.Hour) // past two thirds of the 365-day lifetime
	if renewed, err := h.serverCert.Renew(clock.Now()); !renewed || err != nil {
		t.Fatalf("Renew(250 days later) = %v, %v; want true, nil", renewed, err)
	}
	after := brokerCertAt(t, h, clock.Now)
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Fatalf("after the renewal new connections still get serial %x", before.SerialNumber)
	}
	if !after.NotAfter.After(before.NotAfter) || after.NotBefore.Before(clock.Now().Add(-time.Hour)) {
		t.Errorf("renewed certificate valid %v to %v, want from about %v, ending after %v", after.NotBefore, after.NotAfter, clock.Now(), before.NotAfter)
	}
	if err := h.ca.Verify(after, clock.Now()); err != nil {
		t.Errorf("renewed broker certificate does not verify under the hub CA: %v", err)
	}
	if got, want := after.DNSNames, before.DNSNames; len(got) != len(want) || got[0] != want[0] {
		t.Errorf("renewed certificate names %v, want %v", got, want)
	}

	// The session opened before the swap is still up and still answered.
	if !c.IsConnectionOpen() {
		t.Fatal("the device session opened before the swap was dropped")
	}
	if ack := commit(c); ack.Serial != reply.Serial {
		t.Errorf("commit over the old session after the swap: ack %+v, want serial %s", ack, reply.Serial)
	}
}
