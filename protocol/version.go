package protocol

// Version is the protocol version carried in every message's "v" field and in the topic
// namespace ("hearth/v1/...").
//
// History:
//   - 1 (2026-11-25): first version: enrollment and renewal over csr/cert/commit/ack, hub
//     commands, retained renewal info, health reports, device state, CA and CRL topics, and the
//     bridge topics for people and Home Assistant.
const Version = 1

// DefaultPrefix is the topic prefix used when none is configured.
const DefaultPrefix = "hearth"
