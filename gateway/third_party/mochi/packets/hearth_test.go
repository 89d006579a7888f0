// Tests of hearth's patches (README.hearth.md in the module's root).

package packets

import (
	"reflect"
	"testing"
	"unsafe"
)

// TestPacketsCompact checks that Packets returns every packet exactly as it was added, and
// keeps a published message in the compact form and any other packet whole.
func TestPacketsCompact(t *testing.T) {
	publish := Packet{TopicName: "hearth/dev-1/renewal", Origin: "inline", Payload: []byte(`{"v":1}`), Created: 1700000000,
		Expiry: 1700003600, FixedHeader: FixedHeader{Type: Publish, Retain: true, Qos: 1, Remaining: 42},
		Mods: Mods{MaxSize: 65536}, PacketID: 7, ProtocolVersion: 4}
	withProps := publish
	withProps.Properties = Properties{ContentType: "application/json", User: []UserProperty{{Key: "k", Val: "v"}}}
	withConnect := publish
	withConnect.Connect = ConnectParams{ClientIdentifier: "dev-1", WillTopic: "hearth/dev-1/state"}
	withCodes := publish
	withCodes.ReasonCodes = []byte{0x80}
	for _, c := range []struct {
		name    string
		pk      Packet
		compact bool
	}{
		{"MQTT 3.1.1 publish", publish, true},
		{"empty", Packet{}, true},
		{"MQTT 5 properties", withProps, false},
		{"connect parameters", withConnect, false},
		{"reason codes", withCodes, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := NewPackets()
			p.Add("k", c.pk)
			got, ok := p.Get("k")
			if !ok || !reflect.DeepEqual(got, c.pk) {
				t.Errorf("Get(k) = %+v, %v, want %+v", got, ok, c.pk)
			}
			if all := p.GetAll(); !reflect.DeepEqual(all["k"], c.pk) {
				t.Errorf("GetAll()[k] = %+v, want %+v", all["k"], c.pk)
			}
			if keys := p.Expired(func(pk Packet) bool { return reflect.DeepEqual(pk, c.pk) }); len(keys) != 1 {
				t.Errorf("Expired(the packet) = %v, want [k]", keys)
			}
			if compact := p.internal["k"].full == nil; compact != c.compact {
				t.Errorf("stored compact = %v, want %v", compact, c.compact)
			}
			p.Delete("k")
			if _, ok := p.Get("k"); ok || p.Len() != 0 {
				t.Errorf("Get(k) after Delete = %v, Len %d, want gone", ok, p.Len())
			}
		})
	}
	if s, full := unsafe.Sizeof(storedPacket{}), unsafe.Sizeof(Packet{}); s*5 > full {
		t.Errorf("storedPacket is %d bytes, want at most a fifth of Packet's %d", s, full)
	}
}
