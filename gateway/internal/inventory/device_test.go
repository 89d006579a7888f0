package inventory

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/protocol"
)

func TestUpsertDevice(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	created := Device{
		ID: "plug-1", Name: "Kitchen plug", Family: "plug", Model: "P1", Vendor: "Acme", Firmware: "1.0",
		Class: "standard", Tags: []string{"kitchen", "power"}, Path: PathDirect, Mechanism: MechanismAgent,
		CreatedAt: t0.Add(500 * time.Millisecond), LastSeen: t0,
	}
	if err := s.UpsertDevice(ctx, created); err != nil {
		t.Fatalf("UpsertDevice(new) = %v", err)
	}
	want := created
	want.CreatedAt = t0 // truncated to the second
	want.State = StateEnrolling
	want.Renewal.State = RenewalIdle
	got, err := s.Device(ctx, "plug-1")
	if err != nil {
		t.Fatalf("Device() = %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Device() after create (-want +got):\n%s", diff)
	}

	health := Health{ReportedSerial: "0a", ReportedNotAfter: t0.Add(time.Hour), ChainOK: true,
		ClockSkew: -1500 * time.Millisecond, AgentVersion: "0.1.0", LastError: "none", At: t0}
	renewal := RenewalStatus{State: RenewalFailing, Failures: 3, NextAttemptAt: t0.Add(time.Minute),
		LastCause: "timeout", WindowStart: t0, WindowEnd: t0.Add(time.Hour)}
	if err := s.UpdateHealth(ctx, "plug-1", health); err != nil {
		t.Fatalf("UpdateHealth() = %v", err)
	}
	if err := s.SetRenewal(ctx, "plug-1", renewal); err != nil {
		t.Fatalf("SetRenewal() = %v", err)
	}
	if err := s.SetOnline(ctx, "plug-1", true, t0.Add(2*time.Hour)); err != nil {
		t.Fatalf("SetOnline() = %v", err)
	}

	// An update changes only the descriptive fields that are set.
	update := Device{ID: "plug-1", Firmware: "1.1", Tags: []string{}, State: StateQuarantined, Online: false,
		CreatedAt: t0.Add(time.Hour), LastSeen: t0.Add(time.Hour)}
	if err := s.UpsertDevice(ctx, update); err != nil {
		t.Fatalf("UpsertDevice(update) = %v", err)
	}
	want.Firmware = "1.1"
	want.Tags = nil
	want.Health = health
	want.Renewal = renewal
	want.Online = true
	want.LastSeen = t0.Add(2 * time.Hour)
	got, err = s.Device(ctx, "plug-1")
	if err != nil {
		t.Fatalf("Device() = %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Device() after update (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name string
		d    Device
	}{
		{"no id", Device{Name: "x"}},
		{"bad state", Device{ID: "a", State: "sleeping"}},
		{"bad path", Device{ID: "a", Path: "carrier pigeon"}},
		{"bad mechanism", Device{ID: "a", Mechanism: "magic"}},
		{"bad utf-8", Device{ID: "a", Name: "\xff"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.UpsertDevice(ctx, tc.d); !errors.Is(err, ErrInvalid) {
				t.Errorf("UpsertDevice(%+v) = %v, want %v", tc.d, err, ErrInvalid)
			}
		})
	}
}

func TestDevicesSortedAndCounted(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	for _, id := range []string{"c", "a", "b"} {
		if err := s.UpsertDevice(ctx, Device{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := s.Devices(ctx)
	if err != nil {
		t.Fatalf("Devices() = %v", err)
	}
	var ids []string
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	if diff := cmp.Diff([]string{"a", "b", "c"}, ids); diff != "" {
		t.Errorf("Devices() ids (-want +got):\n%s", diff)
	}
	if n, err := s.CountDevices(ctx); err != nil || n != 3 {
		t.Errorf("CountDevices() = %d, %v, want 3", n, err)
	}
}

func TestDeviceUpdatesOfMissingDevice(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	for name, err := range map[string]error{
		"Device":       func() error { _, err := s.Device(ctx, "ghost"); return err }(),
		"UpdateHealth": s.UpdateHealth(ctx, "ghost", Health{}),
		"SetOnline":    s.SetOnline(ctx, "ghost", true, t0),
		"SetRenewal":   s.SetRenewal(ctx, "ghost", RenewalStatus{}),
		"SetState":     s.SetState(ctx, "ghost", StateActive, t0),
		"RemoveDevice": s.RemoveDevice(ctx, "ghost", t0),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s(ghost) = %v, want %v", name, err, ErrNotFound)
		}
	}
	if err := s.SetRenewal(ctx, "ghost", RenewalStatus{State: "panicking"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetRenewal(bad state) = %v, want %v", err, ErrInvalid)
	}
	if err := s.SetState(ctx, "ghost", "asleep", t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetState(bad state) = %v, want %v", err, ErrInvalid)
	}
}

func TestSetStateAudited(t *testing.T) {
	s := openTest(t)
	ctx := WithActor(t.Context(), "admin:alice")
	if err := s.UpsertDevice(ctx, Device{ID: "cam", State: StateActive}); err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{StateQuarantined, StateQuarantined, StateActive} {
		if err := s.SetState(ctx, "cam", st, t0); err != nil {
			t.Fatalf("SetState(%q) = %v", st, err)
		}
	}
	d, err := s.Device(ctx, "cam")
	if err != nil || d.State != StateActive {
		t.Errorf("Device().State = %q, %v, want %q", d.State, err, StateActive)
	}
	evs, err := s.Events(ctx, EventFilter{Kind: protocol.EventDeviceState})
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]string{{"from": "active", "to": "quarantined"}, {"from": "quarantined", "to": "active"}}
	var got []map[string]string
	for _, e := range evs {
		got = append(got, e.Data)
		if e.Actor != "admin:alice" {
			t.Errorf("event actor = %q, want admin:alice", e.Actor)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state events (-want +got):\n%s", diff)
	}
}

func TestRemoveDeviceKeepsAudit(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	if err := s.CreateToken(ctx, Token{Hash: "h1", DeviceID: "plug-1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, Token{Hash: "h2", DeviceID: "plug-2", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	mustIssue(t, s, issuance("plug-1", "0a", "r1", t0))
	if err := s.RemoveDevice(ctx, "plug-1", t0); err != nil {
		t.Fatalf("RemoveDevice() = %v", err)
	}
	if _, err := s.Device(ctx, "plug-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Device(removed) = %v, want %v", err, ErrNotFound)
	}
	toks, _ := s.Tokens(ctx)
	if len(toks) != 1 || toks[0].DeviceID != "plug-2" {
		t.Errorf("Tokens() after removal = %+v, want only plug-2's", toks)
	}
	if _, err := s.Certificate(ctx, "0a"); err != nil {
		t.Errorf("Certificate(removed device's) = %v, want it kept", err)
	}
	evs, _ := s.Events(ctx, EventFilter{DeviceID: "plug-1", Kind: protocol.EventDeviceRemoved})
	if len(evs) != 1 {
		t.Errorf("device.removed events = %d, want 1", len(evs))
	}
	if err := s.RemoveDevice(ctx, "plug-1", t0); !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveDevice(again) = %v, want %v", err, ErrNotFound)
	}
}

func TestSubject(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	for _, d := range []Device{
		{ID: "tagged", Family: "plug", Tags: []string{"kitchen", "power"}, Path: PathDirect, Mechanism: MechanismAgent},
		{ID: "untagged", Family: "sensor", Path: PathDirect, Mechanism: MechanismAgent},
	} {
		if err := s.UpsertDevice(ctx, d); err != nil {
			t.Fatalf("UpsertDevice(%q) = %v", d.ID, err)
		}
	}
	tests := []struct {
		id      string
		want    Subject
		wantErr error
	}{
		{"tagged", Subject{Family: "plug", Tags: []string{"kitchen", "power"}}, nil},
		{"untagged", Subject{Family: "sensor"}, nil},
		{"unknown", Subject{}, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			got, err := s.Subject(ctx, tt.id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Subject(%q) = %v, want %v", tt.id, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Subject(%q) (-want +got):\n%s", tt.id, diff)
			}
			if tt.wantErr != nil {
				return
			}
			// The same as the whole device's.
			d, err := s.Device(ctx, tt.id)
			if err != nil || d.Family != got.Family || !cmp.Equal(d.Tags, got.Tags) {
				t.Errorf("Subject(%q) = %+v, but Device() = %+v, %v", tt.id, got, d, err)
			}
		})
	}
}
