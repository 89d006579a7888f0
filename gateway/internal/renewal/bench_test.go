package renewal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
)

// BenchmarkReconcileIdleFleet measures a pass over a fleet where nothing is due: the cost
// Run pays every Interval.
func BenchmarkReconcileIdleFleet(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			store := hubkit.Store(b)
			items := make([]inventory.Issuance, n)
			for i := range items {
				h := sha256.Sum256(fmt.Appendf(nil, "%d", i))
				items[i] = inventory.Issuance{
					Device: inventory.Device{ID: fmt.Sprintf("plug-%05d", i), Mechanism: inventory.MechanismAgent},
					Cert: inventory.Certificate{Serial: hex.EncodeToString(h[:10]), NotBefore: t0, NotAfter: t0.Add(30 * day),
						PEM: "x"},
					Attempt: inventory.Attempt{RequestID: "r", Reason: "enroll", StartedAt: t0, FinishedAt: t0},
				}
			}
			for _, err := range store.RecordIssuances(ctx, items) {
				if err != nil {
					b.Fatal(err)
				}
			}
			for _, in := range items {
				if _, _, err := store.Activate(ctx, in.Device.ID, in.Cert.Serial, t0); err != nil {
					b.Fatal(err)
				}
			}
			s := New(Config{Store: store, Commander: &commander{now: time.Now}, Now: func() time.Time { return t0.Add(day) }})
			if _, err := s.Reconcile(ctx); err != nil { // stores every window once
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := s.Reconcile(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
