package admin_test

import (
	"testing"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// TestRevokeReasons revokes through the bridge operation: one certificate with its RFC 5280
// reason, then the device's identity; unknown reasons and other devices' serials are
// refused and change nothing.
func TestRevokeReasons(t *testing.T) {
	f := newManualFixture(t)
	var first, second protocol.DeviceSigned
	f.ok(t, "device/sign", signReq("printer", csrPEM(t, newP256(t), "")), &first)
	f.ok(t, "device/sign", signReq("scanner", csrPEM(t, newP256(t), "")), &second)

	f.refused(t, "device/revoke", protocol.DeviceRequest{ID: "printer", Reason: "key compromise"}, protocol.CodeBadRequest, "keyCompromise")
	f.refused(t, "device/revoke", protocol.DeviceRequest{ID: "printer", Serial: second.Serial}, protocol.CodeNotFound, "has no certificate")
	if c, _ := f.store.Certificate(t.Context(), second.Serial); c.Status != inventory.StatusActive {
		t.Fatalf("scanner's certificate is %s after a refused revocation", c.Status)
	}

	var one protocol.DeviceRevoked
	f.ok(t, "device/revoke", protocol.DeviceRequest{ID: "printer", Serial: first.Serial, Reason: "superseded", Note: "replaced"}, &one)
	if one.Revoked != 1 || one.Quarantined || one.Serial != first.Serial || one.Reason != protocol.RevokeSuperseded {
		t.Errorf("device/revoke one certificate = %+v", one)
	}
	c, _ := f.store.Certificate(t.Context(), first.Serial)
	if c.Status != inventory.StatusRevoked || c.RevokeCode != 4 || c.RevokeReason != "replaced" {
		t.Errorf("certificate after revoke = %s code %d %q, want revoked 4 \"replaced\"", c.Status, c.RevokeCode, c.RevokeReason)
	}
	if d, _ := f.store.Device(t.Context(), "printer"); d.State == inventory.StateQuarantined {
		t.Error("revoking one certificate quarantined the device")
	}

	var all protocol.DeviceRevoked
	f.ok(t, "device/revoke", protocol.DeviceRequest{ID: "scanner", Reason: "keyCompromise"}, &all)
	if all.Revoked != 1 || !all.Quarantined || all.Reason != protocol.RevokeKeyCompromise {
		t.Errorf("device/revoke identity = %+v", all)
	}
	if d, _ := f.store.Device(t.Context(), "scanner"); d.State != inventory.StateQuarantined {
		t.Errorf("state after revoking the identity = %q, want quarantined", d.State)
	}
	if c, _ := f.store.Certificate(t.Context(), second.Serial); c.RevokeCode != 1 {
		t.Errorf("scanner's certificate code = %d, want 1 (keyCompromise)", c.RevokeCode)
	}
}
