package inventory

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRecordCommandsRollsBackOnlyTheFailedRecord(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	mustCreateCampaign(t, s, campaignOf(t, s, "c", 3, 0))
	bad := commandOf("dev-001", "cmd-2", t0)
	bad.Campaign = "no-such-campaign" // its entry does not exist: the whole record rolls back
	errs := s.RecordCommands(ctx, []CommandRecord{commandOf("dev-000", "cmd-1", t0), bad,
		commandOf("dev-002", "cmd-3", t0), commandOf("dev-404", "cmd-4", t0)})
	for i, want := range []error{nil, ErrNotFound, nil, ErrNotFound} {
		if (want == nil) != (errs[i] == nil) || want != nil && !errors.Is(errs[i], want) {
			t.Errorf("RecordCommands()[%d] = %v, want %v", i, errs[i], want)
		}
	}
	for dev, want := range map[string]string{"dev-000": `command "cmd-1"`, "dev-002": `command "cmd-3"`} {
		if got := commandState(t, s, dev); !strings.Contains(got, want) || !strings.Contains(got, "events [cmd-") {
			t.Errorf("%s: %s, want %s stored with its event", dev, got, want)
		}
	}
	if got := commandState(t, s, "dev-001"); !strings.Contains(got, `command ""`) || !strings.Contains(got, "events []") ||
		!strings.Contains(got, "renewal idle") {
		t.Errorf("dev-001 after its record failed: %s, want nothing of it written", got)
	}
	if err := s.VerifyAudit(ctx); err != nil {
		t.Errorf("VerifyAudit() after a batch with rolled-back records = %v", err)
	}
}

func TestRecordCommandsFailedCommitWritesNothing(t *testing.T) {
	s := openTest(t)
	mustCreateCampaign(t, s, campaignOf(t, s, "c", 2, 0))
	before := snapshot(t, s)
	defer failOn(t, s, "events", "INSERT")()
	errs := s.RecordCommands(t.Context(), []CommandRecord{commandOf("dev-000", "cmd-1", t0), commandOf("dev-001", "cmd-2", t0)})
	for i, err := range errs {
		if err == nil {
			t.Errorf("RecordCommands()[%d] = nil, want the injected failure", i)
		}
	}
	if after := snapshot(t, s); after != before {
		t.Errorf("after failed records:\n%s\nwant unchanged:\n%s", after, before)
	}
	for _, dev := range []string{"dev-000", "dev-001"} {
		if got := commandState(t, s, dev); !strings.Contains(got, `command ""`) {
			t.Errorf("%s: %s, want no command stored", dev, got)
		}
	}
}

func TestSetRenewals(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	for i := range 3 {
		mustIssue(t, s, issuance(fmt.Sprintf("dev-%d", i), fmt.Sprintf("0%d", i+1), "r", t0))
	}
	sts := map[string]RenewalStatus{
		"dev-0":   {State: RenewalDue, NextAttemptAt: t0.Add(time.Hour), WindowStart: t0, WindowEnd: t0.Add(24 * time.Hour)},
		"dev-2":   {State: RenewalFailing, Failures: 5, LastCause: "no commit", WindowEnd: t0},
		"removed": {State: RenewalDue},
	}
	missing, err := s.SetRenewals(ctx, sts)
	if err != nil {
		t.Fatalf("SetRenewals() = %v", err)
	}
	if diff := cmp.Diff([]string{"removed"}, missing); diff != "" {
		t.Errorf("SetRenewals() missing (-want +got):\n%s", diff)
	}
	for id, want := range map[string]RenewalStatus{"dev-0": sts["dev-0"], "dev-1": {State: RenewalIdle}, "dev-2": sts["dev-2"]} {
		d, err := s.Device(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, d.Renewal); diff != "" {
			t.Errorf("%s renewal (-want +got):\n%s", id, diff)
		}
	}
	if _, err := s.SetRenewals(ctx, map[string]RenewalStatus{"dev-1": {State: "bogus"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetRenewals(unknown state) = %v, want ErrInvalid", err)
	}

	// More than one batch: every device written, across the batches' transactions.
	many := map[string]RenewalStatus{}
	for i := range MaxBatch + 2 {
		id := fmt.Sprintf("many-%04d", i)
		if err := s.UpsertDevice(ctx, Device{ID: id, Mechanism: MechanismAgent}); err != nil {
			t.Fatal(err)
		}
		many[id] = RenewalStatus{State: RenewalDue, Failures: i}
	}
	if missing, err := s.SetRenewals(ctx, many); err != nil || len(missing) != 0 {
		t.Fatalf("SetRenewals(%d devices) = %v, %v", len(many), missing, err)
	}
	for _, id := range []string{"many-0000", fmt.Sprintf("many-%04d", MaxBatch+1)} {
		if d, _ := s.Device(ctx, id); d.Renewal.State != RenewalDue || d.Renewal.Failures != many[id].Failures {
			t.Errorf("%s renewal = %+v, want %+v", id, d.Renewal, many[id])
		}
	}
}

func TestLatestAttempts(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	mustIssue(t, s, issuance("dev-a", "0a", "r1", t0))
	mustIssue(t, s, issuance("dev-a", "0b", "r2", t0.Add(time.Hour)))
	mustIssue(t, s, issuance("dev-b", "0c", "r3", t0))
	mustIssue(t, s, issuance("dev-c", "0d", "r4", t0.Add(time.Hour)))
	mustIssue(t, s, issuance("dev-c", "0e", "r5", t0.Add(time.Hour))) // same start: the later row wins
	got, err := s.LatestAttempts(ctx, []string{"dev-a", "dev-b", "dev-c", "dev-none", "dev-a"})
	if err != nil {
		t.Fatalf("LatestAttempts() = %v", err)
	}
	want := map[string]string{}
	for _, id := range []string{"dev-a", "dev-b", "dev-c"} {
		atts, err := s.Attempts(ctx, id, 1)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = atts[0].RequestID
	}
	gotIDs := map[string]string{}
	for id, a := range got {
		gotIDs[id] = a.RequestID
	}
	if diff := cmp.Diff(map[string]string{"dev-a": "r2", "dev-b": "r3", "dev-c": "r5"}, gotIDs); diff != "" {
		t.Errorf("LatestAttempts() request ids (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, gotIDs); diff != "" {
		t.Errorf("LatestAttempts() disagrees with Attempts(id, 1) (-Attempts +LatestAttempts):\n%s", diff)
	}
}

func TestRecordHealthMarksTheDeviceSeen(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	mustIssue(t, s, issuance("plug-1", "0a", "r", t0))
	h := Health{ReportedSerial: "0a", ChainOK: true, AgentVersion: "0.1.0", At: t0.Add(time.Hour)}
	if err := s.UpdateHealth(ctx, "plug-1", h); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Device(ctx, "plug-1"); d.Online || !d.LastSeen.IsZero() && !d.LastSeen.Before(h.At) {
		t.Fatalf("after UpdateHealth: online %v, last seen %s; want presence untouched", d.Online, d.LastSeen)
	}
	h.At = t0.Add(2 * time.Hour)
	if err := s.RecordHealth(ctx, "plug-1", h); err != nil {
		t.Fatalf("RecordHealth() = %v", err)
	}
	d, err := s.Device(ctx, "plug-1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(h, d.Health); diff != "" || !d.Online || !d.LastSeen.Equal(h.At) {
		t.Errorf("after RecordHealth: online %v, last seen %s, health (-want +got):\n%s; want online, seen at %s", d.Online, d.LastSeen, diff, h.At)
	}
	if err := s.RecordHealth(ctx, "ghost", h); !errors.Is(err, ErrNotFound) {
		t.Errorf("RecordHealth(unknown device) = %v, want ErrNotFound", err)
	}
}
