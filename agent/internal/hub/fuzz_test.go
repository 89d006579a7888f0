package hub

import (
	"io"
	"log/slog"
	"testing"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/protocol"
)

// message is an mqtt.Message for feeding route directly.
type message struct {
	topic    string
	payload  []byte
	retained bool
}

func (m message) Duplicate() bool   { return false }
func (m message) Qos() byte         { return 1 }
func (m message) Retained() bool    { return m.retained }
func (m message) Topic() string     { return m.topic }
func (m message) MessageID() uint16 { return 1 }
func (m message) Payload() []byte   { return m.payload }
func (m message) Ack()              {}

var _ mqtt.Message = message{}

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
			log:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			inbox: make(chan Inbound, 1),
			lost:  make(chan struct{}),
			certs: map[string]chan *protocol.Cert{},
			acks:  map[string]chan *protocol.Ack{},
		}
		certs, _, _ := register(s, s.certs, "c")
		s.route(nil, message{topic, payload, retained})
		s.route(nil, message{topic, payload, retained}) // a full inbox must not block
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
