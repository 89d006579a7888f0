// Package device is the Hearth agent's runtime: enrollment, the renewal loop, health reports
// and status, everything hearth-agent does except parsing its command line.
//
// Besides hearth-agent, the fleet simulator hearth-fleet (agent/cmd/hearth-fleet) runs many
// agents of this package in one process, each with its own state directory or its keys in
// memory (Config.Memory), so that what it measures is the real agent's behaviour. Its API is
// kept small: Config, Memory, Enroll, New and Agent.Run, Agent.Serial, Renew, ReadStatus, the
// sentinel errors and Event. Fingerprints are protocol.Fingerprint, shared with the hub.
//
// # Flows
//
// Enroll pins the hub's CA by the fingerprint the operator gives (never trust on first use),
// generates the key on the device and exchanges a CSR for a certificate, authenticated by a
// one-time token, then commits over mutual TLS. Agent.Run then keeps a mutual-TLS session:
//
//   - it renews at a random instant inside the hub's renewal window (the retained renewal
//     topic), or without one at 2/3 of the lifetime ±10 %, at once on a hub renew or rekey
//     command, and at once below 1/20 of the lifetime left (the emergency floor);
//   - a renewal is a two-phase commit by reconnection: fresh key, CSR (same request id when
//     resubmitted after a dropped connection), verification of the chain against the pinned
//     CA, key match and identity, atomic install keeping the previous pair, reconnection with
//     the new certificate, commit, acknowledgment. Any failure rolls back to the previous pair,
//     reconnects with it and reports the rolled-back commit; retries back off exponentially
//     with jitter (Config.RetryMin doubling to Config.RetryMax);
//   - it reports health every Config.HealthEvery and after each change;
//   - while the hub is unreachable it keeps its certificate and keeps trying.
//
// # Clock
//
// A device clock before the build time or the last known good time, or more than an hour
// from the hub's, is not trusted (see internal/clock). Decisions then use the hub's time
// learned from its live messages, or a lower bound of the time, which can prove that a
// renewal is due or a certificate expired but never that a certificate is not yet valid: a
// board booting in 1970 never declares its certificate expired. The last known good time is
// persisted, and the skew is reported.
//
// # State directory
//
// The keystore (internal/keystore) owns current.pem, previous.pem, failed.pem, ca.pem and
// state.json. This package adds config.json (hub URL, device id, topic prefix, key algorithm,
// written by Enroll), status.json (what the running agent last knew: connection, clock, next
// renewal, on-renew result; informative only) and lock (a flock(2) held by the one process
// using the directory). Every file is written atomically. With Config.Memory there is no
// directory: the keystore is a keystore.Memory and none of these files exists.
//
// # Concurrency
//
// An Agent's Run must be called once; everything else of an Agent is owned by that goroutine.
// Config.OnEvent is called from it and must not block; Agent.Serial may be called from any
// goroutine. Enroll, Renew and Run take the directory's lock and fail with ErrLocked if
// another holder exists, in this process or another (a Memory has no lock: one user at a
// time). ReadStatus takes no lock and changes nothing.
package device
