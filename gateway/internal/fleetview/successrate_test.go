package fleetview

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
)

// TestSuccessRateCountsRenewalsOnly: Home Assistant's 24 h success rate is of renewals, so
// committed enrollments and imports do not raise it, and it is unknown (NaN) while only they
// ran.
func TestSuccessRateCountsRenewalsOnly(t *testing.T) {
	tests := []struct {
		name     string
		renewals []string // outcomes of window renewals within the day
		want     float64  // -1: NaN
	}{
		{"enrollments and imports only", nil, -1},
		{"one renewal committed, one refused", []string{inventory.OutcomeCommitted, inventory.OutcomeFailed}, 50},
		{"one renewal rolled back", []string{inventory.OutcomeRolledBack}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			store, err := inventory.Open(ctx, filepath.Join(t.TempDir(), "hearth.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close() })
			at := fleetNow.Add(-time.Hour)
			issue := func(id, serial, req, reason string) {
				t.Helper()
				err := store.RecordIssuance(ctx, inventory.Issuance{
					Device:  inventory.Device{ID: id, Family: "plug", Mechanism: inventory.MechanismAgent},
					Cert:    inventory.Certificate{Serial: serial, NotBefore: at, NotAfter: at.Add(30 * day)},
					Attempt: inventory.Attempt{RequestID: req, Reason: reason, StartedAt: at, FinishedAt: at}})
				if err != nil {
					t.Fatalf("RecordIssuance(%s) = %v", req, err)
				}
				if err := store.FinishAttempt(ctx, id, req, inventory.OutcomeCommitted, "", at); err != nil {
					t.Fatal(err)
				}
			}
			issue("plug-1", "a1", "e1", "enroll")
			issue("plug-2", "a2", "i1", "import")
			for i, o := range tt.renewals {
				req := fmt.Sprintf("w%d", i)
				if o == inventory.OutcomeFailed {
					err := store.RecordFailedAttempt(ctx, inventory.Attempt{RequestID: req, DeviceID: "plug-1", Reason: "window",
						StartedAt: at, FinishedAt: at, ErrorCode: "policy_denied"})
					if err != nil {
						t.Fatal(err)
					}
					continue
				}
				issue("plug-1", fmt.Sprintf("b%d", i), req, "window")
				if o != inventory.OutcomeCommitted {
					if err := store.FinishAttempt(ctx, "plug-1", req, o, "", at); err != nil {
						t.Fatal(err)
					}
				}
			}
			rec := newRecorder(nil, nil)
			v := New(Config{Store: store, Publish: rec.publish, Now: func() time.Time { return fleetNow }, Interval: time.Millisecond})
			v.SetHomeAssistant(rec)
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- v.Run(rctx) }()
			defer func() { cancel(); <-done }()
			rec.await(t, 0, "the first flush", flushed(true))
			rec.mu.Lock()
			got := rec.hub.SuccessRate24h
			rec.mu.Unlock()
			if tt.want < 0 {
				if !math.IsNaN(got) {
					t.Errorf("SuccessRate24h = %v, want NaN (no renewal ran)", got)
				}
				return
			}
			if got != tt.want {
				t.Errorf("SuccessRate24h = %v, want %v", got, tt.want)
			}
		})
	}
}
