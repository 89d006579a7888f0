// Package protocol is the contract between the Hearth hub and its agents: MQTT topics, message
// types, error codes and their validation. README.md beside this file is the specification;
// this package is its executable form.
//
// Invariants:
//   - Every message carries "v": [Version]. Decoders ignore unknown fields, so fields may be
//     added within a version; removing or changing one is a new topic version.
//   - Decoders refuse input larger than [MaxMessageSize] before parsing it, and every decoded
//     message has passed its Validate method.
//   - Error codes ([Code]) are an append-only list: a code is never renamed or reused.
//
// The package imports only the standard library and holds no state; everything in it is safe
// for concurrent use.
package protocol
