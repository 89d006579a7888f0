package renewal

import (
	"slices"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

func TestRemindersForManualDevices(t *testing.T) {
	meter := spec{id: "meter-1", manual: true}
	f := newFixture(t, t0, Config{})
	c := f.enroll(meter, t0, 30*day)
	w := window(meter, c)
	steps := []struct {
		name    string
		at      time.Time
		restart bool
		want    int // reminders sent by this pass
	}{
		{"before the window", w.Start.Add(-time.Hour), false, 0},
		{"window opens", w.Start, false, 1},
		{"same moment again", w.Start.Add(time.Minute), false, 0},
		{"after a restart", w.Start.Add(2 * time.Minute), true, 0},
		{"7 days before expiry", c.NotAfter.Add(-7 * day), false, 1},
		{"a day later", c.NotAfter.Add(-6 * day), false, 0},
		{"expired, the 1-day threshold missed", c.NotAfter.Add(time.Hour), false, 1},
		{"long after", c.NotAfter.Add(10 * day), false, 0},
	}
	for _, st := range steps {
		f.clock.Set(st.at)
		if st.restart {
			f.restart()
		}
		if rep := f.reconcile(); rep.Reminders != st.want {
			t.Errorf("%s: Reminders = %d, want %d", st.name, rep.Reminders, st.want)
		}
	}
	var got []string
	for _, e := range f.events(protocol.EventRenewalReminder) {
		got = append(got, e.Data["threshold"])
	}
	if want := []string{ThresholdWindow, "7d", ThresholdExpired}; !slices.Equal(got, want) {
		t.Errorf("reminder thresholds = %v, want %v", got, want)
	}
	if n := len(f.cmd.commands()) + f.pub.count(); n != 0 {
		t.Errorf("a device without an agent got %d commands or windows, want none", n)
	}
	if st := f.status(meter.id); st.State != inventory.RenewalDue || !st.NextAttemptAt.IsZero() {
		t.Errorf("status = %+v, want due with no reminder left", st)
	}

	// A new certificate starts over.
	f.renew(meter.id, f.clock.Now(), 30*day)
	if rep := f.reconcile(); rep.Reminders != 0 || f.status(meter.id).State != inventory.RenewalIdle {
		t.Errorf("after a new certificate: %d reminders, state %q, want none and idle", rep.Reminders, f.status(meter.id).State)
	}
}
