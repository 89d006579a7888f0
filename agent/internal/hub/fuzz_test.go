package hub

import (
	"io"
	"testing"

	"github.com/hearth-pki/hearth/agent/internal/log"
	"github.com/hearth-pki/hearth/agent/internal/mqtt"
	"github.com/hearth-pki/hearth/protocol"
)

// FuzzRoute feeds arbitrary topics and payloads to the publish handler: it must never panic
// or block, and may only deliver valid messages.
func FuzzRoute(f *testing.F) {
	var topics protocol.Topics
	for _, k := range []protocol.Kind{protocol.KindCert, protocol.KindAck, protocol.KindCmd, protocol.KindRenewal} {
		f.Add(topics.Device("dev-1", k), []byte(`{"v":1}`), false)
	}
	f.Add(topics.CA(), []byte("-----BEGIN CERTIFICATE-----\n"), true)
	f.Add(topics.Device("dev-1", protocol.KindCmd), []byte(`{"v":1,"command_id":"c","action":"renew","deadline":"2026-11-25T12:10:00Z","hub_time":"2026-11-25T12:00:00Z"}`), false)
	f.Add("hearth/v1/dev/other/cmd", []byte(`{}`), false)
	f.Fuzz(func(t *testing.T, topic string, payload []byte, retained bool) {
		s := &Session{
			cfg:   Config{DeviceID: "dev-1"},
			log:   log.New(io.Discard, log.Text, log.LevelInfo),
			inbox: make(chan Inbound, 1),
			certs: map[string]chan *protocol.Cert{},
			acks:  map[string]chan *protocol.Ack{},
		}
		certs, _, _ := register(s, s.certs, "c")
		m := mqtt.Message{Topic: topic, Payload: payload, QoS: 1, Retained: retained}
		s.route(m)
		s.route(m) // a full inbox must not block
		select {
		case in := <-s.Inbox():
			switch {
			case in.Command != nil:
				if err := in.Command.Validate(); err != nil {
					t.Errorf("delivered an invalid command: %v", err)
				}
			case in.Renewal != nil:
				if err := in.Renewal.Validate(); err != nil {
					t.Errorf("delivered invalid renewal info: %v", err)
				}
			case in.CA == "":
				t.Errorf("delivered an empty message")
			}
		default:
		}
		select {
		case c := <-certs:
			if err := c.Validate(); err != nil || c.RequestID != "c" {
				t.Errorf("delivered cert %+v (%v) to request c", c, err)
			}
		default:
		}
	})
}
