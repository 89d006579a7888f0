package mqtt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// MaxPacketSize bounds the remaining length (variable header and payload) of a packet read
// from the server. The hub's largest messages are certificate chains and the retained CA
// topic (at most 64 KiB, internal/hub); MQTT allows 256 MiB, more than a small device has.
const MaxPacketSize = 1 << 20

// errMalformed marks a packet that cannot be decoded.
var errMalformed = errors.New("mqtt: malformed packet")

// receivable reports whether a client may receive packets of type t (MQTT 3.1.1 §2.2.1):
// PUBREC and PUBCOMP only answer QoS 2 publications, which this client never sends.
func receivable(t byte) bool {
	switch t {
	case packets.Connack, packets.Publish, packets.Puback, packets.Pubrel, packets.Suback, packets.Unsuback, packets.Pingresp:
		return true
	}
	return false
}

// kindOf returns the packet type of a packet readPacket returns.
func kindOf(p packets.ControlPacket) byte {
	switch p.(type) {
	case *packets.ConnackPacket:
		return packets.Connack
	case *packets.PublishPacket:
		return packets.Publish
	case *packets.PubackPacket:
		return packets.Puback
	case *packets.PubrelPacket:
		return packets.Pubrel
	case *packets.SubackPacket:
		return packets.Suback
	case *packets.UnsubackPacket:
		return packets.Unsuback
	case *packets.PingrespPacket:
		return packets.Pingresp
	}
	return 0
}

// readPacket reads one packet. It reads the fixed header itself (§2.2), so that the remaining
// length is checked against MaxPacketSize before anything is allocated, and hands the rest to
// paho's decoder.
func readPacket(r *bufio.Reader) (packets.ControlPacket, error) {
	first, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	n, err := readLength(r)
	if err != nil {
		return nil, err
	}
	fh := packets.FixedHeader{
		MessageType:     first >> 4,
		Dup:             first&0x08 != 0,
		Qos:             first >> 1 & 0x03,
		Retain:          first&0x01 != 0,
		RemainingLength: n,
	}
	if !receivable(fh.MessageType) {
		return nil, fmt.Errorf("mqtt: unexpected packet type %d from the server", fh.MessageType)
	}
	if err := checkHeader(first, n); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errMalformed, packets.PacketNames[fh.MessageType], err)
	}
	if n > MaxPacketSize {
		return nil, fmt.Errorf("mqtt: a %s packet of %d bytes exceeds the %d-byte limit", packets.PacketNames[fh.MessageType], n, MaxPacketSize)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	p, err := packets.NewControlPacketWithHeader(fh)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	// A bytes.Buffer, as paho's own reader uses: its Read of nothing at the end is not EOF,
	// which an empty PUBLISH payload (a retained message being cleared) relies on.
	if err := p.Unpack(bytes.NewBuffer(body)); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errMalformed, packets.PacketNames[fh.MessageType], err)
	}
	return p, nil
}

// checkHeader checks a fixed header's flags (§2.2.2: fixed for every type but PUBLISH, whose
// QoS must not be 3) and its remaining length where the type fixes it or bounds it from below
// (§3.2, §3.3, §3.4, §3.6, §3.9, §3.11, §3.13). A receiver closes the connection on invalid
// flags, and paho's decoder does not check that it consumed exactly the packet.
func checkHeader(first byte, n int) error {
	kind, flags := first>>4, first&0x0f
	want, minLen := byte(0), 0
	switch kind {
	case packets.Publish:
		if flags>>1&0x03 == 3 {
			return errors.New("QoS 3")
		}
		want, minLen = flags, 3 // a topic of at least one byte
		if flags>>1&0x03 > 0 {
			minLen += 2 // the packet identifier
		}
	case packets.Pubrel:
		want, minLen = 0x02, 2
	case packets.Connack, packets.Puback, packets.Unsuback:
		minLen = 2
	case packets.Suback:
		minLen = 3
	}
	if flags != want {
		return fmt.Errorf("flags %#x, want %#x", flags, want)
	}
	fixed := kind == packets.Connack || kind == packets.Puback || kind == packets.Pubrel || kind == packets.Unsuback || kind == packets.Pingresp
	if n < minLen || fixed && n != minLen {
		return fmt.Errorf("remaining length %d", n)
	}
	return nil
}

// readLength reads the remaining length, a variable-length integer of one to four bytes
// (MQTT 3.1.1 §2.2.3).
func readLength(r io.ByteReader) (int, error) {
	var n int
	for i := range 4 {
		b, err := r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		n |= int(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: remaining length longer than four bytes", errMalformed)
}

// encode serializes p in one buffer, so that it reaches the connection in a single Write.
func encode(p packets.ControlPacket) ([]byte, error) {
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
