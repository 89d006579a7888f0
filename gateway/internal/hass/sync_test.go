package hass

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// brief describes messages as "topic=payload" for readable comparisons.
func brief(msgs []message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.topic+"="+string(m.payload))
	}
	return out
}

func TestPlan(t *testing.T) {
	e := func(config, state string) entry { return entry{config: []byte(config), state: []byte(state)} }
	tests := []struct {
		name      string
		published view
		want      view
		stale     []string
		full      bool
		expect    []string
	}{
		{
			name: "first publication: configs, hub first, then states",
			want: view{"b": e("cb", "sb"), hubObjectID: e("ch", "sh"), "a": e("ca", "sa")},
			expect: []string{
				"homeassistant/device/hearth_hub/config=ch",
				"homeassistant/device/hearth_a/config=ca",
				"homeassistant/device/hearth_b/config=cb",
				"hearth/hass/hub/state=sh",
				"hearth/hass/device/a/state=sa",
				"hearth/hass/device/b/state=sb",
			},
		},
		{
			name:      "nothing changed",
			published: view{hubObjectID: e("ch", "sh"), "a": e("ca", "sa")},
			want:      view{hubObjectID: e("ch", "sh"), "a": e("ca", "sa")},
		},
		{
			name:      "a state changed",
			published: view{hubObjectID: e("ch", "sh"), "a": e("ca", "sa")},
			want:      view{hubObjectID: e("ch", "sh"), "a": e("ca", "sa2")},
			expect:    []string{"hearth/hass/device/a/state=sa2"},
		},
		{
			name:      "a device left: both topics cleared",
			published: view{hubObjectID: e("ch", "sh"), "a": e("ca", "sa"), "b": e("cb", "sb")},
			want:      view{hubObjectID: e("ch", "sh"), "a": e("ca", "sa")},
			expect:    []string{"homeassistant/device/hearth_b/config=", "hearth/hass/device/b/state="},
		},
		{
			name:      "full sends everything again",
			published: view{hubObjectID: e("ch", "sh")},
			want:      view{hubObjectID: e("ch", "sh")},
			full:      true,
			expect:    []string{"homeassistant/device/hearth_hub/config=ch", "hearth/hass/hub/state=sh"},
		},
		{
			name:   "stale configs on the broker are cleared unless wanted",
			want:   view{hubObjectID: e("ch", "sh"), "a": e("ca", "sa")},
			stale:  []string{"a", "ghost"},
			expect: []string{"homeassistant/device/hearth_hub/config=ch", "homeassistant/device/hearth_a/config=ca", "hearth/hass/hub/state=sh", "hearth/hass/device/a/state=sa", "homeassistant/device/hearth_ghost/config=", "hearth/hass/device/ghost/state="},
		},
		{
			name:      "a device both left and stale is cleared once",
			published: view{hubObjectID: e("ch", "sh"), "b": e("cb", "sb")},
			want:      view{hubObjectID: e("ch", "sh")},
			stale:     []string{"b"},
			expect:    []string{"homeassistant/device/hearth_b/config=", "hearth/hass/device/b/state="},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stale := map[string]struct{}{}
			for _, s := range tt.stale {
				stale[s] = struct{}{}
			}
			published := tt.published
			if published == nil {
				published = view{}
			}
			got := plan(testTopics, published, tt.want, stale, tt.full)
			if diff := cmp.Diff(tt.expect, brief(got)); diff != "" {
				t.Errorf("plan() mismatch (-want +got):\n%s", diff)
			}
			// Applying the plan reaches the wanted view.
			for _, m := range got {
				published.apply(m)
			}
			if diff := cmp.Diff(tt.want, published, cmp.AllowUnexported(entry{})); diff != "" {
				t.Errorf("published after applying the plan differs from want (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRender(t *testing.T) {
	v := render(testTopics, snapshot{hub: testHub(), devices: []Device{thermostat(), {ID: ""}, {ID: "a.b"}}})
	if len(v) != 3 {
		t.Fatalf("render() has %d objects, want 3 (hub, thermostat, a.b; the device without id skipped)", len(v))
	}
	for _, oid := range []string{hubObjectID, "thermostat-1", objectID("a.b")} {
		if e, ok := v[oid]; !ok || len(e.config) == 0 || len(e.state) == 0 {
			t.Errorf("render()[%q] = %+v, want a config and a state", oid, e)
		}
	}
}
