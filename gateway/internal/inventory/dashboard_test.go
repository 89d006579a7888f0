package inventory

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hearth-pki/hearth/protocol"
)

func TestFleet(t *testing.T) {
	s := openTest(t)
	const n = 1200 // more than two of DevicePage's batches
	fleet(t, s, n)
	queries := countQueries(t, s)
	recs, err := s.Fleet(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := queries.Load(); got != 1 {
		t.Errorf("Fleet() ran %d queries for %d devices, want 1", got, n)
	}
	if len(recs) != n {
		t.Fatalf("Fleet() = %d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if id := fmt.Sprintf("d%04d", i); r.Device.ID != id || (r.Active != nil) != (i%2 == 0) {
			t.Fatalf("Fleet()[%d] = %s active %v, want %s with a certificate only when even", i, r.Device.ID, r.Active != nil, id)
		}
	}
	// The record is DeviceRecords' without the fields Fleet leaves out.
	for _, i := range []int{2, 3} {
		page, err := s.DeviceRecords(t.Context(), []string{recs[i].Device.ID})
		if err != nil {
			t.Fatal(err)
		}
		full := page[0]
		d := full.Device
		want := DeviceRecord{Device: Device{ID: d.ID, Name: d.Name, Family: d.Family, Class: d.Class, Tags: d.Tags, Mechanism: d.Mechanism,
			LastSeen: d.LastSeen, State: d.State, Online: d.Online,
			Health:  Health{ReportedSerial: d.Health.ReportedSerial, ChainOK: d.Health.ChainOK, ClockSkew: d.Health.ClockSkew, At: d.Health.At},
			Renewal: RenewalStatus{State: d.Renewal.State, Failures: d.Renewal.Failures, LastCause: d.Renewal.LastCause}}}
		if c := full.Active; c != nil {
			want.Active = &Certificate{Serial: c.Serial, DeviceID: c.DeviceID, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
				Status: c.Status, ActivatedAt: c.ActivatedAt}
		}
		if diff := cmp.Diff(want, recs[i]); diff != "" {
			t.Errorf("Fleet()[%d] differs from DeviceRecords (-want +got):\n%s", i, diff)
		}
	}
}

func TestAttemptHistoryAndFailures(t *testing.T) {
	s := openTest(t)
	h := time.Hour
	mustIssue(t, s, issuance("a", "0a", "r1", t0.Add(-30*time.Minute)))  // bucket 2, success
	mustIssue(t, s, issuance("b", "0b", "r1", t0.Add(-150*time.Minute))) // bucket 0, success
	cam := issuance("cam", "0c", "r1", t0.Add(-5*h))                     // before the history
	cam.Device.Family = "camera"
	mustIssue(t, s, cam)
	fail := func(dev, req, code string, at time.Time) {
		t.Helper()
		if err := s.RecordFailedAttempt(t.Context(), Attempt{DeviceID: dev, RequestID: req, StartedAt: at, FinishedAt: at,
			ErrorCode: code}); err != nil {
			t.Fatal(err)
		}
	}
	fail("cam", "f1", "policy_denied", t0.Add(-90*time.Minute)) // bucket 1
	fail("cam", "f2", "policy_denied", t0.Add(-80*time.Minute)) // bucket 1
	fail("a", "f3", "weak_key", t0.Add(-10*time.Minute))        // bucket 2
	fail("gone", "f4", "", t0.Add(-4*h))                        // a device never stored, before the history
	if err := s.FinishAttempt(t.Context(), "b", "r1", OutcomeRolledBack, "install_failed", t0); err != nil {
		t.Fatal(err)
	}

	got, err := s.AttemptHistory(t.Context(), t0.Add(-3*h), h, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []AttemptBucket{
		{Start: t0.Add(-3 * h), Failures: 1}, // b, rolled back
		{Start: t0.Add(-2 * h), Failures: 2},
		{Start: t0.Add(-h), Successes: 1, Failures: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AttemptHistory() (-want +got):\n%s", diff)
	}
	if _, err := s.AttemptHistory(t.Context(), t0, 0, 3); err == nil {
		t.Error("AttemptHistory(width 0) = nil error, want one")
	}

	fails, err := s.Failures(t.Context(), t0.Add(-24*h))
	if err != nil {
		t.Fatal(err)
	}
	wantFails := []FailureCount{{"camera", "policy_denied", 2}, {"", "", 1}, {"plug", "install_failed", 1}, {"plug", "weak_key", 1}}
	if diff := cmp.Diff(wantFails, fails); diff != "" {
		t.Errorf("Failures() (-want +got):\n%s", diff)
	}
}

func TestEventPage(t *testing.T) {
	s := openTest(t)
	for i := range 7 {
		actor := "cli"
		if i%2 == 1 {
			actor = "web"
		}
		if _, err := s.AppendEvent(WithActor(t.Context(), actor), Event{Time: t0.Add(time.Duration(i) * time.Minute),
			Kind: protocol.EventRenewalForced, DeviceID: "d", Message: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	q := EventQuery{DeviceID: "d", Limit: 3}
	for range 5 {
		page, err := s.EventPage(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			seen = append(seen, e.Message)
		}
		if len(page) < q.Limit {
			break
		}
		q.Before = page[len(page)-1].Seq
	}
	if diff := cmp.Diff([]string{"6", "5", "4", "3", "2", "1", "0"}, seen); diff != "" {
		t.Errorf("EventPage pages, newest first (-want +got):\n%s", diff)
	}
	web, err := s.EventPage(t.Context(), EventQuery{Actor: "web", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(web) != 3 || web[0].Message != "5" {
		t.Errorf("EventPage(actor web) = %d events starting %+v, want 3 starting with 5", len(web), web)
	}
	actors, err := s.Actors(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"cli", "web"}, actors); diff != "" {
		t.Errorf("Actors() (-want +got):\n%s", diff)
	}
}

// BenchmarkFleet reads 10,000 devices with their active certificates; ns/op is per read of
// the whole fleet.
func BenchmarkFleet(b *testing.B) {
	s := openTest(b)
	items := make([]Issuance, 10_000)
	for i := range items {
		items[i] = issuance(fmt.Sprintf("d%05d", i), fmt.Sprintf("%x", 0x100000+i), "r1", t0)
	}
	for chunk := range 20 {
		for _, err := range s.RecordIssuances(b.Context(), items[chunk*500:(chunk+1)*500]) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, in := range items {
		if _, _, err := s.Activate(b.Context(), in.Device.ID, in.Cert.Serial, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	for b.Loop() {
		recs, err := s.Fleet(b.Context())
		if err != nil || len(recs) != len(items) || recs[0].Active == nil {
			b.Fatalf("Fleet() = %d records, %v", len(recs), err)
		}
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

func TestCampaignCanaries(t *testing.T) {
	s := openTest(t)
	rec := CampaignRecord{Campaign: Campaign{ID: "c1", All: true, Canary: 2, State: CampaignRunning, Started: t0}, Devices: []CampaignDevice{
		{DeviceID: "a", Canary: true, CampaignStage: CampaignStage{Stage: StageCommitted}},
		{DeviceID: "b", Canary: true, CampaignStage: CampaignStage{Stage: StageFailed, Cause: "busy"}},
		{DeviceID: "c", CampaignStage: CampaignStage{Stage: StagePending}},
	}}
	if err := s.CreateCampaign(t.Context(), rec, Event{Time: t0, Kind: protocol.EventCampaignStarted}); err != nil {
		t.Fatal(err)
	}
	got, err := s.CampaignCanaries(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []CanaryCount{{"c1", StageCommitted, 1}, {"c1", StageFailed, 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CampaignCanaries() (-want +got):\n%s", diff)
	}
}
