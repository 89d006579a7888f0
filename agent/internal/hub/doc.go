// Package hub is the agent's MQTT session with the Hearth hub: one TLS connection (MQTT 3.1.1
// through internal/mqtt), request/response correlated by request id, and the hub's pushes (commands,
// renewal windows, the CA chain) handed over on a channel.
//
// A Session is one connection. There is no automatic reconnection: the caller dials a new
// Session when one is lost (Lost is closed), because renewal needs to know exactly when a
// handshake with a new certificate happens and whether the hub refused it ("Renewal: two
// phases, commit by reconnect" in protocol/README.md). The client certificate is taken from
// tls.Config.GetClientCertificate at each handshake, so a Session dialled after an install
// presents the new pair.
//
// The connection speaks protocol version 4 (the only one the hub speaks, protocol/README.md,
// "Overview") with a clean session and a fresh client id per connection (protocol/README.md,
// "Access control": a takeover can lose the new session's subscriptions). Its message handler
// runs on the connection's reading goroutine and never blocks: replies go to the waiter
// registered for their request id (a table of at most MaxWaiters entries) and pushes to a
// buffered Inbox, both with a non-blocking send; what does not fit is dropped and logged.
// Nothing is stored across connections: a request the connection lost before its reply is
// resubmitted by the caller on the next Session.
//
// A device Session (ModeDevice) sets a retained Will "offline" on its own state topic and
// publishes a retained "online" after subscribing to its cert, ack, cmd and renewal topics and
// to the CA topic. An enrollment Session (ModeEnroll) authenticates by username and password,
// subscribes to its cert topic only and sets no Will. A CA Session (ModeCA) subscribes to the
// CA topic only, with no credentials at all.
//
// Concurrency: a Session's methods are safe for concurrent use.
package hub
