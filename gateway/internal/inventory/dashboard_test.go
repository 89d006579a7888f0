package inventory

import (
	"fmt"
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
	if got := queries.Load(); got != 2 {
		t.Errorf("Fleet() ran %d queries for %d devices, want 2", got, n)
	}
	if len(recs) != n {
		t.Fatalf("Fleet() = %d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if id := fmt.Sprintf("d%04d", i); r.Device.ID != id || (r.Active != nil) != (i%2 == 0) {
			t.Fatalf("Fleet()[%d] = %s active %v, want %s with a certificate only when even", i, r.Device.ID, r.Active != nil, id)
		}
	}
	page, err := s.DeviceRecords(t.Context(), []string{"d0002"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(page[0], recs[2]); diff != "" {
		t.Errorf("Fleet() record differs from DeviceRecords (-want +got):\n%s", diff)
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
