package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// TestSIGKILLDuringRotation SIGKILLs a real hearth-gateway process in the middle of an
// intermediate rotation — the new intermediate in force, the canary moved, the other
// devices still on the previous one (a campaign of one device every 10 s) — and starts it
// again on the same data directory: the rotation resumes from its record, its campaign
// moves the devices left, the previous intermediate retires, and every device is active on
// the new one; none lost, none failed.
func TestSIGKILLDuringRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs and kills a hub process, with three agent processes")
	}
	agent := buildAgent(t)
	relay := testkit.StartRelay(t, "")
	data := filepath.Join(t.TempDir(), "data")
	hub := startHubProcess(t, data, "127.0.0.1:0", "--advertise", relay.Addr)
	relay.SetTarget(hub.addr)
	e := &agentE2E{t: t, tgt: agentTarget{name: "linux-native"}, bin: agent, data: data, relay: relay}
	agents := []*runningAgent{
		e.startAgent("cam-porch", "porch camera", "acme-cam"),
		e.startAgent("plug-tv", "tv plug", "plugco"),
		e.startAgent("lock-front", "front door lock", "bolt-lock"),
	}
	first := e.caStatus().Intermediate
	var rot protocol.CARotation
	if err := json.Unmarshal(e.cli("ca", "rotate-intermediate", "--rate", "6/min", "--json"), &rot); err != nil {
		t.Fatal(err)
	}
	// Mid-way: the canary moved, at least one device still on the previous intermediate.
	var at protocol.CAInfo
	testkit.Eventually(t, 60*time.Second, func() bool {
		at = e.caStatus()
		return at.Rotation != nil && at.Rotation.Remaining > 0 && at.Rotation.Remaining < len(agents)
	}, "the rotation never got mid-way: %+v", testkit.Lazy(func() string { return fmt.Sprintf("%+v", e.caStatus().Rotation) }))
	hub.kill()
	t.Logf("hub SIGKILLed with %d of %d devices still on the previous intermediate", at.Rotation.Remaining, len(agents))

	hub = startHubProcess(t, data, "127.0.0.1:0", "--advertise", relay.Addr)
	relay.SetTarget(hub.addr)
	if info := e.caStatus(); info.Rotation == nil || info.Rotation.State != protocol.RotationMoving || info.Previous == nil ||
		info.Previous.Serial != first.Serial || info.Intermediate.Serial != rot.Intermediate.Serial {
		t.Fatalf("ca status after the restart = %+v; want the rotation moving from %s to %s", info, first.Serial, rot.Intermediate.Serial)
	}
	info := e.rotateAndWait(agents, rot) // every device on the new intermediate, campaign finished, none failed
	if info.Intermediate.Serial != rot.Intermediate.Serial {
		t.Errorf("after the rotation the intermediate is %s, want %s", info.Intermediate.Serial, rot.Intermediate.Serial)
	}
	var devs []protocol.DeviceSummary
	if err := json.Unmarshal(e.cli("devices", "--json"), &devs); err != nil {
		t.Fatal(err)
	}
	if len(devs) != len(agents) {
		t.Errorf("the hub lists %d devices after the crash and the rotation, want %d", len(devs), len(agents))
	}
	for _, a := range agents {
		testkit.Eventually(t, 60*time.Second, func() bool { return e.summary(a.id).Online }, "%s is not back online", a.id)
	}
}
