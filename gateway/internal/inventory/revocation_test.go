package inventory

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/protocol"
)

func TestRevokeIdentityQuarantinesAndSetsEpoch(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	mustIssue(t, s, issuance("cam", "a1", "r1", t0))
	if _, err := s.Commit(ctx, "cam", "r1", "a1", false, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	mustIssue(t, s, issuance("cam", "a2", "r2", t0.Add(time.Hour))) // in flight
	at := t0.Add(2 * time.Hour)
	got, err := s.RevokeIdentity(ctx, "cam", Revocation{Reason: protocol.RevokeKeyCompromise, Note: "SD card lost"}, at)
	if err != nil {
		t.Fatalf("RevokeIdentity() = %v", err)
	}
	if diff := cmp.Diff([]string{"a1", "a2"}, got); diff != "" {
		t.Errorf("RevokeIdentity() serials (-want +got):\n%s", diff)
	}
	d, err := s.Device(ctx, "cam")
	if err != nil || d.State != StateQuarantined {
		t.Errorf("Device().State = %q, %v, want %q", d.State, err, StateQuarantined)
	}
	for _, serial := range []string{"a1", "a2"} {
		l, err := s.LoginOf(ctx, serial)
		if err != nil {
			t.Fatalf("LoginOf(%s) = %v", serial, err)
		}
		c := l.Certificate
		if c.Status != StatusRevoked || c.RevokeCode != 1 || c.RevokeReason != "SD card lost" || !c.RevokedAt.Equal(at) {
			t.Errorf("LoginOf(%s) = %s code %d %q at %v, want revoked code 1 %q at %v", serial, c.Status, c.RevokeCode, c.RevokeReason, c.RevokedAt, "SD card lost", at)
		}
		if l.DeviceState != StateQuarantined || !l.Epoch.Equal(at) {
			t.Errorf("LoginOf(%s) device %q epoch %v, want %q epoch %v", serial, l.DeviceState, l.Epoch, StateQuarantined, at)
		}
	}
	atts, err := s.Attempts(ctx, "cam", 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range atts {
		if a.RequestID == "r2" && (a.Outcome != OutcomeFailed || a.ErrorCode != string(protocol.CodeRevoked)) {
			t.Errorf("attempt r2 = %s %s, want failed revoked", a.Outcome, a.ErrorCode)
		}
	}
	evs, err := s.Events(ctx, EventFilter{DeviceID: "cam", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[protocol.EventType]int{}
	for _, e := range evs {
		kinds[e.Kind]++
		if e.Kind == protocol.EventCertRevoked && e.Data["code"] != "keyCompromise" {
			t.Errorf("cert.revoked event data = %v, want code keyCompromise", e.Data)
		}
	}
	if kinds[protocol.EventCertRevoked] != 2 || kinds[protocol.EventDeviceState] != 1 {
		t.Errorf("events = %v, want 2 cert.revoked and 1 device.state", kinds)
	}

	// Again: nothing more to revoke, still quarantined, the epoch moves on.
	again, err := s.RevokeIdentity(ctx, "cam", Revocation{Reason: protocol.RevokeSuperseded}, at.Add(time.Hour))
	if err != nil || len(again) != 0 {
		t.Errorf("RevokeIdentity(again) = %v, %v, want none", again, err)
	}
	if _, err := s.RevokeIdentity(ctx, "nobody", Revocation{}, at); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeIdentity(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.RevokeIdentity(ctx, "cam", Revocation{Reason: "certificateHold"}, at); !errors.Is(err, ErrInvalid) {
		t.Errorf("RevokeIdentity(certificateHold) = %v, want ErrInvalid", err)
	}

	// Enrolling again makes the device active.
	mustIssue(t, s, issuance("cam", "b1", "r3", at.Add(2*time.Hour)))
	if _, err := s.Commit(ctx, "cam", "r3", "b1", false, at.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.Device(ctx, "cam"); d.State != StateActive {
		t.Errorf("state after enrolling again = %q, want %q", d.State, StateActive)
	}
}

func TestRevokeCertificate(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	mustIssue(t, s, issuance("plug", "c1", "r1", t0))
	was, err := s.RevokeCertificate(ctx, "plug", "C1", Revocation{Reason: protocol.RevokeCessationOfOperation}, t0.Add(time.Hour))
	if err != nil || was.Status != StatusPending || was.DeviceID != "plug" {
		t.Fatalf("RevokeCertificate() = %s of %q, %v, want pending of plug", was.Status, was.DeviceID, err)
	}
	c, _ := s.Certificate(ctx, "c1")
	if c.Status != StatusRevoked || c.RevokeCode != 5 || c.RevokeReason != "cessationOfOperation" {
		t.Errorf("after RevokeCertificate: %s code %d %q", c.Status, c.RevokeCode, c.RevokeReason)
	}
	if d, _ := s.Device(ctx, "plug"); d.State == StateQuarantined {
		t.Errorf("one certificate revoked quarantined the device")
	}
	// Revoking again keeps the first reason.
	if _, err := s.RevokeCertificate(ctx, "plug", "c1", Revocation{Reason: protocol.RevokeKeyCompromise}, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Certificate(ctx, "c1"); c.RevokeCode != 5 {
		t.Errorf("second revocation changed the code to %d", c.RevokeCode)
	}
	if _, err := s.RevokeCertificate(ctx, "plug", "ff", Revocation{}, t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeCertificate(unknown) = %v, want ErrNotFound", err)
	}
	mustIssue(t, s, issuance("lamp", "c2", "r1", t0))
	if _, err := s.RevokeCertificate(ctx, "plug", "c2", Revocation{}, t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeCertificate(another device's) = %v, want ErrNotFound", err)
	}
	if c, _ := s.Certificate(ctx, "c2"); c.Status != StatusPending {
		t.Errorf("another device's certificate is %s after a refused revocation", c.Status)
	}
}

func TestSupersededAtAndRollbackRevokes(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	mustIssue(t, s, issuance("lamp", "d1", "r1", t0))
	if _, err := s.Commit(ctx, "lamp", "r1", "d1", false, t0); err != nil {
		t.Fatal(err)
	}
	mustIssue(t, s, issuance("lamp", "d2", "r2", t0.Add(time.Hour)))
	commit := t0.Add(time.Hour + time.Minute)
	if _, err := s.Commit(ctx, "lamp", "r2", "d2", false, commit); err != nil {
		t.Fatal(err)
	}
	l, _ := s.LoginOf(ctx, "d1")
	if l.Certificate.Status != StatusSuperseded || !l.Certificate.SupersededAt.Equal(commit) {
		t.Errorf("d1 = %s superseded at %v, want superseded at %v", l.Certificate.Status, l.Certificate.SupersededAt, commit)
	}
	// The device goes back to d1 after the commit: d2 is revoked as superseded.
	if _, err := s.Commit(ctx, "lamp", "r2", "d1", true, commit.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]Status{"d1": StatusActive, "d2": StatusRevoked}, statuses(t, s, "lamp")); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if c, _ := s.Certificate(ctx, "d2"); c.RevokeCode != protocol.RevokeSuperseded.Code() {
		t.Errorf("rolled-back certificate code = %d, want superseded", c.RevokeCode)
	}
}

func TestCRLEntries(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	now := t0.Add(24 * time.Hour)
	hub := issuance("a", "e1", "r1", t0) // revoked, listed
	mustIssue(t, s, hub)
	expired := issuance("b", "e2", "r1", t0) // revoked but expired by now: dropped
	expired.Cert.NotAfter = now.Add(-time.Second)
	mustIssue(t, s, expired)
	foreign := issuance("c", "e3", "r1", t0) // an imported device's certificate of another issuer
	foreign.Cert.Issuer = "CN=Vendor CA"
	mustIssue(t, s, foreign)
	mustIssue(t, s, issuance("d", "e4", "r1", t0)) // abandoned: listed as superseded
	mustIssue(t, s, issuance("e", "e5", "r1", t0)) // pending: not listed
	for _, serial := range []string{"e1", "e2", "e3"} {
		if _, err := s.RevokeCertificate(ctx, "", serial, Revocation{Reason: protocol.RevokeKeyCompromise}, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.EndRequest(ctx, "d", "r1", "e4", "", OutcomeExpired, protocol.CauseCommitTimeout, "no commit", t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := s.CRLEntries(ctx, "Hearth Intermediate", now)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		Serial string
		Code   int
	}
	var entries []entry
	for _, c := range got {
		entries = append(entries, entry{c.Serial, c.RevokeCode})
	}
	if diff := cmp.Diff([]entry{{"e1", 1}, {"e4", 4}}, entries); diff != "" {
		t.Errorf("CRLEntries() (-want +got):\n%s", diff)
	}
	if c, _ := s.Certificate(ctx, "e4"); c.Status != StatusAbandoned {
		t.Errorf("e4 = %s, want abandoned", c.Status)
	}
}
