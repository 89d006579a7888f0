package admin_test

import (
	"strings"
	"testing"

	"github.com/hearth-pki/hearth/protocol"
)

// TestUnknownDeviceNotFound checks that every operation about a device the inventory does not
// hold answers not_found, and an unknown operation bad_request.
func TestUnknownDeviceNotFound(t *testing.T) {
	f := newManualFixture(t)
	for _, op := range []string{"device/get", "device/renew", "device/revoke", "device/remove"} {
		resp := f.do(t, op, protocol.DeviceRequest{Transaction: "t1", ID: "nope"})
		if resp.Status != "error" || resp.Code != protocol.CodeNotFound || resp.Transaction != "t1" ||
			resp.Error != `device "nope" is not in the inventory` {
			t.Errorf("Do(%s, unknown device) = %+v, want a not_found error", op, resp)
		}
	}
	resp := f.do(t, "device/frobnicate", protocol.DeviceRequest{ID: "nope"})
	if resp.Status != "error" || resp.Code != protocol.CodeBadRequest || !strings.Contains(resp.Error, "unknown operation") {
		t.Errorf("Do(unknown op) = %+v, want a bad_request error", resp)
	}
	if info, ok := protocol.CodeNotFound.Info(); !ok || info.Retry {
		t.Errorf("CodeNotFound.Info() = %+v, %v; want a known, not retryable code", info, ok)
	}
}
