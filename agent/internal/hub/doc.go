// Package hub is the agent's MQTT session with the Hearth hub: one TLS connection (MQTT 3.1.1
// through paho), request/response correlated by request id, and the hub's pushes (commands,
// renewal windows, the CA chain) handed over on a channel.
//
// A Session is one connection. There is no automatic reconnection: the caller dials a new
// Session when one is lost (Lost is closed), because renewal needs to know exactly when a
// handshake with a new certificate happens and whether the hub refused it ("Renewal: two
// phases, commit by reconnect" in protocol/README.md). The client certificate is taken from
// tls.Config.GetClientCertificate at each handshake, so a Session dialled after an install
// presents the new pair.
//
// Paho is configured to avoid its traps: protocol version 4 (the only one the hub speaks,
// protocol/README.md, "Overview"), a fresh client id per connection (protocol/README.md,
// "Access control": a takeover can lose the new session's subscriptions), OrderMatters(false) so
// that handlers run on their own goroutines, a clean session, and handlers that never block:
// replies go to the waiter registered for their request id (a table of at most MaxWaiters
// entries) and pushes to a buffered Inbox, both with a non-blocking send; what does not fit is
// dropped and logged. Paho's in-memory store holds only the QoS 1 messages of this one
// connection, and the caller keeps at most one request in flight, so it stays small.
//
// A device Session (ModeDevice) sets a retained Will "offline" on its own state topic and
// publishes a retained "online" after subscribing to its cert, ack, cmd and renewal topics and
// to the CA topic. An enrollment Session (ModeEnroll) authenticates by username and password,
// subscribes to its cert topic only and sets no Will. A CA Session (ModeCA) subscribes to the
// CA topic only, with no credentials at all.
//
// Concurrency: a Session's methods are safe for concurrent use.
package hub
