// Package broker is the hub's embedded MQTT broker: mochi-mqtt behind a hardened TLS
// listener, with one hook that authenticates every CONNECT, enforces the topic ACL
// (protocol/README.md, "Access control"), rate-limits publishes and hands the messages agents
// and admins send to the hub to a [Handler].
//
// The package knows nothing of certificates authorities, tokens or the inventory: main wires
// it to them with the small [Auth] interface and the [Handler] func defined here.
//
// Invariants:
//   - Every session has exactly one [Identity], decided once at CONNECT and kept in memory
//     on the connection; ACL checks never leave memory.
//   - A device (mutual TLS) publishes only its own csr, commit, health and state and reads
//     only its own cert, ack, cmd and renewal plus the CA and CRL topics; an enrolling session
//     publishes only its own csr and reads its own cert and the CA; an admin reads anything
//     under the prefix and publishes only bridge requests. Subscriptions of devices and
//     enrolling sessions must name exact topics: wildcards are refused.
//   - An enrollment login that Auth refuses with a Refusal (token unknown, used, expired,
//     locked out) is accepted as a refused session (RoleRefused): the rights of an enrolling
//     session, but its CSR is answered by the broker, on its cert topic and to it alone, with
//     the refusal's code, and the session is closed ConnectTimeout after its CONNECT. It is
//     never a session of its device and stays pending for the connection limits. Every
//     enrollment login, accepted or refused, is told to Config.Logins.
//   - Only the hub (the inline client, [Broker.Publish]) and a device on its own state topic
//     store retained messages; a Will is accepted only for a device on its own state topic,
//     and is not retained while another session of the device is online (a takeover).
//   - Client ids are tied to identities, since mochi hands a session to whoever reuses its
//     client id: a device or enrolling session uses its device id, "<device id>:<anything>"
//     or a broker-assigned id; "inline" (mochi's own client) is refused to everyone.
//   - Every message of a device or enrolling session is checked against its topic's schema
//     (protocol.Decode into the topic's type: size, JSON, version, rules) before it is
//     delivered or retained; one that fails is not delivered, a state is dropped, and a
//     request (csr, commit, health) still reaches the Handler so the hub can answer it with
//     the error's code. A Will must be a valid State.
//   - A refused publish (ACL or rate) is acknowledged and dropped (mochi's
//     CodeSuccessIgnore): a 3.1.1 QoS 1 client gets its PUBACK, is not disconnected and
//     does not re-send in a loop.
//   - A connection gets at most Config.ConnectTimeout for its TLS handshake and CONNECT. Every
//     packet's claimed size is checked from its fixed header as the bytes arrive, before
//     mochi allocates a buffer of that size: a CONNECT may claim at most
//     MaxConnectCertificate (with a client certificate) or MaxConnectPassword bytes, later
//     packets of devices and enrolling sessions protocol.MaxMessageSize plus a little, of
//     admins Config.MaxPacketSize. A larger claim closes the connection.
//   - Connections are limited per source (an IPv4 address or an IPv6 /64) and in total
//     (Config.Limits). A connection is pending until its CONNECT is authenticated; when the
//     pending ones of a source, or all of them, reach their limit, the most silent pending
//     connection of that source (or of the busiest source) is closed to admit the new one —
//     one that never sent a byte, oldest first, else the one silent longest — so an idle
//     flood sheds itself and a client that talks gets through. Authenticated
//     connections beyond the total or their source's limit (loopback is exempt: local
//     processes can take the machine's memory anyway) are refused at CONNECT. A device holds
//     at most Limits.MaxSessionsPerDevice sessions: a new one closes its oldest.
//
// Concurrency: all exported methods of [Broker] are safe for concurrent use. The Handler is
// called synchronously from the sending client's read goroutine (so one client's messages
// reach it in order) and must return fast. The [Sessions] observer is called in the order
// things happened to each session, with the session registry locked: it must only queue.
package broker
