package inventory

import (
	"testing"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

func TestPrune(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	life := 30 * 24 * time.Hour
	record := func(serial, req string, at time.Time) {
		t.Helper()
		err := s.RecordIssuance(ctx, Issuance{
			Device:  Device{ID: "cam", Mechanism: MechanismAgent},
			Cert:    Certificate{Serial: serial, NotBefore: at, NotAfter: at.Add(life)},
			Attempt: Attempt{RequestID: req, StartedAt: at, FinishedAt: at},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	record("a1", "r1", t0)                       // superseded by a2, expired long ago: pruned
	record("a2", "r2", t0.Add(20*24*time.Hour))  // superseded by a4, expired long ago: pruned
	record("a3", "r3", t0.Add(25*24*time.Hour))  // abandoned, expired long ago: pruned
	record("a4", "r4", t0.Add(200*24*time.Hour)) // active: kept
	for _, c := range []struct{ serial, req string }{{"a1", "r1"}, {"a2", "r2"}} {
		if _, err := s.Commit(ctx, "cam", c.req, c.serial, false, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.EndRequest(ctx, "cam", "r3", "a3", "", OutcomeExpired, "", "test", t0.Add(26*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, "cam", "r4", "a4", false, t0.Add(200*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Prune(ctx, t0.Add(150*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got != (Pruned{Attempts: 3, Certificates: 3}) {
		t.Errorf("Prune = %+v, want 3 attempts and 3 certificates", got)
	}
	certs, err := s.Certificates(ctx, "cam")
	if err != nil || len(certs) != 1 || certs[0].Serial != "a4" {
		t.Errorf("certificates after Prune = %+v, %v; want only a4", certs, err)
	}
	if _, err := s.Attempt(ctx, "cam", "r4"); err != nil {
		t.Errorf("latest attempt pruned: %v", err)
	}
	if err := s.VerifyAudit(ctx); err != nil {
		t.Errorf("audit chain after Prune: %v", err)
	}
}

func TestNextCRLNumber(t *testing.T) {
	s := openTest(t)
	for want := int64(1); want <= 3; want++ {
		n, err := s.NextCRLNumber(t.Context())
		if err != nil || n.Int64() != want {
			t.Fatalf("NextCRLNumber() = %v, %v; want %d", n, err, want)
		}
	}
}

// TestEndRequestEvent: a rolled-back request's audit record names the certificate the
// device stays on as serial and the abandoned one as failed, as the spec's event table says.
func TestEndRequestEvent(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct{ serial, req string }{{"a1", "r1"}, {"a2", "r2"}} {
		if err := s.RecordIssuance(ctx, Issuance{Device: Device{ID: "cam", Mechanism: MechanismAgent},
			Cert:    Certificate{Serial: c.serial, NotBefore: at, NotAfter: at.Add(time.Hour)},
			Attempt: Attempt{RequestID: c.req, StartedAt: at, FinishedAt: at}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Commit(ctx, "cam", "r1", "a1", false, at); err != nil {
		t.Fatal(err)
	}
	if err := s.EndRequest(ctx, "cam", "r2", "a2", "a1", OutcomeRolledBack, protocol.CauseTimeout, "the agent rolled back", at); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(ctx, EventFilter{Kind: protocol.EventRenewalRolledBack})
	if err != nil || len(evs) != 1 {
		t.Fatalf("rolled_back events = %v, %v; want one", evs, err)
	}
	if d := evs[0].Data; d["serial"] != "a1" || d["failed"] != "a2" || d["request_id"] != "r2" {
		t.Errorf("rolled_back data = %v, want serial a1, failed a2, request_id r2", d)
	}
}
