package hass

import (
	"cmp"
	"crypto/sha256"
	"maps"
	"slices"
)

// part names one of the two retained topics of an object.
type part int

const (
	partConfig part = iota
	partState
)

// entry is what should be retained for one object (the hub or a device).
type entry struct {
	config []byte
	state  []byte
}

// view maps object ids to the payloads they should retain. A sync renders only the objects it
// handles, never the whole fleet unless it republishes everything.
type view map[string]entry

// digest identifies a retained payload; the zero digest means nothing is retained.
type digest [sha256.Size]byte

func digestOf(payload []byte) digest {
	if len(payload) == 0 {
		return digest{}
	}
	return sha256.Sum256(payload)
}

// retainedSums are the digests of one object's two retained payloads.
type retainedSums struct {
	config digest
	state  digest
}

// ledger maps object ids to what the broker acknowledged as retained. It keeps digests, not
// payloads, so its size per device is constant and small.
type ledger map[string]retainedSums

// message is one retained publication; an empty payload clears the topic.
type message struct {
	oid     string
	part    part
	topic   string
	payload []byte
}

// render builds the payloads of the hub (when hub is not nil) and of devices, keyed by
// object id. Devices without an id are skipped; of two devices with the same object id the
// later wins.
func render(t topics, hub *Hub, hubVersion string, devices []Device) view {
	v := view{}
	if hub != nil {
		v[hubObjectID] = entry{config: hubConfig(t, *hub), state: hubStatePayload(*hub)}
	}
	for _, d := range devices {
		if d.ID == "" {
			continue
		}
		v[objectID(d.ID)] = entry{config: deviceConfig(t, hubVersion, d), state: deviceStatePayload(d)}
	}
	return v
}

// plan returns the publications that move the objects of want from published to want, and
// clear the objects of gone: configs first (the hub's before the devices', so via_device
// resolves), then states, then clears. A payload the broker already retains is skipped unless
// full is set. An object both wanted and gone is wanted.
func plan(t topics, published ledger, want view, gone []string, full bool) []message {
	var msgs []message
	oids := sortedOIDs(want)
	for _, oid := range oids {
		if w := want[oid]; full || published[oid].config != digestOf(w.config) {
			msgs = append(msgs, message{oid: oid, part: partConfig, topic: t.config(oid), payload: w.config})
		}
	}
	for _, oid := range oids {
		if w := want[oid]; full || published[oid].state != digestOf(w.state) {
			msgs = append(msgs, message{oid: oid, part: partState, topic: t.state(oid), payload: w.state})
		}
	}
	cleared := map[string]bool{}
	for _, oid := range slices.Sorted(slices.Values(gone)) {
		if _, ok := want[oid]; ok || cleared[oid] {
			continue
		}
		cleared[oid] = true
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
func (l ledger) apply(m message) {
	e := l[m.oid]
	if m.part == partConfig {
		e.config = digestOf(m.payload)
	} else {
		e.state = digestOf(m.payload)
	}
	if e == (retainedSums{}) {
		delete(l, m.oid)
		return
	}
	l[m.oid] = e
}
