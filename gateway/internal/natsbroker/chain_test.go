package natsbroker

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

func pemOf(ders ...[]byte) []string {
	var out []string
	for _, d := range ders {
		out = append(out, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})))
	}
	return out
}

func TestVerifyChain(t *testing.T) {
	hub, other := testkit.NewCA(t, "hub"), testkit.NewCA(t, "other")
	dev := hub.Client(t, "hall", protocol.DeviceURI("hall"))
	expired := hub.Issue(t, &x509.Certificate{Subject: dev.Cert.Subject, URIs: dev.Cert.URIs, NotBefore: time.Now().Add(-48 * time.Hour),
		NotAfter: time.Now().Add(-time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	stranger := other.Client(t, "hall", protocol.DeviceURI("hall"))
	server := hub.Server(t, "127.0.0.1")
	tests := []struct {
		name          string
		tls           *jwt.ClientTLS
		acceptExpired bool
		wantLeaf      bool
	}{
		{"no TLS information", nil, false, false},
		{"no certificate", &jwt.ClientTLS{}, false, false},
		{"device chain", &jwt.ClientTLS{Certs: pemOf(dev.Cert.Raw, hub.Intermediate.Raw)}, false, true},
		{"verified chain of a node with tls.verify", &jwt.ClientTLS{VerifiedChains: []jwt.StringList{pemOf(dev.Cert.Raw, hub.Intermediate.Raw, hub.Root.Raw)}}, false, true},
		{"expired, recovery allowed", &jwt.ClientTLS{Certs: pemOf(expired.Cert.Raw, hub.Intermediate.Raw)}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &Broker{cfg: Config{ClientCAs: hub.Pool(), AcceptExpired: tt.acceptExpired, Now: time.Now}}
			leaf, err := b.verifyChain(tt.tls)
			if err != nil || (leaf != nil) != tt.wantLeaf {
				t.Fatalf("verifyChain = %v, %v; want a leaf %v", leaf, err, tt.wantLeaf)
			}
		})
	}
	for _, bad := range []struct {
		name string
		tls  *jwt.ClientTLS
	}{
		{"another CA", &jwt.ClientTLS{Certs: pemOf(stranger.Cert.Raw, other.Intermediate.Raw)}},
		{"no intermediate", &jwt.ClientTLS{Certs: pemOf(dev.Cert.Raw)}},
		{"expired without recovery", &jwt.ClientTLS{Certs: pemOf(expired.Cert.Raw, hub.Intermediate.Raw)}},
		{"a server certificate", &jwt.ClientTLS{Certs: pemOf(server.Cert.Raw, hub.Intermediate.Raw)}},
		{"not PEM", &jwt.ClientTLS{Certs: []string{"garbage"}}},
		{"not a certificate", &jwt.ClientTLS{Certs: []string{string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}}))}}},
	} {
		t.Run(bad.name, func(t *testing.T) {
			b := &Broker{cfg: Config{ClientCAs: hub.Pool(), Now: time.Now}}
			if leaf, err := b.verifyChain(bad.tls); !errors.Is(err, broker.ErrRefused) || leaf != nil {
				t.Errorf("verifyChain = %v, %v; want ErrRefused", leaf, err)
			}
		})
	}
}

// TestVerifyChainLiveRoots: with ClientRoots, each callout verifies against the roots the
// hub's CA holds then, not those of the hub's start: after a root rotation a device of the
// new root is let in, and once the previous root retired its devices are not.
func TestVerifyChainLiveRoots(t *testing.T) {
	old, next := testkit.NewCA(t, "old"), testkit.NewCA(t, "new")
	oldDev, newDev := old.Client(t, "hall", protocol.DeviceURI("hall")), next.Client(t, "porch", protocol.DeviceURI("porch"))
	both := old.Pool()
	both.AddCert(next.Root)
	var roots atomic.Pointer[x509.CertPool]
	roots.Store(old.Pool())
	b := &Broker{cfg: Config{ClientCAs: old.Pool(), ClientRoots: roots.Load, Now: time.Now}}
	for _, step := range []struct {
		name     string
		pool     *x509.CertPool
		old, new bool // accepted
	}{
		{"before the rotation", old.Pool(), true, false},
		{"during a root rotation", both, true, true},
		{"after the previous root retired", next.Pool(), false, true},
	} {
		roots.Store(step.pool)
		for _, d := range []struct {
			name string
			tls  *jwt.ClientTLS
			want bool
		}{
			{"old root's device", &jwt.ClientTLS{Certs: pemOf(oldDev.Cert.Raw, old.Intermediate.Raw)}, step.old},
			{"new root's device", &jwt.ClientTLS{Certs: pemOf(newDev.Cert.Raw, next.Intermediate.Raw)}, step.new},
		} {
			if leaf, err := b.verifyChain(d.tls); (err == nil && leaf != nil) != d.want {
				t.Errorf("%s: verifyChain(%s) = %v, %v; want accepted %v", step.name, d.name, leaf != nil, err, d.want)
			}
		}
	}
}

// FuzzVerifyChain: whatever certificates a client presented, verifyChain never panics and
// accepts nothing that does not chain to the hub's root.
func FuzzVerifyChain(f *testing.F) {
	hub := testkit.NewCA(f, "hub")
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte{})
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hub.Intermediate.Raw}), hub.Root.Raw)
	f.Fuzz(func(t *testing.T, first, second []byte) {
		b := &Broker{cfg: Config{ClientCAs: hub.Pool(), Now: time.Now}}
		leaf, err := b.verifyChain(&jwt.ClientTLS{Certs: []string{string(first), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: second}))}})
		if err == nil && leaf != nil && leaf.IsCA {
			t.Errorf("verifyChain accepted a CA certificate as a client's")
		}
	})
}
