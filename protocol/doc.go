// Package protocol is the contract between the Hearth hub and its agents: MQTT topics, message
// types, error codes and their validation, and every word both sides must spell alike: the
// device id rule and URN, certificate fingerprints, key names, event types and the bridge
// operations' bodies. README.md beside this file is the specification; this package is its
// executable form, and no other package spells these words.
//
// Invariants:
//   - Every message carries "v": [Version]. Decoders ignore unknown fields, so fields may be
//     added within a version; removing or changing one is a new topic version.
//   - Decoders refuse input larger than [MaxMessageSize] before parsing it, and every decoded
//     message has passed its Validate method.
//   - Error codes ([Code]) and event types ([EventType]) are append-only lists: an entry is
//     never renamed, removed or reused.
//
// The package imports only the standard library and holds no state; everything in it is safe
// for concurrent use.
package protocol
