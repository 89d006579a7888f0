package device

import "time"

// EventKind names what happened in an agent.
type EventKind string

// The event kinds.
const (
	EventConnected    EventKind = "connected"     // a mutual-TLS session with the hub is up
	EventDisconnected EventKind = "disconnected"  // the session ended (Err says why)
	EventUnreachable  EventKind = "unreachable"   // a connection attempt failed (Err says why); the agent keeps trying
	EventRenewing     EventKind = "renewing"      // a renewal starts (Detail is its protocol reason)
	EventRenewed      EventKind = "renewed"       // a new certificate was installed and acknowledged
	EventRolledBack   EventKind = "rolled_back"   // an installed certificate was given up (Err says why)
	EventRenewFailed  EventKind = "renew_failed"  // a renewal failed before anything was installed
	EventHealth       EventKind = "health"        // a health report was published
	EventCommand      EventKind = "command"       // a hub command was received (Detail is its action)
	EventCAUpdated    EventKind = "ca_updated"    // the pinned CA chain was replaced from the hub's CA topic
	EventHookFinished EventKind = "hook_finished" // the OnRenew command ended (Detail is its exit code)
	EventCRLUpdated   EventKind = "crl_updated"   // a newer CRL from the hub was verified and kept (Detail "revoked" when it lists this device, "issuer_revoked" when the root's lists its intermediate)
)

// Event is one thing that happened in an agent, for Config.OnEvent.
type Event struct {
	Kind EventKind
	// Serial is the serial of the certificate in use after the event.
	Serial string
	// RequestID is the renewal request concerned, if any.
	RequestID string
	// Detail is a short, kind-specific detail.
	Detail string
	// Err is the failure, for the failure kinds.
	Err error
	// Time is the device clock at the event.
	Time time.Time
}
