package crl

import (
	"fmt"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// BenchmarkRegenerate measures one CRL regeneration (read the revoked certificates, reserve
// the number, sign, write crl.pem) with n revoked certificates listed: what every revocation
// costs the hub.
func BenchmarkRegenerate(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			f := &fixture{dir: b.TempDir()}
			f.store, f.ca = hubkitStore(b), hubkitCA(b)
			items := make([]inventory.Issuance, n)
			issuer := f.ca.Intermediate().Subject.String()
			for i := range items {
				items[i] = inventory.Issuance{
					Device: inventory.Device{ID: fmt.Sprintf("dev-%d", i), Mechanism: inventory.MechanismAgent},
					Cert: inventory.Certificate{Serial: fmt.Sprintf("%x", i+1), NotBefore: t0, NotAfter: t0.Add(30 * 24 * time.Hour),
						Issuer: issuer, CreatedAt: t0},
					Attempt: inventory.Attempt{RequestID: "r", StartedAt: t0, FinishedAt: t0},
				}
			}
			for i, err := range f.store.RecordIssuances(b.Context(), items) {
				if err != nil {
					b.Fatalf("item %d: %v", i, err)
				}
			}
			for i := range items {
				if _, err := f.store.RevokeCertificate(b.Context(), "", items[i].Cert.Serial,
					inventory.Revocation{Reason: protocol.RevokeKeyCompromise}, t0); err != nil {
					b.Fatal(err)
				}
			}
			p, err := New(Config{Store: f.store, CA: f.ca, Path: f.dir + "/crl.pem", Now: func() time.Time { return t0.Add(time.Hour) }})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				l, err := p.Regenerate(b.Context())
				if err != nil || len(l.RevokedCertificateEntries) != n {
					b.Fatalf("Regenerate() = %v entries, %v", len(l.RevokedCertificateEntries), err)
				}
			}
			b.ReportMetric(float64(len(p.Current())), "crl-bytes")
		})
	}
}
