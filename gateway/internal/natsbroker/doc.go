// Package natsbroker connects the hub to an external clustered MQTT broker, a NATS server
// cluster with MQTT enabled (cmd/hearth-nats), instead of running the embedded one
// (internal/broker). It gives the hub what the embedded broker gives it — [Broker.Publish],
// [Broker.Disconnect], [Broker.DisconnectAfter], [Broker.Online], [Broker.Run] and the
// session observer — with the same [broker.Auth] decisions and the same [broker.Handler]:
//
//   - Identity and ACL: every MQTT CONNECT on any node is sent by the server to its auth
//     callout ($SYS.REQ.USER.AUTH), which the hub replicas answer in one queue group. The
//     request carries the certificates the client presented over TLS; the hub verifies the
//     chain against its root itself (hearth-nats asks for a certificate and verifies none),
//     then asks Auth exactly as the embedded broker does: a certificate → device id and
//     serial, an enrollment token login, an admin login. The answer is a user JWT signed
//     with the callout issuer's key whose permissions are the session's grant, in NATS
//     subjects: what the session may publish and subscribe to (protocol/README.md,
//     "Access control"). A refused enrollment login is accepted as a refused session whose
//     JWT expires ConnectTimeout after its CONNECT; its CSR is answered with the refusal.
//   - The session's identity travels in its NATS user name (see name.go), so every replica
//     learns it from the server's connect event, not only the replica that answered.
//   - Requests (csr, commit, health, state, bridge requests) are received through a NATS
//     queue subscription, the engine's equivalent of MQTT's $share: each is handled by one
//     replica. NATS MQTT has no $share/ subscriptions.
//   - Presence: the server's connect and disconnect events ($SYS.ACCOUNT.<account>.CONNECT
//     and .DISCONNECT) drive the Sessions observer and Online. A session counts as
//     subscribed to its command topic when it publishes its first state (the agent
//     subscribes, waits for its SUBACK, then announces itself online): every replica
//     receives the state messages outside the queue group too, for that mark alone, so
//     that the replica leading the scheduler sends commands to every device.
//   - Revocation: Disconnect kicks every known session of the device on the node that
//     holds it ($SYS.REQ.SERVER.<id>.KICK); Auth already refuses it, so it cannot return.
//   - The hub publishes over MQTT (QoS 1, retained where asked) through one session of its
//     own, so retained topics (CA, CRL, renewal windows) behave as on the embedded broker.
//
// What differs from the embedded broker (gateway/README.md, "External clustered broker"):
// a message carries no sender, so a device's message is attributed to the device's newest
// session and a bridge request to the only admin session online; payloads are checked by
// the hub when it receives them, not before the broker delivers them to other subscribers;
// connection limits and per-client publish rates are the cluster's settings.
//
// Concurrency: all exported methods of [Broker] are safe for concurrent use. The Handler is
// called from one goroutine, in the order the hub's connection received the messages. The
// Sessions observer is called in the order the events reached this replica, with the
// session registry locked: it must only queue.
package natsbroker
