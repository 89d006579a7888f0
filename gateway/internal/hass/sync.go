package hass

import (
	"bytes"
	"cmp"
	"maps"
	"slices"
)

// snapshot is one Update: the hub and the complete list of its devices.
type snapshot struct {
	hub     Hub
	devices []Device
}

// part names one of the two retained topics of an object.
type part int

const (
	partConfig part = iota
	partState
)

// entry is what is (or should be) retained for one object (the hub or a device).
type entry struct {
	config []byte
	state  []byte
}

// view maps object ids to their retained payloads.
type view map[string]entry

// message is one retained publication; an empty payload clears the topic.
type message struct {
	oid     string
	part    part
	topic   string
	payload []byte
}

// render turns a snapshot into the payloads that should be retained. Devices without an id are
// skipped; of two devices with the same id the later wins.
func render(t topics, s snapshot) view {
	v := view{hubObjectID: {config: hubConfig(t, s.hub), state: hubStatePayload(s.hub)}}
	for _, d := range s.devices {
		if d.ID == "" {
			continue
		}
		v[objectID(d.ID)] = entry{config: deviceConfig(t, s.hub.Version, d), state: deviceStatePayload(d)}
	}
	return v
}

// plan returns the publications that move the broker from published to want: configs first
// (the hub's before the devices', so via_device resolves), then states, then clears for objects
// that left and for stale objects found on the broker that neither view knows. With full set,
// every config and state of want is sent again even if unchanged.
func plan(t topics, published, want view, stale map[string]struct{}, full bool) []message {
	var msgs []message
	oids := sortedOIDs(want)
	for _, oid := range oids {
		if w := want[oid]; full || !bytes.Equal(published[oid].config, w.config) {
			msgs = append(msgs, message{oid: oid, part: partConfig, topic: t.config(oid), payload: w.config})
		}
	}
	for _, oid := range oids {
		if w := want[oid]; full || !bytes.Equal(published[oid].state, w.state) {
			msgs = append(msgs, message{oid: oid, part: partState, topic: t.state(oid), payload: w.state})
		}
	}
	gone := map[string]struct{}{}
	for oid := range published {
		if _, ok := want[oid]; !ok {
			gone[oid] = struct{}{}
		}
	}
	for oid := range stale {
		if _, ok := want[oid]; !ok {
			gone[oid] = struct{}{}
		}
	}
	for _, oid := range slices.Sorted(maps.Keys(gone)) {
		msgs = append(msgs,
			message{oid: oid, part: partConfig, topic: t.config(oid)},
			message{oid: oid, part: partState, topic: t.state(oid)})
	}
	return msgs
}

// sortedOIDs returns the ids of v with the hub first.
func sortedOIDs(v view) []string {
	return slices.SortedFunc(maps.Keys(v), func(a, b string) int {
		if (a == hubObjectID) != (b == hubObjectID) {
			if a == hubObjectID {
				return -1
			}
			return 1
		}
		return cmp.Compare(a, b)
	})
}

// apply records a publication the broker acknowledged.
func (v view) apply(m message) {
	e := v[m.oid]
	if m.part == partConfig {
		e.config = m.payload
	} else {
		e.state = m.payload
	}
	if len(e.config) == 0 && len(e.state) == 0 {
		delete(v, m.oid)
		return
	}
	v[m.oid] = e
}
