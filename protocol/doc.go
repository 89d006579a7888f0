// Package protocol is the contract between the Hearth hub and its agents: MQTT topics, message
// types, error codes and validation. It imports only the standard library.
package protocol
