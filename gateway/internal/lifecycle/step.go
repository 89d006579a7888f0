package lifecycle

import (
	"fmt"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

// DefaultInFlight is the default in-flight timeout of a request: from its CSR to its commit.
const DefaultInFlight = 10 * time.Minute

// notPresentedRetry is the retry hint of a not_presented refusal: the agent reconnects with
// the certificate it commits, and a commit racing that reconnection succeeds moments later.
const notPresentedRetry = 5 * time.Second

// Rules are the machine's settings. The zero Rules use the defaults.
type Rules struct {
	// InFlight is how long a request may stay in flight, from its CSR to its commit, before
	// it ends and its pending certificate is dropped. Default DefaultInFlight.
	InFlight time.Duration
	// Issuer is the subject of the hub's intermediate, as agents report it in health; a
	// report naming another is a finding. "" checks nothing.
	Issuer string
	// Issuers, when set, replaces Issuer: it reports whether an issuer agents report is one
	// of the hub's intermediates in force (two during an intermediate rotation). It must be
	// safe for concurrent use and cheap: it is asked for each health report.
	Issuers func(issuer string) bool
}

// unexpectedIssuer reports whether an agent's reported issuer is none of the hub's.
func (r Rules) unexpectedIssuer(issuer string) bool {
	if issuer == "" {
		return false
	}
	if r.Issuers != nil {
		return !r.Issuers(issuer)
	}
	return r.Issuer != "" && issuer != r.Issuer
}

func (r Rules) inFlight() time.Duration {
	if r.InFlight <= 0 {
		return DefaultInFlight
	}
	return r.InFlight
}

// Step applies e to s at time now and returns the new state and the effects to carry out,
// in order. It does not change s. See protocol/README.md, "The device state machine".
func (r Rules) Step(s State, e Event, now time.Time) (State, []Effect) {
	s = s.clone()
	if s.Sessions == nil {
		s.Sessions = map[Conn]Session{}
	}
	var out []Effect
	switch e := e.(type) {
	case SessionUp:
		was := s.Online()
		s.Sessions[e.Conn] = Session{Serial: e.Serial}
		if e.Serial == "" {
			break
		}
		if !was {
			out = append(out, PresenceChanged{Online: true})
		}
		if n := s.presenting(e.Serial); n > 1 {
			out = append(out, Found{Kind: FindingDuplicateSession, Serial: e.Serial, Count: n})
		}
	case SessionDown:
		if _, ok := s.Sessions[e.Conn]; !ok {
			break
		}
		was := s.Online()
		delete(s.Sessions, e.Conn)
		if was && !s.Online() {
			out = append(out, PresenceChanged{Online: false})
		}
	case Subscribed:
		x, ok := s.Sessions[e.Conn]
		if !ok {
			break // the session already closed
		}
		x.Subscribed = true
		s.Sessions[e.Conn] = x
		if c := s.Command; c != nil && now.Before(c.Deadline) {
			c.Sent++
			out = append(out, SendCommand{Command: *c})
		}
	case CSRReceived:
		out = r.expire(&s, now, out)
		if s.Command != nil {
			out = append(out, CommandSeen{ID: s.Command.ID})
			s.Command = nil
		}
		switch p := s.Pending; {
		case p == nil:
			s.Pending = &Pending{RequestID: e.RequestID, Expires: now.Add(r.inFlight())}
			out = append(out, Proceed{RequestID: e.RequestID})
		case p.RequestID == e.RequestID:
			// A resubmission after a lost reply: the pipeline answers it idempotently.
			out = append(out, Proceed{RequestID: e.RequestID})
		default:
			out = append(out, Refuse{RequestID: e.RequestID, Code: protocol.CodeBusy,
				Message:    fmt.Sprintf("request %s of this device is in flight until %s", p.RequestID, p.Expires.UTC().Format(time.RFC3339)),
				RetryAfter: max(p.Expires.Sub(now), time.Second)})
		}
	case Issued:
		if p := s.Pending; p != nil && p.RequestID == e.RequestID {
			if e.Serial == s.Active {
				s.Pending = nil // a resubmission of a request already committed
			} else {
				p.Serial = e.Serial
			}
		}
	case RequestRefused:
		if p := s.Pending; p != nil && p.RequestID == e.RequestID && p.Serial == "" {
			s.Pending = nil
		}
	case CommitReceived:
		out = r.commit(&s, e, out)
	case CommandQueued:
		c := e.Command
		s.Command = &c
		if s.subscribed() {
			s.Command.Sent++
			out = append(out, SendCommand{Command: *s.Command})
		}
	case HealthReported:
		out = append(out, RecordHealth{Health: e.Health})
		reported := e.Health.ReportedSerial
		if reported != "" && s.Active != "" && reported != s.Active && (s.Pending == nil || reported != s.Pending.Serial) {
			out = append(out, Found{Kind: FindingUnexpectedSerial, Serial: reported, Detail: s.Active})
		}
		if r.unexpectedIssuer(e.Issuer) {
			out = append(out, Found{Kind: FindingUnexpectedIssuer, Serial: reported, Detail: e.Issuer})
		}
		out = r.reportedFailure(&s, e.Failure, out)
	case RevokeRequested:
		out = r.revoke(&s, e, out)
	case Tick:
		out = r.expire(&s, now, out)
		if c := s.Command; c != nil && !now.Before(c.Deadline) {
			out = append(out, CommandSeen{ID: c.ID, Expired: true})
			s.Command = nil
		}
	default:
		panic(fmt.Sprintf("lifecycle: unknown event %T", e))
	}
	return s, out
}

// expire ends the request in flight if its in-flight timeout has passed.
func (r Rules) expire(s *State, now time.Time, out []Effect) []Effect {
	p := s.Pending
	if p == nil || now.Before(p.Expires) {
		return out
	}
	s.Pending = nil
	return append(out, EndRequest{RequestID: p.RequestID, Serial: p.Serial, Outcome: OutcomeExpired, Failure: protocol.CauseCommitTimeout,
		Cause: "no commit before the in-flight timeout " + p.Expires.UTC().Format(time.RFC3339)})
}

// commit decides a commit report, checked against the session it arrived on.
func (r Rules) commit(s *State, e CommitReceived, out []Effect) []Effect {
	refuse := func(code protocol.Code, retry time.Duration, format string, args ...any) []Effect {
		return append(out, Refuse{Commit: true, RequestID: e.RequestID, Code: code, Message: fmt.Sprintf(format, args...), RetryAfter: retry})
	}
	if e.Presented != e.Serial {
		presented := e.Presented
		if presented == "" {
			presented = "none"
		}
		return refuse(protocol.CodeNotPresented, notPresentedRetry, "the TLS session presents serial %s, not %s", presented, e.Serial)
	}
	p := s.Pending
	inFlight := p != nil && p.RequestID == e.RequestID
	switch e.Outcome {
	case protocol.OutcomeCommitted:
		switch {
		case inFlight && p.Serial == "":
			return refuse(protocol.CodeUnknownRequest, 0, "request %s has no certificate issued yet", e.RequestID)
		case inFlight && p.Serial != e.Serial:
			return refuse(protocol.CodeUnknownRequest, 0, "request %s issued %s, not %s", e.RequestID, p.Serial, e.Serial)
		case inFlight:
			out = append(out, Activate{RequestID: e.RequestID, Serial: e.Serial, Previous: s.Active})
			s.Previous, s.Active, s.LastRequest, s.Proven, s.Pending = s.Active, e.Serial, e.RequestID, e.Conn, nil
			return out
		case e.RequestID == s.LastRequest && e.Serial == s.Active:
			s.Proven = max(s.Proven, e.Conn)
			return append(out, Reacknowledge{RequestID: e.RequestID, Serial: e.Serial})
		}
		return refuse(protocol.CodeUnknownRequest, 0, "request %s is not in flight", e.RequestID)
	case protocol.OutcomeRolledBack:
		switch {
		case inFlight && s.Active != "" && e.Serial != s.Active:
			return refuse(protocol.CodeUnknownRequest, 0, "serial %s is not the device's active certificate %s", e.Serial, s.Active)
		case inFlight:
			s.Pending = nil
			cause, detail := e.Cause, "the agent rolled back"
			if cause == "" {
				cause = protocol.CauseUnknown // an agent too old to say
			}
			if e.Detail != "" {
				detail += ": " + e.Detail
			}
			return append(out, EndRequest{RequestID: e.RequestID, Serial: p.Serial, Outcome: OutcomeRolledBack,
				Cause: detail, Failure: cause, Acknowledge: true, Current: e.Serial})
		case e.RequestID == s.LastRequest && s.Previous != "" && e.Serial == s.Previous:
			// The agent went back to its previous pair after the hub recorded the commit
			// (its acknowledgement was lost, or the new pair failed at once): the session
			// proves it.
			out = append(out, Activate{RequestID: e.RequestID, Serial: e.Serial, Previous: s.Active, Rollback: true, Failed: e.Failed})
			s.Active, s.Previous, s.Proven = e.Serial, "", e.Conn
			return out
		case e.Serial == s.Active:
			// A report repeated after it was recorded, or about a request that already
			// ended: the device stays where it is.
			return append(out, Reacknowledge{RequestID: e.RequestID, Serial: e.Serial})
		}
		return refuse(protocol.CodeUnknownRequest, 0, "request %s is not in flight and %s is not the active certificate", e.RequestID, e.Serial)
	}
	return refuse(protocol.CodeBadRequest, 0, "unknown outcome %q", e.Outcome)
}

// reportedFailure takes up the failure a health report names. The request in flight, if it
// is that one, ends rolled back with the agent's cause (its rolled_back report was lost: the
// agent gave the request up, so its pending certificate is dropped now rather than at the
// in-flight timeout); any other is recorded as a failed attempt, which the store does once
// per request id and never over a request the hub recorded itself.
func (r Rules) reportedFailure(s *State, f ReportedFailure, out []Effect) []Effect {
	if f.RequestID == "" || f.Cause == "" {
		return out
	}
	if p := s.Pending; p != nil && p.RequestID == f.RequestID {
		s.Pending = nil
		detail := "the agent reported it gave the request up"
		if f.Detail != "" {
			detail += ": " + f.Detail
		}
		return append(out, EndRequest{RequestID: p.RequestID, Serial: p.Serial, Outcome: OutcomeRolledBack, Cause: detail, Failure: f.Cause})
	}
	return append(out, RecordFailure{Failure: f})
}
