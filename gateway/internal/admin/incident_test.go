package admin

import (
	"context"
	"github.com/hearth-pki/hearth/protocol"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/renewal"
)

func TestIncidentCampaignID(t *testing.T) {
	at := time.Date(2026, 12, 3, 12, 0, 5, 0, time.UTC)
	for _, tc := range []struct{ family, want string }{
		{"acme-cam", "incident-acme-cam-20261203t120005z"},
		{"Acme Cam/v2", "incident-Acme-Cam-v2-20261203t120005z"},
		{strings.Repeat("x", 80), "incident-" + strings.Repeat("x", 32) + "-20261203t120005z"},
	} {
		got := incidentCampaignID(tc.family, at)
		if got != tc.want {
			t.Errorf("incidentCampaignID(%q) = %q, want %q", tc.family, got, tc.want)
		}
		if len(got) > 64 {
			t.Errorf("incidentCampaignID(%q) is %d characters, campaign ids have at most 64", tc.family, len(got))
		}
	}
}

func TestCapitalize(t *testing.T) {
	for in, want := range map[string]string{"porch camera": "Porch camera", "Porch": "Porch", "": "", "3rd lamp": "3rd lamp"} {
		if got := capitalize(in); got != want {
			t.Errorf("capitalize(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCommittedRevokesOnlySuspectCertificates: with a family-compromised incident stored
// (as a hub restarted after it would find it), a commit revokes the previous certificate
// only when it predates the incident and the device is of that family.
func TestCommittedRevokesOnlySuspectCertificates(t *testing.T) {
	ctx := t.Context()
	store, err := inventory.Open(ctx, filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	issue := func(id, family, serial string, at time.Time) {
		t.Helper()
		err := store.RecordIssuance(ctx, inventory.Issuance{
			Device:  inventory.Device{ID: id, Family: family, Mechanism: inventory.MechanismAgent, Path: inventory.PathDirect},
			Cert:    inventory.Certificate{Serial: serial, NotBefore: at, NotAfter: at.Add(30 * 24 * time.Hour)},
			Attempt: inventory.Attempt{RequestID: "r-" + serial, Reason: "enroll", StartedAt: at, FinishedAt: at}})
		if err == nil {
			_, _, err = store.Activate(ctx, id, serial, at)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	issue("cam-1", "acme", "a1", t0)
	issue("lock-1", "bolt", "b1", t0)
	incident := t0.Add(time.Hour)
	if err := store.CreateCampaign(ctx, inventory.CampaignRecord{
		Campaign: inventory.Campaign{ID: incidentCampaignID("acme", incident), Family: "acme", Action: "rekey", State: inventory.CampaignRunning, Started: incident},
		Devices:  []inventory.CampaignDevice{{DeviceID: "cam-1", Serial: "a1", CampaignStage: inventory.CampaignStage{Stage: inventory.StagePending}}},
	}, inventory.Event{Time: incident, Kind: "campaign.started"}); err != nil {
		t.Fatal(err)
	}
	revoked := 0
	s := New(Config{Store: store, Now: func() time.Time { return incident.Add(time.Hour) }, Revoked: func(context.Context) { revoked++ }})

	issue("cam-1", "acme", "a2", incident.Add(time.Minute)) // the re-key
	issue("lock-1", "bolt", "b2", incident.Add(time.Minute))
	s.Committed(ctx, "cam-1", "a1")
	s.Committed(ctx, "lock-1", "b1")
	issue("cam-1", "acme", "a3", incident.Add(time.Hour)) // a later, ordinary renewal
	s.Committed(ctx, "cam-1", "a2")

	for _, tc := range []struct {
		serial  string
		revoked bool
	}{{"a1", true}, {"b1", false}, {"a2", false}} {
		c, err := store.Certificate(ctx, tc.serial)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Status == inventory.StatusRevoked; got != tc.revoked {
			t.Errorf("certificate %s: status %s (reason %q), want revoked %v", tc.serial, c.Status, c.RevokeReason, tc.revoked)
		}
		if tc.revoked && c.RevokeCode != protocol.RevokeKeyCompromise.Code() {
			t.Errorf("certificate %s revoked with reason code %d (%q), want keyCompromise (%d)", tc.serial, c.RevokeCode, c.RevokeReason, protocol.RevokeKeyCompromise.Code())
		}
	}
	if revoked != 1 {
		t.Errorf("the CRL was regenerated %d times, want once", revoked)
	}
}

// nopCommander accepts commands and sends nothing.
type nopCommander struct{}

func (nopCommander) Queue(context.Context, string, inventory.Command) error { return nil }

// TestFamilyCompromisedNoDevices: a family without agent devices plans nothing and starts
// nothing, and leaves no incident behind that later commits would act on.
func TestFamilyCompromisedNoDevices(t *testing.T) {
	ctx := t.Context()
	store, err := inventory.Open(ctx, filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	s := New(Config{Store: store, Scheduler: renewal.New(renewal.Config{Store: store, Commander: nopCommander{}})})
	plan, err := s.FamilyCompromised(ctx, "ghost", true)
	if err != nil || len(plan.Devices) != 0 || !plan.DryRun {
		t.Errorf("FamilyCompromised(ghost, dry run) = %+v, %v; want an empty plan", plan, err)
	}
	if _, err := s.FamilyCompromised(ctx, "ghost", false); err == nil {
		t.Error("FamilyCompromised(ghost) started a campaign over no device")
	}
	if _, ok, _ := s.incidentSince(ctx, "ghost"); ok {
		t.Error("a campaign that did not start left an incident behind")
	}
	if _, err := s.FamilyCompromised(ctx, "", true); err == nil {
		t.Error("FamilyCompromised without a family = nil error")
	}
}
