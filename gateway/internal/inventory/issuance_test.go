package inventory

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/protocol"
)

func TestRecordIssuanceWritesEverything(t *testing.T) {
	s := openTest(t)
	ctx := WithActor(t.Context(), "device:plug-1")
	if err := s.CreateToken(ctx, Token{Hash: "h", DeviceID: "plug-1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	in := issuance("plug-1", "0a", "r1", t0.Add(time.Minute))
	in.TokenHash = "h"
	if err := s.RecordIssuance(ctx, in); err != nil {
		t.Fatalf("RecordIssuance() = %v", err)
	}

	d, err := s.Device(ctx, "plug-1")
	if err != nil || d.State != StateEnrolling || !d.CreatedAt.Equal(t0.Add(time.Minute)) || d.Name != "Device plug-1" {
		t.Errorf("Device() = %+v, %v, want an enrolling device created at %v", d, err, t0.Add(time.Minute))
	}
	a, err := s.Attempt(ctx, "plug-1", "r1")
	want := Attempt{RequestID: "r1", DeviceID: "plug-1", Reason: "enroll", Serial: "0a", StartedAt: t0.Add(time.Minute),
		FinishedAt: t0.Add(time.Minute), Outcome: OutcomeIssued, Latency: 3 * time.Millisecond}
	if err != nil {
		t.Fatalf("Attempt() = %v", err)
	}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("Attempt() (-want +got):\n%s", diff)
	}
	if err := s.CheckToken(ctx, "plug-1", "h", t0); !errors.Is(err, ErrTokenUsed) {
		t.Errorf("CheckToken(after issuance) = %v, want %v", err, ErrTokenUsed)
	}
	evs, _ := s.Events(ctx, EventFilter{DeviceID: "plug-1"})
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, string(e.Kind)+"/"+e.Actor)
	}
	wantKinds := []string{"token.created/device:plug-1", "cert.issued/device:plug-1", "token.used/device:plug-1"}
	if diff := cmp.Diff(wantKinds, kinds); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestRecordIssuanceFailureWritesNothing(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	for _, tok := range []Token{
		{Hash: "good", DeviceID: "plug-1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		{Hash: "other", DeviceID: "plug-9", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		{Hash: "old", DeviceID: "plug-1", CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)},
		{Hash: "spent", DeviceID: "plug-1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)},
	} {
		if err := s.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	used := issuance("plug-1", "01", "r1", t0)
	used.TokenHash = "spent"
	mustIssue(t, s, used)

	at := t0.Add(10 * time.Minute)
	with := func(f func(*Issuance)) Issuance {
		in := issuance("plug-1", "02", "r2", at)
		in.Device.Name = "renamed" // must not survive a failure either
		in.TokenHash = "good"
		f(&in)
		return in
	}
	for _, tc := range []struct {
		name string
		in   Issuance
		want error
	}{
		{"unknown token", with(func(in *Issuance) { in.TokenHash = "nope" }), ErrTokenInvalid},
		{"other device's token", with(func(in *Issuance) { in.TokenHash = "other" }), ErrTokenInvalid},
		{"expired token", with(func(in *Issuance) { in.TokenHash = "old" }), ErrTokenExpired},
		{"used token", with(func(in *Issuance) { in.TokenHash = "spent" }), ErrTokenUsed},
		{"duplicate serial", with(func(in *Issuance) { in.Cert.Serial = "01" }), ErrDuplicate},
		{"duplicate request id", with(func(in *Issuance) { in.Attempt.RequestID = "r1" }), ErrDuplicate},
		{"serial not hex", with(func(in *Issuance) { in.Cert.Serial = "xyz" }), ErrInvalid},
		{"no finish time", with(func(in *Issuance) { in.Attempt.FinishedAt = time.Time{} }), ErrInvalid},
		{"no request id", with(func(in *Issuance) { in.Attempt.RequestID = "" }), ErrInvalid},
		{"validity backwards", with(func(in *Issuance) { in.Cert.NotAfter = in.Cert.NotBefore }), ErrInvalid},
		{"certificate of another device", with(func(in *Issuance) { in.Cert.DeviceID = "plug-2" }), ErrInvalid},
		{"active status", with(func(in *Issuance) { in.Cert.Status = StatusActive }), ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, s)
			if err := s.RecordIssuance(ctx, tc.in); !errors.Is(err, tc.want) {
				t.Errorf("RecordIssuance() = %v, want %v", err, tc.want)
			}
			if after := snapshot(t, s); after != before {
				t.Errorf("rows changed by a failed RecordIssuance:\n%s\nwant\n%s", after, before)
			}
		})
	}
	// The same issuance with its good token then succeeds.
	mustIssue(t, s, with(func(*Issuance) {}))
	if err := s.VerifyAudit(ctx); err != nil {
		t.Errorf("VerifyAudit() = %v", err)
	}
}

func TestRecordIssuancesBatch(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	if err := s.CreateToken(ctx, Token{Hash: "h", DeviceID: "dev-3", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var items []Issuance
	for i := range 6 {
		items = append(items, issuance(fmt.Sprintf("dev-%d", i), fmt.Sprintf("%02x", i), "r", t0))
	}
	items[1].TokenHash = "missing"   // bad token
	items[3].TokenHash = "h"         // good token
	items[4].Cert.Serial = "00"      // same serial as item 0, in the same batch
	items[5].Cert.Serial = "not hex" // refused before the transaction
	errs := s.RecordIssuances(ctx, items)
	want := []error{nil, ErrTokenInvalid, nil, nil, ErrDuplicate, ErrInvalid}
	if len(errs) != len(want) {
		t.Fatalf("RecordIssuances() returned %d errors, want %d", len(errs), len(want))
	}
	for i := range want {
		if !errors.Is(errs[i], want[i]) || (want[i] == nil) != (errs[i] == nil) {
			t.Errorf("RecordIssuances()[%d] = %v, want %v", i, errs[i], want[i])
		}
	}
	for i, committed := range []bool{true, false, true, true, false, false} {
		_, err := s.Device(ctx, fmt.Sprintf("dev-%d", i))
		if committed != (err == nil) {
			t.Errorf("Device(dev-%d) = %v, want committed %v", i, err, committed)
		}
	}
	if c, err := s.Certificate(ctx, "00"); err != nil || c.DeviceID != "dev-0" {
		t.Errorf("Certificate(00) = %s, %v, want dev-0's", c.DeviceID, err)
	}
	if err := s.CheckToken(ctx, "dev-3", "h", t0); !errors.Is(err, ErrTokenUsed) {
		t.Errorf("CheckToken(consumed in batch) = %v, want %v", err, ErrTokenUsed)
	}
	if err := s.VerifyAudit(ctx); err != nil {
		t.Errorf("VerifyAudit() after batch with rollbacks = %v", err)
	}
	evs, _ := s.Events(ctx, EventFilter{Kind: protocol.EventCertIssued})
	if len(evs) != 3 {
		t.Errorf("cert.issued events = %d, want 3", len(evs))
	}
}

func TestRecordIssuancesCancelledWritesNothing(t *testing.T) {
	s := openTest(t)
	before := snapshot(t, s)
	cctx, cancel := context.WithCancel(t.Context())
	cancel()
	errs := s.RecordIssuances(cctx, []Issuance{issuance("a", "01", "r", t0), issuance("b", "02", "r", t0)})
	for i, err := range errs {
		if err == nil {
			t.Errorf("RecordIssuances(cancelled)[%d] = nil, want an error", i)
		}
	}
	if after := snapshot(t, s); after != before {
		t.Errorf("rows changed by a cancelled batch:\n%s\nwant\n%s", after, before)
	}
}

func TestAttempts(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	mustIssue(t, s, issuance("plug-1", "01", "r1", t0))
	mustIssue(t, s, issuance("plug-1", "02", "r2", t0.Add(time.Hour)))
	failed := Attempt{RequestID: "r3", DeviceID: "plug-1", Reason: "window", StartedAt: t0.Add(2 * time.Hour),
		FinishedAt: t0.Add(2 * time.Hour), ErrorCode: "policy_denied", Latency: time.Millisecond}
	if err := s.RecordFailedAttempt(ctx, failed); err != nil {
		t.Fatalf("RecordFailedAttempt() = %v", err)
	}
	for _, tc := range []struct {
		name string
		a    Attempt
		want error
	}{
		{"duplicate", failed, ErrDuplicate},
		{"no request id", Attempt{DeviceID: "plug-1"}, ErrInvalid},
		{"not a failure", Attempt{RequestID: "x", DeviceID: "plug-1", Outcome: OutcomeIssued}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.RecordFailedAttempt(ctx, tc.a); !errors.Is(err, tc.want) {
				t.Errorf("RecordFailedAttempt(%+v) = %v, want %v", tc.a, err, tc.want)
			}
		})
	}

	if err := s.FinishAttempt(ctx, "plug-1", "r1", OutcomeCommitted, "", t0.Add(time.Minute)); err != nil {
		t.Fatalf("FinishAttempt(committed) = %v", err)
	}
	if err := s.FinishAttempt(ctx, "plug-1", "r2", OutcomeRolledBack, "chain_invalid", t0.Add(61*time.Minute)); err != nil {
		t.Fatalf("FinishAttempt(rolled back) = %v", err)
	}
	if err := s.FinishAttempt(ctx, "plug-1", "nope", OutcomeCommitted, "", t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("FinishAttempt(unknown) = %v, want %v", err, ErrNotFound)
	}
	if err := s.FinishAttempt(ctx, "plug-1", "r1", "exploded", "", t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("FinishAttempt(bad outcome) = %v, want %v", err, ErrInvalid)
	}
	if _, err := s.Attempt(ctx, "plug-2", "r1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Attempt(other device) = %v, want %v", err, ErrNotFound)
	}
	r2, _ := s.Attempt(ctx, "plug-1", "r2")
	if r2.Outcome != OutcomeRolledBack || r2.ErrorCode != "chain_invalid" || !r2.FinishedAt.Equal(t0.Add(61*time.Minute)) || r2.Latency != 3*time.Millisecond {
		t.Errorf("Attempt(r2) = %+v, want rolled back chain_invalid at +61m keeping its latency", r2)
	}

	as, err := s.Attempts(ctx, "plug-1", 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range as {
		got = append(got, a.RequestID+"/"+a.Outcome)
	}
	if diff := cmp.Diff([]string{"r3/failed", "r2/rolled_back"}, got); diff != "" {
		t.Errorf("Attempts(limit 2) (-want +got):\n%s", diff)
	}
	if all, _ := s.Attempts(ctx, "plug-1", 0); len(all) != 3 {
		t.Errorf("Attempts(no limit) = %d attempts, want 3", len(all))
	}
}
