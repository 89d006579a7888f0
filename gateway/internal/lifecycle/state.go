// Package lifecycle is the hub's device state machine: the one ordered path through which
// every change of a device's sessions, certificate requests, commits and renew commands
// goes.
//
// The machine is split in two halves:
//
//   - [Step] is a pure function of (State, Event, now) → (State, []Effect). It decides; it
//     reads nothing and writes nothing. Its rules are the specification in
//     protocol/README.md ("The device state machine"), and its table and race tests live
//     beside it.
//   - [Machine] runs Step for every device, one event at a time per device and in the
//     order the events happened, and carries out the effects (inventory writes, replies,
//     commands, notifications) before it takes the device's next event.
//
// Invariants Step guarantees:
//   - A session event carries the connection it belongs to, and connection ids grow with
//     every connection the broker accepts. Presence never activates or deactivates a
//     certificate: only a commit does, and a commit is checked against the session it
//     arrives on. So a late event from an older connection can never undo a newer commit.
//   - A device holds at most one request in flight (one pending certificate) until it is
//     committed, rolled back, or its in-flight timeout passes; another request id gets
//     busy meanwhile.
//   - A renew command is sent only to a device that has a session subscribed to its command
//     topic, and is sent again on each new subscription until the device acts on it (a CSR)
//     or the command's deadline passes.
//   - A revocation (RevokeRequested) is an event of the device like the others: a request
//     whose certificate is being signed when it arrives is recorded first and revoked with
//     the rest, and the state forgets what it revoked, so no later commit or rollback brings
//     a revoked certificate back.
//   - A failure an agent reports in a health report (its last failed request id and cause)
//     is recorded once: it ends the request in flight if it names it, and is otherwise
//     stored as a failed attempt only if no attempt of that request id is stored yet.
package lifecycle

import (
	"maps"
	"time"
)

// Conn identifies one broker connection. The broker numbers connections from 1 in the order
// it accepts them, so a larger Conn is a newer connection.
type Conn uint64

// State is what the machine knows of one device. The zero State is a device with no active
// certificate, no session and nothing in flight.
type State struct {
	// Active is the serial of the device's active certificate; "" before its first commit.
	Active string
	// Previous is the certificate the last commit superseded, and LastRequest that commit's
	// request id: a rolled_back report for LastRequest, from a session presenting Previous,
	// is a rollback after the commit.
	Previous    string
	LastRequest string
	// Proven is the connection on which Active was last committed (0: not in this run).
	Proven Conn
	// Pending is the request in flight, if any.
	Pending *Pending
	// Command is a renew command the device has not yet acted on, if any.
	Command *Command
	// Sessions are the device's live authenticated sessions.
	Sessions map[Conn]Session
}

// Pending is a certificate request in flight: its certificate, if one was issued, is
// pending until the device commits it or the request ends.
type Pending struct {
	RequestID string
	Serial    string    // the issued certificate; "" until issued
	Expires   time.Time // the in-flight timeout: the request ends unless committed by then
}

// Command is a renew command waiting for the device to act on it.
type Command struct {
	ID       string
	Action   string
	Reason   string
	Deadline time.Time
	Sent     int // how many times it was sent
}

// Session is one live session of the device.
type Session struct {
	Serial     string // the certificate presented; "" for an enrolling (token) session
	Subscribed bool   // subscribed to the device's command topic
}

// Online reports whether the device has a live certificate session.
func (s *State) Online() bool {
	for _, x := range s.Sessions {
		if x.Serial != "" {
			return true
		}
	}
	return false
}

// subscribed reports whether some session of the device receives its commands.
func (s *State) subscribed() bool {
	for _, x := range s.Sessions {
		if x.Subscribed {
			return true
		}
	}
	return false
}

// presenting counts the live sessions presenting serial.
func (s *State) presenting(serial string) int {
	n := 0
	for _, x := range s.Sessions {
		if x.Serial == serial {
			n++
		}
	}
	return n
}

// clone returns a copy of s that Step may change without touching s.
func (s State) clone() State {
	s.Sessions = maps.Clone(s.Sessions)
	if s.Pending != nil {
		p := *s.Pending
		s.Pending = &p
	}
	if s.Command != nil {
		c := *s.Command
		s.Command = &c
	}
	return s
}

// Idle reports whether the machine may forget s: nothing live, nothing in flight.
func (s *State) Idle() bool {
	return len(s.Sessions) == 0 && s.Pending == nil && s.Command == nil
}

// NextDeadline returns the earliest time at which a Tick changes s, or the zero time.
func (s *State) NextDeadline() time.Time {
	var t time.Time
	if s.Pending != nil {
		t = s.Pending.Expires
	}
	if s.Command != nil && (t.IsZero() || s.Command.Deadline.Before(t)) {
		t = s.Command.Deadline
	}
	return t
}
