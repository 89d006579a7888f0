package clock

import (
	"testing"
	"testing/synctest"
	"time"
)

var (
	real0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	build = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	epoch = time.Unix(0, 0).UTC()
)

func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		device  time.Time
		floor   time.Time
		hub     time.Time // live hub time observed, if not zero
		retain  time.Time // retained hub time (lower bound), if not zero
		want    Reading
		wantNow time.Time
	}{
		{
			name: "right clock, no hub yet", device: real0, floor: build,
			want: Reading{Trusted: true, Known: true}, wantNow: real0,
		},
		{
			name: "1970 boot, no hub: not trusted, floor is the lower bound", device: epoch, floor: build,
			want: Reading{}, wantNow: build,
		},
		{
			name: "1970 boot, retained hub time raises the floor", device: epoch, floor: build, retain: real0,
			want: Reading{}, wantNow: real0,
		},
		{
			name: "1970 boot, live hub time", device: epoch, floor: build, hub: real0,
			want: Reading{Known: true, HubSeen: true, Skew: epoch.Sub(real0)}, wantNow: real0,
		},
		{
			name: "device 3 h ahead of the hub", device: real0.Add(3 * time.Hour), floor: build, hub: real0,
			want: Reading{Known: true, HubSeen: true, Skew: 3 * time.Hour}, wantNow: real0,
		},
		{
			name: "device 3 h behind the hub", device: real0.Add(-3 * time.Hour), floor: build, hub: real0,
			want: Reading{Known: true, HubSeen: true, Skew: -3 * time.Hour}, wantNow: real0,
		},
		{
			name: "device 2 min ahead: trusted, skew reported", device: real0.Add(2 * time.Minute), floor: build, hub: real0,
			want: Reading{Trusted: true, Known: true, HubSeen: true, Skew: 2 * time.Minute}, wantNow: real0.Add(2 * time.Minute),
		},
		{
			name: "device behind the last known good time", device: real0.Add(-2 * time.Hour), floor: real0,
			want: Reading{}, wantNow: real0,
		},
		{
			name: "device slightly behind the last known good time", device: real0.Add(-time.Minute), floor: real0,
			want: Reading{Trusted: true, Known: true}, wantNow: real0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(fixed(tc.device), tc.floor)
			if !tc.retain.IsZero() {
				c.AtLeast(tc.retain)
			}
			if !tc.hub.IsZero() {
				c.Observe(tc.hub)
			}
			got := c.Read()
			if got.Trusted != tc.want.Trusted || got.Known != tc.want.Known || got.HubSeen != tc.want.HubSeen || got.Skew != tc.want.Skew {
				t.Errorf("Read() = %+v, want trusted %t known %t hub %t skew %s", got, tc.want.Trusted, tc.want.Known, tc.want.HubSeen, tc.want.Skew)
			}
			if !got.Now.Equal(tc.wantNow) || !got.Device.Equal(tc.device) {
				t.Errorf("Read().Now = %s, Device = %s; want %s, %s", got.Now, got.Device, tc.wantNow, tc.device)
			}
			if got.HubSeen && !got.Best().Equal(tc.hub) {
				t.Errorf("Read().Best() = %s, want the hub time %s", got.Best(), tc.hub)
			}
		})
	}
}

// TestHubTimeAdvances checks, in a synctest bubble whose clock is virtual, that the hub's time
// estimate advances with the time elapsed since it was observed, and that the last known good
// time follows it.
func TestHubTimeAdvances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now() // the bubble's clock: 2000-01-01, "wrong" against the floor
		c := New(time.Now, build)
		c.Observe(real0)
		time.Sleep(90 * time.Minute)
		r := c.Read()
		if want := real0.Add(90 * time.Minute); !r.Now.Equal(want) || r.Trusted {
			t.Errorf("after 90 min: Now = %s (trusted %t), want %s untrusted", r.Now, r.Trusted, want)
		}
		if want := start.Add(90 * time.Minute).Sub(real0.Add(90 * time.Minute)); r.Skew != want {
			t.Errorf("Skew = %s, want %s", r.Skew, want)
		}
		if got, want := c.Floor(), real0.Add(90*time.Minute); !got.Equal(want) {
			t.Errorf("Floor() = %s, want %s", got, want)
		}
	})
}

func TestObserveZeroIgnored(t *testing.T) {
	c := New(fixed(real0), build)
	c.Observe(time.Time{})
	if r := c.Read(); r.HubSeen {
		t.Errorf("Observe(zero) made HubSeen true: %+v", r)
	}
}
