package mqtt

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzReadPacket feeds arbitrary bytes to the packet reader: junk must never panic, and a
// packet it accepts must encode to bytes that decode to the same packet (decode → encode →
// decode is stable).
func FuzzReadPacket(f *testing.F) {
	for _, seed := range [][]byte{
		{0x20, 2, 0, 0},                      // CONNACK accepted
		{0x20, 2, 0, 5},                      // CONNACK not authorised
		{0x30, 5, 0, 1, 'a', 'h', 'i'},       // PUBLISH QoS 0
		{0x33, 7, 0, 1, 'a', 0, 7, 'h', 'i'}, // PUBLISH QoS 1, retained
		{0x32, 5, 0, 1, 'a', 0, 8},           // PUBLISH QoS 1, empty payload
		{0x40, 2, 0, 7},                      // PUBACK
		{0x62, 2, 0, 9},                      // PUBREL
		{0x90, 4, 0, 1, 1, 0x80},             // SUBACK
		{0xd0, 0},                            // PINGRESP
		{0x30, 0xff, 0xff, 0xff, 0x7f},       // the largest length MQTT allows
		{0x30, 3, 0, 9, 'a'},                 // topic longer than the packet
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := readPacket(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		b, err := encode(p)
		if err != nil {
			t.Fatalf("encode(%s) = %v", p, err)
		}
		q, err := readPacket(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("readPacket(encode(%s)) = %v", p, err)
		}
		b2, err := encode(q)
		if err != nil {
			t.Fatalf("encode(%s) = %v", q, err)
		}
		if !bytes.Equal(b, b2) {
			t.Errorf("decode → encode → decode is not stable: %x, then %x", b, b2)
		}
	})
}
