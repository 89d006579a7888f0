package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// rotateFleetDevices is the size of TestIntermediateRotationFleet's fleet.
const rotateFleetDevices = 1000

// TestIntermediateRotationFleet rotates the intermediate of a hub process under 1,000
// simulated devices (hearth-fleet, the real agent code): every device ends on the new
// intermediate, none fails, and the old intermediate is retired.
func TestIntermediateRotationFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the hub and 1,000 simulated devices as processes")
	}
	dir := t.TempDir()
	data, conf := filepath.Join(dir, "data"), filepath.Join(dir, "hearth.yaml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "issuance_rate: 1000000\nrenewal:\n  rate: 10000\n  max_in_flight: %d\n", rotateFleetDevices), 0o600); err != nil {
		t.Fatal(err)
	}
	hub := startHub(t, data, "127.0.0.1:0", os.Stderr, "--config", conf)
	fleet := startFleet(t, hub.addr, filepath.Join(data, "ca", "root.pem"), filepath.Join(dir, "fleet.json"), rotateFleetDevices,
		"--id-prefix", "rot-")
	ready := fleet.waitReady(t, time.Duration(rotateFleetDevices)*50*time.Millisecond+2*time.Minute)
	if ready.Enrolled != rotateFleetDevices || ready.Online != rotateFleetDevices {
		t.Fatalf("hearth-fleet ready with %d of %d devices enrolled and %d online (%v)", ready.Enrolled, rotateFleetDevices, ready.Online,
			ready.EnrollFailures)
	}
	e := &agentE2E{t: t, data: data}
	testkit.Eventually(t, time.Minute, func() bool {
		var list []protocol.DeviceSummary
		_ = json.Unmarshal(e.cli("devices", "--json"), &list)
		return countOnline(list) == rotateFleetDevices
	}, "the hub never saw the %d devices online", rotateFleetDevices)
	start := time.Now()
	var rot protocol.CARotation
	if err := json.Unmarshal(e.cli("ca", "rotate-intermediate", "--canary", "10", "--json"), &rot); err != nil {
		t.Fatal(err)
	}
	if rot.Devices != rotateFleetDevices {
		t.Fatalf("ca rotate-intermediate took %d devices, want %d", rot.Devices, rotateFleetDevices)
	}
	var info protocol.CAInfo
	testkit.Eventually(t, 10*time.Minute, func() bool {
		info = e.caStatus()
		return info.Rotation != nil && info.Rotation.State == protocol.RotationRetired
	}, "the previous intermediate was never retired: %v", testkit.Lazy(func() string {
		if info.Rotation == nil {
			return "no rotation"
		}
		return fmt.Sprintf("%d devices still on it, campaign %s", info.Rotation.Remaining, info.Rotation.CampaignState)
	}))
	t.Logf("%d devices moved onto the new intermediate and the old one retired in %s", rotateFleetDevices, time.Since(start).Round(time.Second))
	// The old intermediate retires once no active certificate is under it; the campaign
	// counts a commit at the scheduler's next pass, so its last few may follow.
	var camps []protocol.CampaignStatus
	testkit.Eventually(t, time.Minute, func() bool {
		camps = nil
		if err := json.Unmarshal(e.cli("campaigns", "--json"), &camps); err != nil || len(camps) != 1 {
			t.Fatalf("campaigns = %+v, %v", camps, err)
		}
		return camps[0].Committed+camps[0].Failed == rotateFleetDevices
	}, "the campaign never counted every device: %+v", testkit.Lazy(func() string { return fmt.Sprintf("%+v", camps) }))
	if c := camps[0]; c.Committed != rotateFleetDevices || c.Failed != 0 {
		t.Errorf("campaign = %+v; want %d committed, none failed", c, rotateFleetDevices)
	}
	var list []protocol.DeviceSummary
	if err := json.Unmarshal(e.cli("devices", "--json"), &list); err != nil {
		t.Fatal(err)
	}
	held := map[string]string{}
	for _, d := range fleet.view(t).DeviceList {
		held[d.ID] = d.Serial
	}
	for _, d := range list {
		if held[d.ID] != d.Serial || d.State != "active" {
			t.Errorf("%s: the device holds %s, the hub says %s (%s)", d.ID, held[d.ID], d.Serial, d.State)
		}
	}
	if v := fleet.stop(t); v.Failed != 0 {
		t.Errorf("hearth-fleet counted %d failed renewals: %v %v", v.Failed, v.Failures, v.FailureExamples)
	}
}
