// Package mqtt is the agent's MQTT 3.1.1 client (OASIS Standard, 29 October 2014): one
// connection, opened by [Connect] over a transport the caller dialled (for the hub, a
// *tls.Conn), and closed for good when it ends.
//
// It does what a Hearth device needs and nothing more: CONNECT with a client id, credentials
// and a Will, always with a clean session; SUBSCRIBE; PUBLISH at QoS 0 and 1 in both directions
// (a QoS 2 message from the server is acknowledged, although the agent never subscribes at
// QoS 2); PINGREQ keep-alive; DISCONNECT. There is no reconnection, no message store and no
// session state across connections: internal/hub dials a new Conn when one ends, because a
// renewal must know which connection, with which certificate, a message travelled on
// (protocol/README.md, "Renewal: two phases, commit by reconnect").
//
// Packets are encoded and decoded by paho's codec, github.com/eclipse/paho.mqtt.golang/packets,
// the only part of paho that the agent links. Paho's client also links its WebSocket and proxy
// support and net/http with them — about 0.75 MiB of a 7.3 MiB MIPS binary, for transports the
// agent never uses (issue 18; agent/README.md, "Sizes").
//
// Invariants: writes are serialized and each is bounded by Config.Timeout; an incoming packet
// longer than MaxPacketSize, a packet a server must not send, or a missing PINGRESP ends the
// connection; messages are handed to Config.OnMessage on the reading goroutine, one at a time
// in the order they arrived, and a QoS 1 message is acknowledged only after OnMessage returned.
//
// Goroutines: a successful Connect starts two, the reader and the keep-alive timer; both end
// when the connection ends (Done is closed), whether the server, the network or Disconnect
// ended it. Concurrency: a Conn's methods are safe for concurrent use.
package mqtt
