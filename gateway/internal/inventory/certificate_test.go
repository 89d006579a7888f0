package inventory

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/protocol"
)

func statuses(t *testing.T, s *Store, device string) map[string]Status {
	t.Helper()
	cs, err := s.Certificates(t.Context(), device)
	if err != nil {
		t.Fatalf("Certificates(%q) = %v", device, err)
	}
	m := map[string]Status{}
	for _, c := range cs {
		m[c.Serial] = c.Status
	}
	return m
}

func TestActivate(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	mustIssue(t, s, issuance("plug-1", "0A", "r1", t0))
	mustIssue(t, s, issuance("plug-1", "0b", "r2", t0.Add(time.Hour)))
	mustIssue(t, s, issuance("plug-1", "0c", "r3", t0.Add(2*time.Hour)))
	mustIssue(t, s, issuance("plug-2", "1a", "r1", t0))
	if err := s.Revoke(ctx, "0c", "keyCompromise", t0); err != nil {
		t.Fatal(err)
	}

	// Steps run in order against the same database.
	for _, tc := range []struct {
		name, device, serial string
		wantPrev             string
		wantChanged          bool
		wantErr              error
		want                 map[string]Status
	}{
		{"first activation", "plug-1", "0a", "", true, nil,
			map[string]Status{"0a": StatusActive, "0b": StatusPending, "0c": StatusRevoked}},
		{"renewal supersedes", "plug-1", "0B", "0a", true, nil,
			map[string]Status{"0a": StatusSuperseded, "0b": StatusActive, "0c": StatusRevoked}},
		{"idempotent", "plug-1", "0b", "", false, nil,
			map[string]Status{"0a": StatusSuperseded, "0b": StatusActive, "0c": StatusRevoked}},
		{"rollback to previous", "plug-1", "0a", "0b", true, nil,
			map[string]Status{"0a": StatusActive, "0b": StatusSuperseded, "0c": StatusRevoked}},
		{"revoked refused", "plug-1", "0c", "", false, ErrRevoked,
			map[string]Status{"0a": StatusActive, "0b": StatusSuperseded, "0c": StatusRevoked}},
		{"other device's certificate", "plug-1", "1a", "", false, ErrNotFound,
			map[string]Status{"0a": StatusActive, "0b": StatusSuperseded, "0c": StatusRevoked}},
		{"unknown serial", "plug-1", "ff", "", false, ErrNotFound,
			map[string]Status{"0a": StatusActive, "0b": StatusSuperseded, "0c": StatusRevoked}},
		{"not hex", "plug-1", "zz", "", false, ErrInvalid,
			map[string]Status{"0a": StatusActive, "0b": StatusSuperseded, "0c": StatusRevoked}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev, changed, err := s.Activate(ctx, tc.device, tc.serial, t0.Add(3*time.Hour))
			if prev != tc.wantPrev || changed != tc.wantChanged || !errors.Is(err, tc.wantErr) {
				t.Errorf("Activate(%q, %q) = %q, %v, %v, want %q, %v, %v", tc.device, tc.serial, prev, changed, err, tc.wantPrev, tc.wantChanged, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, statuses(t, s, "plug-1")); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
		})
	}

	active, err := s.ActiveCertificate(ctx, "plug-1")
	if err != nil || active.Serial != "0a" || !active.ActivatedAt.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("ActiveCertificate() = %s activated %v, %v; want 0a activated %v", active.Serial, active.ActivatedAt, err, t0.Add(3*time.Hour))
	}
	if _, err := s.ActiveCertificate(ctx, "plug-2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ActiveCertificate(none active) = %v, want %v", err, ErrNotFound)
	}
	d, _ := s.Device(ctx, "plug-1")
	if d.State != StateActive {
		t.Errorf("device state after activation = %q, want %q", d.State, StateActive)
	}
	evs, _ := s.Events(ctx, EventFilter{Kind: protocol.EventCertActivated})
	if len(evs) != 3 {
		t.Errorf("cert.activated events = %d, want 3 (one per change)", len(evs))
	}
}

func TestCertificateRoundTripAndOrder(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	in := issuance("plug-1", "00ff", "r1", t0.Add(1500*time.Millisecond))
	in.Cert.Replaces = "0E"
	mustIssue(t, s, in)
	mustIssue(t, s, issuance("plug-1", "01", "r2", t0.Add(time.Hour)))
	mustIssue(t, s, issuance("plug-1", "02", "r3", t0.Add(time.Hour)))

	got, err := s.Certificate(ctx, "00FF")
	if err != nil {
		t.Fatalf("Certificate() = %v", err)
	}
	at := t0.Add(time.Second)
	want := Certificate{
		Serial: "00ff", DeviceID: "plug-1", NotBefore: at.Add(-time.Minute), NotAfter: at.Add(30 * 24 * time.Hour),
		Issuer: in.Cert.Issuer, KeyAlgorithm: in.Cert.KeyAlgorithm, Fingerprint: in.Cert.Fingerprint,
		Status: StatusPending, PEM: in.Cert.PEM, RequestID: "r1", Replaces: "0e", CreatedAt: at,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Certificate() (-want +got):\n%s", diff)
	}
	cs, err := s.Certificates(ctx, "plug-1")
	if err != nil {
		t.Fatal(err)
	}
	var serials []string
	for _, c := range cs {
		serials = append(serials, c.Serial)
	}
	if diff := cmp.Diff([]string{"02", "01", "00ff"}, serials); diff != "" {
		t.Errorf("Certificates() order, newest first (-want +got):\n%s", diff)
	}
	if _, err := s.Certificate(ctx, "abc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Certificate(unknown) = %v, want %v", err, ErrNotFound)
	}
}

func TestRevoke(t *testing.T) {
	s := openTest(t)
	ctx := WithActor(t.Context(), "admin:bob")
	for i, serial := range []string{"01", "02", "03"} {
		mustIssue(t, s, issuance("cam", serial, serial, t0.Add(time.Duration(i)*time.Hour)))
	}
	mustIssue(t, s, issuance("plug", "10", "r", t0))
	if _, _, err := s.Activate(ctx, "cam", "02", t0); err != nil {
		t.Fatal(err)
	}

	if err := s.Revoke(ctx, "01", "superseded", t0.Add(time.Hour)); err != nil {
		t.Fatalf("Revoke() = %v", err)
	}
	if err := s.Revoke(ctx, "01", "again", t0.Add(2*time.Hour)); err != nil {
		t.Fatalf("Revoke(again) = %v", err)
	}
	c, _ := s.Certificate(ctx, "01")
	if c.Status != StatusRevoked || c.RevokeReason != "superseded" || !c.RevokedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("after two revocations: %s %q at %v, want the first (superseded at %v)", c.Status, c.RevokeReason, c.RevokedAt, t0.Add(time.Hour))
	}
	if err := s.Revoke(ctx, "ff", "x", t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke(unknown) = %v, want %v", err, ErrNotFound)
	}

	n, err := s.RevokeDevice(ctx, "cam", "device compromised", t0.Add(3*time.Hour))
	if err != nil || n != 2 {
		t.Errorf("RevokeDevice() = %d, %v, want 2", n, err)
	}
	if n, err := s.RevokeDevice(ctx, "nobody", "x", t0); err != nil || n != 0 {
		t.Errorf("RevokeDevice(no certificates) = %d, %v, want 0, nil", n, err)
	}
	if _, err := s.ActiveCertificate(ctx, "cam"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ActiveCertificate(after RevokeDevice) = %v, want %v", err, ErrNotFound)
	}
	rev, err := s.CRLEntries(ctx, "Hearth Intermediate", t0.Add(4*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var serials []string
	for _, c := range rev {
		serials = append(serials, c.Serial)
	}
	if diff := cmp.Diff([]string{"01", "02", "03"}, serials); diff != "" {
		t.Errorf("CRLEntries() (-want +got):\n%s", diff)
	}
	evs, _ := s.Events(ctx, EventFilter{Kind: protocol.EventCertRevoked})
	if len(evs) != 3 {
		t.Fatalf("cert.revoked events = %d, want 3", len(evs))
	}
	if evs[0].Actor != "admin:bob" || evs[0].Data["serial"] != "01" || evs[1].Data["status"] != string(StatusActive) {
		t.Errorf("cert.revoked events = %+v, want actor admin:bob, serial 01 first, 02 revoked while active", evs)
	}
}

func TestExpiringBefore(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	for i, dev := range []string{"a", "b", "c"} {
		in := issuance(dev, "0"+string(rune('1'+i)), "r", t0)
		in.Cert.NotAfter = t0.Add(time.Duration(i+1) * 24 * time.Hour)
		mustIssue(t, s, in)
		if dev != "c" {
			if _, _, err := s.Activate(ctx, dev, in.Cert.Serial, t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		before time.Time
		want   []string
	}{
		{"none", t0.Add(24 * time.Hour), nil},
		{"first", t0.Add(25 * time.Hour), []string{"01"}},
		{"active only", t0.Add(100 * 24 * time.Hour), []string{"01", "02"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := s.ExpiringBefore(ctx, tc.before)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range cs {
				got = append(got, c.Serial)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ExpiringBefore(%v) (-want +got):\n%s", tc.before, diff)
			}
		})
	}
}
