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

// ledgerOf is the ledger of a broker that retains v.
func ledgerOf(v view) ledger {
	l := ledger{}
	for oid, e := range v {
		l[oid] = retainedSums{config: digestOf(e.config), state: digestOf(e.state)}
	}
	return l
}

func TestPlan(t *testing.T) {
	e := func(config, state string) entry { return entry{config: []byte(config), state: []byte(state)} }
	tests := []struct {
		name      string
		published view
		want      view
		gone      []string
		full      bool
		expect    []string
		after     view // what the broker retains afterwards; nil: published updated by want
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
			name:      "only the objects given are looked at",
			published: view{hubObjectID: e("ch", "sh"), "a": e("ca", "sa"), "b": e("cb", "sb")},
			want:      view{"b": e("cb", "sb2")},
			expect:    []string{"hearth/hass/device/b/state=sb2"},
			after:     view{hubObjectID: e("ch", "sh"), "a": e("ca", "sa"), "b": e("cb", "sb2")},
		},
		{
			name:      "a device left: both topics cleared",
			published: view{hubObjectID: e("ch", "sh"), "a": e("ca", "sa"), "b": e("cb", "sb")},
			gone:      []string{"b"},
			expect:    []string{"homeassistant/device/hearth_b/config=", "hearth/hass/device/b/state="},
			after:     view{hubObjectID: e("ch", "sh"), "a": e("ca", "sa")},
		},
		{
			name:      "full sends everything given again",
			published: view{hubObjectID: e("ch", "sh")},
			want:      view{hubObjectID: e("ch", "sh")},
			full:      true,
			expect:    []string{"homeassistant/device/hearth_hub/config=ch", "hearth/hass/hub/state=sh"},
		},
		{
			name:   "gone and stale objects are cleared once, unless wanted",
			want:   view{hubObjectID: e("ch", "sh"), "a": e("ca", "sa")},
			gone:   []string{"ghost", "a", "ghost"},
			expect: []string{"homeassistant/device/hearth_hub/config=ch", "homeassistant/device/hearth_a/config=ca", "hearth/hass/hub/state=sh", "hearth/hass/device/a/state=sa", "homeassistant/device/hearth_ghost/config=", "hearth/hass/device/ghost/state="},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			published := ledgerOf(tt.published)
			got := plan(testTopics, published, tt.want, tt.gone, tt.full)
			if diff := cmp.Diff(tt.expect, brief(got)); diff != "" {
				t.Errorf("plan() mismatch (-want +got):\n%s", diff)
			}
			// Applying the plan reaches the wanted state of the broker.
			for _, m := range got {
				published.apply(m)
			}
			after := tt.after
			if after == nil {
				after = view{}
				for oid, e := range tt.published {
					after[oid] = e
				}
				for oid, e := range tt.want {
					after[oid] = e
				}
			}
			if diff := cmp.Diff(ledgerOf(after), published, cmp.AllowUnexported(retainedSums{})); diff != "" {
				t.Errorf("ledger after applying the plan differs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRender(t *testing.T) {
	hub := testHub()
	v := render(testTopics, &hub, hub.Version, []Device{thermostat(), {ID: ""}, {ID: "a.b"}})
	if len(v) != 3 {
		t.Fatalf("render() has %d objects, want 3 (hub, thermostat, a.b; the device without id skipped)", len(v))
	}
	for _, oid := range []string{hubObjectID, "thermostat-1", objectID("a.b")} {
		if e, ok := v[oid]; !ok || len(e.config) == 0 || len(e.state) == 0 {
			t.Errorf("render()[%q] = %+v, want a config and a state", oid, e)
		}
	}
	if v := render(testTopics, nil, "", []Device{thermostat()}); len(v) != 1 {
		t.Errorf("render(no hub) has %d objects, want the device only", len(v))
	}
}
