package renewal

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

func TestDueIndex(t *testing.T) {
	at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	x := newDueIndex()
	x.set("a", at(1), false)
	x.set("b", at(2), true)
	x.set("c", time.Time{}, false) // only when touched
	x.set("d", at(3), false)
	x.set("d", at(1), false) // moved earlier: the old time no longer counts
	x.set("e", at(1), false)
	x.remove("e")

	tests := []struct {
		now  time.Time
		want []string
	}{
		{at(0), nil},
		{at(1), []string{"a", "d"}},
		{at(1), nil}, // taken already
		{at(2), []string{"b"}},
		{at(5), nil}, // d's old time 3 is stale
	}
	for _, tt := range tests {
		got := x.due(tt.now)
		slices.Sort(got)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("due(%s) (-want +got):\n%s", tt.now, diff)
		}
	}
	if len(x.at) != 4 || len(x.failing) != 1 {
		t.Errorf("index holds %d devices, %d failing; want 4 and 1 (a removed device leaves it)", len(x.at), len(x.failing))
	}
	x.set("a", at(6), false)
	x.compact()
	if len(x.q) != 1 || x.q[0].id != "a" {
		t.Errorf("queue after compact = %+v, want only a's time", x.q)
	}
}

// TestPassesFollowTheIndex: after the first pass, devices become due at their window's end
// with nothing touching them, each on its own time, while the report still counts the fleet.
func TestPassesFollowTheIndex(t *testing.T) {
	f := newFixture(t, t0, Config{})
	type due struct {
		end time.Time
		id  string
	}
	var ends []due
	for i := range 5 {
		d := spec{id: fmt.Sprintf("plug-%d", i)}
		c := f.enroll(d, t0.Add(time.Duration(i)*time.Hour), 30*day)
		ends = append(ends, due{window(d, c).End, d.id})
	}
	if rep := f.reconcile(); rep.Devices != 5 || rep.Published != 5 {
		t.Fatalf("first pass: Devices %d, Published %d, want 5 and 5", rep.Devices, rep.Published)
	}
	slices.SortFunc(ends, func(a, b due) int { return a.end.Compare(b.end) })
	commanded := func(id string) bool { return slices.Contains(f.cmd.ids(), id) }
	for _, e := range ends {
		f.clock.Set(e.end.Add(-time.Second))
		if rep := f.reconcile(); commanded(e.id) || rep.Devices != 5 {
			t.Fatalf("pass a second before %s's end: commanded %v, Devices %d; want it not commanded, 5 devices", e.id, f.cmd.ids(), rep.Devices)
		}
		f.clock.Set(e.end)
		if f.reconcile(); !commanded(e.id) {
			t.Fatalf("pass at %s's end: commanded %v, want it among them", e.id, f.cmd.ids())
		}
	}
}

// TestOfflineDueDeviceCommandedWhenTouched: a due device that is offline waits for its
// reconnection (DeviceOnline), however many passes run meanwhile.
func TestOfflineDueDeviceCommandedWhenTouched(t *testing.T) {
	online := map[string]bool{}
	f := newFixture(t, t0, Config{Online: func(id string) bool { return online[id] }})
	plug := spec{id: "plug-1"}
	w := window(plug, f.enroll(plug, t0, 30*day))
	f.reconcile()
	f.clock.Set(w.End)
	if rep := f.reconcile(); rep.QueuedOffline != 1 || rep.Commanded != 0 {
		t.Fatalf("due while offline: QueuedOffline %d, Commanded %d, want 1 and 0", rep.QueuedOffline, rep.Commanded)
	}
	f.clock.Add(time.Hour)
	f.reconcile()
	online[plug.id] = true
	f.s.DeviceOnline(plug.id)
	if rep := f.reconcile(); rep.Commanded != 1 {
		t.Errorf("after DeviceOnline: Commanded %d, want 1", rep.Commanded)
	}
}

// TestNewPolicyRereadsEveryDevice: a pass under another policy looks at every device, so
// windows the policy moved are published and stored, touched or not.
func TestNewPolicyRereadsEveryDevice(t *testing.T) {
	pol := policy.Default()
	f := newFixture(t, t0.Add(day), Config{})
	f.s.cfg.Policy = func() *policy.Policy { return pol }
	for i := range 3 {
		f.enroll(spec{id: fmt.Sprintf("plug-%d", i)}, t0, 30*day)
	}
	f.reconcile()
	if rep := f.reconcile(); rep.Published != 0 {
		t.Fatalf("second pass under the same policy: Published %d, want 0", rep.Published)
	}
	next := policy.Default()
	for i := range next.Classes {
		next.Classes[i].RenewAt, next.Classes[i].RenewBefore = 0, 5*day
	}
	pol = next
	if rep := f.reconcile(); rep.Published != 3 {
		t.Errorf("first pass under a new policy: Published %d, want 3", rep.Published)
	}
	for i := range 3 {
		if st := f.status(fmt.Sprintf("plug-%d", i)); st.State != inventory.RenewalIdle || st.WindowEnd.IsZero() {
			t.Errorf("plug-%d: status %+v, want idle with the new window", i, st)
		}
	}
}

// TestCampaignReadsPendingDevicesWhenItReachesThem: a campaign paced at one command a
// minute reads its pending devices only when it picks them (or when they are touched), and
// still ends a pending device that left the scheduler's care as failed.
func TestCampaignReadsPendingDevicesWhenItReachesThem(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, t0.Add(day), Config{})
	for i := range 3 {
		f.enroll(spec{id: fmt.Sprintf("plug-%d", i), family: "plug"}, t0, 30*day)
	}
	f.reconcile()
	if _, err := f.s.StartCampaign(ctx, protocol.Campaign{ID: "slow", Selector: protocol.CampaignSelector{Family: "plug"}, Rate: 1}); err != nil {
		t.Fatalf("StartCampaign() = %v", err)
	}
	if rep := f.reconcile(); rep.Commanded != 1 {
		t.Fatalf("first pass of the campaign: Commanded %d, want 1 (one a minute)", rep.Commanded)
	}
	// plug-2, still pending, is quarantined (the hub touches a device it changes).
	if err := f.store.SetState(ctx, "plug-2", inventory.StateQuarantined, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.s.Touch("plug-2")
	f.clock.Add(time.Minute)
	f.reconcile()
	f.clock.Add(time.Minute)
	f.reconcile()
	all, _ := f.s.Campaigns(ctx)
	if all[0].Failed != 1 || all[0].Commanded != 2 || all[0].Pending != 0 {
		t.Errorf("campaign = %+v, want plug-2 failed and the two others commanded", all[0])
	}
	if got := f.cmd.ids(); !slices.Equal(got, []string{"plug-0", "plug-1"}) {
		t.Errorf("commands %v, want plug-0 then plug-1", got)
	}
}
