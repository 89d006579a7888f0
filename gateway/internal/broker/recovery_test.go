package broker

import (
	"crypto/tls"
	"net/url"
	"testing"
	"time"

	"crypto/x509"
	"crypto/x509/pkix"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// expiredDevice issues a device certificate for id that expired an hour ago.
func expiredDevice(t *testing.T, ca *testkit.CA, id string) tls.Certificate {
	t.Helper()
	now := time.Now()
	return ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: id}, URIs: []*url.URL{protocol.DeviceURI(id)},
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}).TLS
}

// TestRecoverySession: with AcceptExpired, a device certificate of the hub CA that expired
// gets a recovery session — its CSR reaches the hub, marked Expired, nothing else it
// publishes does, and it is not reported online — while one of another CA, expired or not,
// still fails the handshake. Without AcceptExpired, the expired certificate fails the
// handshake as before.
func TestRecoverySession(t *testing.T) {
	e := start(t, func(c *Config) { c.AcceptExpired = true })
	old := expiredDevice(t, e.pki.CA, "dev-a")
	c := mustConnect(t, e.clientOpts("dev-a", &old))
	for _, kind := range []protocol.Kind{protocol.KindHealth, protocol.KindCommit, protocol.KindCSR} {
		if tok := c.Publish(e.topic.Device("dev-a", kind), 1, false, `{"v":1}`); !tok.WaitTimeout(waitFor) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", kind, tok.Error())
		}
	}
	m := e.rec.next(t)
	if m.topic.Kind != protocol.KindCSR || !m.from.Expired || m.from.Role != RoleDevice || m.from.DeviceID != "dev-a" {
		t.Errorf("first message to the hub = %s from %+v, want the CSR from an expired dev-a session", m.topic.Kind, m.from)
	}
	if n := len(e.rec.all()); n != 1 {
		t.Errorf("%d messages reached the hub, want only the CSR", n)
	}
	if e.b.Online("dev-a") {
		t.Error("a recovery session counts the device online")
	}
	// A valid certificate of the same device is an ordinary session.
	mustConnect(t, e.clientOpts("dev-a:new", &e.a.cert))
	if ev := e.pres.next(t); !ev.online || ev.id.Expired {
		t.Errorf("session event of the valid certificate = %+v, want online, not expired", ev)
	}

	foreign := testkit.NewCA(t, "Elsewhere")
	if _, err := connect(t, e.clientOpts("dev-a:x", &foreign.Client(t, "dev-a", protocol.DeviceURI("dev-a")).TLS)); err == nil {
		t.Error("a certificate of another CA connected")
	}
	expiredForeign := expiredDevice(t, foreign, "dev-a")
	if _, err := connect(t, e.clientOpts("dev-a:y", &expiredForeign)); err == nil {
		t.Error("an expired certificate of another CA connected")
	}

	strict := start(t, nil)
	oldStrict := expiredDevice(t, strict.pki.CA, "dev-a")
	if _, err := connect(t, strict.clientOpts("dev-a", &oldStrict)); err == nil {
		t.Error("without AcceptExpired an expired certificate connected")
	}
}
