package access

import (
	"errors"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
	"github.com/hearth-pki/hearth/protocol"
)

func TestAdmit(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	login := func(status inventory.Status, state string, mod func(*inventory.Login)) inventory.Login {
		l := inventory.Login{DeviceState: state, Certificate: inventory.Certificate{Serial: "a1", DeviceID: "cam", Status: status,
			CreatedAt: now.Add(-time.Hour)}}
		if mod != nil {
			mod(&l)
		}
		return l
	}
	superseded := func(ago time.Duration) func(*inventory.Login) {
		return func(l *inventory.Login) { l.Certificate.SupersededAt = now.Add(-ago) }
	}
	tests := []struct {
		name  string
		login inventory.Login
		want  error
	}{
		{"active", login(inventory.StatusActive, inventory.StateActive, nil), nil},
		{"pending of an enrolling device", login(inventory.StatusPending, inventory.StateEnrolling, nil), nil},
		{"superseded inside the overlap", login(inventory.StatusSuperseded, inventory.StateActive, superseded(time.Minute)), nil},
		{"superseded at the overlap's end", login(inventory.StatusSuperseded, inventory.StateActive, superseded(2*time.Minute)), ErrSuperseded},
		{"superseded long ago", login(inventory.StatusSuperseded, inventory.StateActive, superseded(30*24*time.Hour)), ErrSuperseded},
		{"revoked", login(inventory.StatusRevoked, inventory.StateActive, nil), ErrRevoked},
		{"abandoned", login(inventory.StatusAbandoned, inventory.StateActive, nil), ErrAbandoned},
		{"device quarantined", login(inventory.StatusActive, inventory.StateQuarantined, nil), ErrQuarantined},
		{"quarantined, created before the epoch", login(inventory.StatusPending, inventory.StateQuarantined, func(l *inventory.Login) { l.Epoch = now.Add(-time.Minute) }), ErrQuarantined},
		{"quarantined, enrolled again since", login(inventory.StatusPending, inventory.StateQuarantined, func(l *inventory.Login) { l.Epoch = now.Add(-2 * time.Hour) }), nil},
		{"device removed", login(inventory.StatusActive, "", nil), ErrUnknownCertificate},
		{"another device's", login(inventory.StatusActive, inventory.StateActive, func(l *inventory.Login) { l.Certificate.DeviceID = "door" }), ErrUnknownCertificate},
		{"created before the epoch", login(inventory.StatusPending, inventory.StateActive, func(l *inventory.Login) { l.Epoch = now.Add(-time.Minute) }), ErrRevoked},
		{"created after the epoch", login(inventory.StatusPending, inventory.StateActive, func(l *inventory.Login) { l.Epoch = now.Add(-2 * time.Hour) }), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Admit(tt.login, "cam", DefaultSupersededOverlap, now)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("Admit(%+v) = %v, want %v", tt.login, err, tt.want)
			}
		})
	}
}

// TestCertificateOldKeysDie follows one device through a renewal and a revocation against a
// real inventory: the superseded certificate logs in during the overlap only, and nothing
// logs in once the device is quarantined, until it enrolls again.
func TestCertificateOldKeysDie(t *testing.T) {
	ctx := t.Context()
	store := hubkit.Store(t)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := now
	c := New(store, nil, func() time.Time { return clock })
	c.SetSupersededOverlap(30 * time.Second)
	issue := func(serial, req string, at time.Time) {
		t.Helper()
		err := store.RecordIssuance(ctx, inventory.Issuance{
			Device:  inventory.Device{ID: "cam", Mechanism: inventory.MechanismAgent},
			Cert:    inventory.Certificate{Serial: serial, NotBefore: at, NotAfter: at.Add(time.Hour), CreatedAt: at},
			Attempt: inventory.Attempt{RequestID: req, StartedAt: at, FinishedAt: at},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Commit(ctx, "cam", req, serial, false, at); err != nil {
			t.Fatal(err)
		}
	}
	check := func(serial string, want error) {
		t.Helper()
		if err := c.Certificate(ctx, "cam", serial); !errors.Is(err, want) || (want == nil && err != nil) {
			t.Errorf("at +%v: Certificate(%s) = %v, want %v", clock.Sub(now), serial, err, want)
		}
	}
	issue("a1", "r1", now)
	issue("a2", "r2", now.Add(time.Minute))
	clock = now.Add(time.Minute + 29*time.Second)
	check("a1", nil)
	check("a2", nil)
	clock = now.Add(time.Minute + 30*time.Second)
	check("a1", ErrSuperseded)
	check("a2", nil)

	if _, err := store.RevokeIdentity(ctx, "cam", inventory.Revocation{Reason: protocol.RevokeKeyCompromise}, clock); err != nil {
		t.Fatal(err)
	}
	check("a2", ErrRevoked)
	// Enrolled again with a token: the new certificate logs in while the device is still
	// quarantined (to commit it), and the commit makes the device active.
	at := clock.Add(time.Second)
	if err := store.RecordIssuance(ctx, inventory.Issuance{
		Device:  inventory.Device{ID: "cam", Mechanism: inventory.MechanismAgent},
		Cert:    inventory.Certificate{Serial: "b1", NotBefore: at, NotAfter: at.Add(time.Hour), CreatedAt: at},
		Attempt: inventory.Attempt{RequestID: "r3", StartedAt: at, FinishedAt: at},
	}); err != nil {
		t.Fatal(err)
	}
	if d, _ := store.Device(ctx, "cam"); d.State != inventory.StateQuarantined {
		t.Fatalf("state after the new issuance = %q, want quarantined until the commit", d.State)
	}
	check("b1", nil)
	check("a2", ErrRevoked)
	if _, err := store.Commit(ctx, "cam", "r3", "b1", false, at); err != nil {
		t.Fatal(err)
	}
	check("b1", nil)
	if d, _ := store.Device(ctx, "cam"); d.State != inventory.StateActive {
		t.Errorf("state after enrolling again = %q, want active", d.State)
	}
}
