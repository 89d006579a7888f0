package lifecycle

import (
	"reflect"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// run applies events in order from the zero State (or from start) and returns the final
// state and every effect, in order.
func run(start State, at time.Time, events ...Event) (State, []Effect) {
	var all []Effect
	s := start
	for _, e := range events {
		var out []Effect
		s, out = Rules{InFlight: time.Minute, Issuer: "CN=hub"}.Step(s, e, at)
		all = append(all, out...)
	}
	return s, all
}

func committed(conn Conn, serial, req string) CommitReceived {
	return CommitReceived{Conn: conn, Presented: serial, RequestID: req, Serial: serial, Outcome: protocol.OutcomeCommitted}
}

func rolledBack(conn Conn, presented, req, serial, failed string) CommitReceived {
	return CommitReceived{Conn: conn, Presented: presented, RequestID: req, Serial: serial, Outcome: protocol.OutcomeRolledBack, Failed: failed}
}

// onA is a device with active certificate "a", online on connection 1.
var onA = State{Active: "a", Proven: 1, Sessions: map[Conn]Session{1: {Serial: "a"}}}

// renewing is onA with request r1 in flight, certificate "b" issued.
var renewing = State{Active: "a", Proven: 1, Sessions: map[Conn]Session{1: {Serial: "a"}},
	Pending: &Pending{RequestID: "r1", Serial: "b", Expires: t0.Add(time.Minute)}}

func TestStep(t *testing.T) {
	cmd := Command{ID: "c1", Action: "renew", Deadline: t0.Add(time.Hour)}
	tests := []struct {
		name    string
		start   State
		at      time.Time
		events  []Event
		want    []Effect
		active  string
		pending string // request id in flight, "" none
		online  bool
	}{
		{
			name:   "first session goes online once",
			events: []Event{SessionUp{Conn: 1, Serial: "a"}, SessionUp{Conn: 2, Serial: "x"}},
			want:   []Effect{PresenceChanged{Online: true}},
			online: true,
		},
		{
			name:   "token session is not presence",
			events: []Event{SessionUp{Conn: 1}},
			want:   nil,
		},
		{
			name:   "last session down goes offline",
			start:  onA,
			events: []Event{SessionUp{Conn: 2, Serial: "a2"}, SessionDown{Conn: 1}, SessionDown{Conn: 2}},
			want:   []Effect{PresenceChanged{Online: false}},
			active: "a",
		},
		{
			name:   "down of an unknown connection is ignored",
			start:  onA,
			events: []Event{SessionDown{Conn: 7}},
			active: "a", online: true,
		},
		{
			name:   "same certificate on two connections is a finding",
			start:  onA,
			events: []Event{SessionUp{Conn: 2, Serial: "a"}},
			want:   []Effect{Found{Kind: FindingDuplicateSession, Serial: "a", Count: 2}},
			active: "a", online: true,
		},
		{
			name:   "csr proceeds and holds single flight",
			start:  onA,
			events: []Event{CSRReceived{Conn: 1, RequestID: "r1"}, Issued{RequestID: "r1", Serial: "b"}},
			want:   []Effect{Proceed{RequestID: "r1"}},
			active: "a", pending: "r1", online: true,
		},
		{
			name:   "second request while one is pending is busy",
			start:  renewing,
			events: []Event{CSRReceived{Conn: 1, RequestID: "r2"}},
			want: []Effect{Refuse{RequestID: "r2", Code: protocol.CodeBusy,
				Message: "request r1 of this device is in flight until 2026-12-01T12:01:00Z", RetryAfter: time.Minute}},
			active: "a", pending: "r1", online: true,
		},
		{
			name:   "resubmission of the request in flight proceeds again",
			start:  renewing,
			events: []Event{CSRReceived{Conn: 1, RequestID: "r1"}},
			want:   []Effect{Proceed{RequestID: "r1"}},
			active: "a", pending: "r1", online: true,
		},
		{
			name:   "a request after the in-flight timeout ends the old one",
			start:  renewing,
			at:     t0.Add(time.Minute),
			events: []Event{CSRReceived{Conn: 1, RequestID: "r2"}},
			want: []Effect{
				EndRequest{RequestID: "r1", Serial: "b", Outcome: OutcomeExpired, Failure: protocol.CauseCommitTimeout,
					Cause: "no commit before the in-flight timeout 2026-12-01T12:01:00Z"},
				Proceed{RequestID: "r2"},
			},
			active: "a", pending: "r2", online: true,
		},
		{
			name:   "refused request frees single flight",
			start:  onA,
			events: []Event{CSRReceived{Conn: 1, RequestID: "r1"}, RequestRefused{RequestID: "r1"}},
			want:   []Effect{Proceed{RequestID: "r1"}},
			active: "a", online: true,
		},
		{
			name:   "commit on a session presenting the new certificate activates it",
			start:  renewing,
			events: []Event{SessionUp{Conn: 2, Serial: "b"}, committed(2, "b", "r1")},
			want:   []Effect{Activate{RequestID: "r1", Serial: "b", Previous: "a"}},
			active: "b", online: true,
		},
		{
			name:   "commit from the old session is not presented",
			start:  renewing,
			events: []Event{CommitReceived{Conn: 1, Presented: "a", RequestID: "r1", Serial: "b", Outcome: protocol.OutcomeCommitted}},
			want: []Effect{Refuse{Commit: true, RequestID: "r1", Code: protocol.CodeNotPresented,
				Message: "the TLS session presents serial a, not b", RetryAfter: notPresentedRetry}},
			active: "a", pending: "r1", online: true,
		},
		{
			name:   "commit naming another serial",
			start:  renewing,
			events: []Event{committed(2, "z", "r1")},
			want: []Effect{Refuse{Commit: true, RequestID: "r1", Code: protocol.CodeUnknownRequest,
				Message: "request r1 issued b, not z"}},
			active: "a", pending: "r1", online: true,
		},
		{
			name:   "a repeated commit is acknowledged again, not activated twice",
			start:  renewing,
			events: []Event{committed(2, "b", "r1"), committed(3, "b", "r1")},
			want:   []Effect{Activate{RequestID: "r1", Serial: "b", Previous: "a"}, Reacknowledge{RequestID: "r1", Serial: "b"}},
			active: "b", online: true,
		},
		{
			// The race of issue 10: the online event of the renewal's first session (old
			// certificate) is handled after the commit of the new one.
			name:   "late online of an older connection does not revert a commit",
			start:  State{Active: "a", Pending: &Pending{RequestID: "r1", Serial: "b", Expires: t0.Add(time.Minute)}},
			events: []Event{SessionUp{Conn: 3, Serial: "b"}, committed(3, "b", "r1"), SessionUp{Conn: 2, Serial: "a"}},
			want:   []Effect{PresenceChanged{Online: true}, Activate{RequestID: "r1", Serial: "b", Previous: "a"}},
			active: "b", online: true,
		},
		{
			name:   "late offline of an older connection keeps the device online",
			start:  renewing,
			events: []Event{SessionUp{Conn: 3, Serial: "b"}, committed(3, "b", "r1"), SessionDown{Conn: 1}},
			want:   []Effect{Activate{RequestID: "r1", Serial: "b", Previous: "a"}},
			active: "b", online: true,
		},
		{
			name:   "a superseded certificate reconnecting alone changes nothing",
			start:  State{Active: "b", Previous: "a", LastRequest: "r1", Proven: 3},
			events: []Event{SessionUp{Conn: 9, Serial: "a"}},
			want:   []Effect{PresenceChanged{Online: true}},
			active: "b", online: true,
		},
		{
			name:   "rolled back request ends it and acknowledges",
			start:  renewing,
			events: []Event{rolledBack(1, "a", "r1", "a", "b")},
			want: []Effect{EndRequest{RequestID: "r1", Serial: "b", Outcome: OutcomeRolledBack, Cause: "the agent rolled back",
				Failure: protocol.CauseUnknown, Acknowledge: true, Current: "a"}},
			active: "a", online: true,
		},
		{
			name:  "rolled back request keeps the agent's cause and detail",
			start: renewing,
			events: []Event{func() Event {
				e := rolledBack(1, "a", "r1", "a", "b")
				e.Cause, e.Detail = protocol.CauseChainVerification, "x509: unknown authority"
				return e
			}()},
			want: []Effect{EndRequest{RequestID: "r1", Serial: "b", Outcome: OutcomeRolledBack, Cause: "the agent rolled back: x509: unknown authority",
				Failure: protocol.CauseChainVerification, Acknowledge: true, Current: "a"}},
			active: "a", online: true,
		},
		{
			name:   "forged rolled back from a session presenting another serial",
			start:  renewing,
			events: []Event{rolledBack(1, "a", "r1", "old", "b")},
			want: []Effect{Refuse{Commit: true, RequestID: "r1", Code: protocol.CodeNotPresented,
				Message: "the TLS session presents serial a, not old", RetryAfter: notPresentedRetry}},
			active: "a", pending: "r1", online: true,
		},
		{
			name:   "rolled back naming a serial that is not active",
			start:  State{Active: "a", Pending: &Pending{RequestID: "r1", Serial: "b", Expires: t0.Add(time.Minute)}},
			events: []Event{rolledBack(4, "z", "r1", "z", "b")},
			want: []Effect{Refuse{Commit: true, RequestID: "r1", Code: protocol.CodeUnknownRequest,
				Message: "serial z is not the device's active certificate a"}},
			active: "a", pending: "r1", online: false,
		},
		{
			name:   "rollback after the commit, proved by the session, reactivates the previous",
			start:  renewing,
			events: []Event{committed(2, "b", "r1"), rolledBack(5, "a", "r1", "a", "b")},
			want: []Effect{
				Activate{RequestID: "r1", Serial: "b", Previous: "a"},
				Activate{RequestID: "r1", Serial: "a", Previous: "b", Rollback: true, Failed: "b"},
			},
			active: "a", online: true,
		},
		{
			name:   "rollback report of a finished request is acknowledged",
			start:  onA,
			events: []Event{rolledBack(1, "a", "r0", "a", "")},
			want:   []Effect{Reacknowledge{RequestID: "r0", Serial: "a"}},
			active: "a", online: true,
		},
		{
			name:   "rollback report of an unknown request on another certificate",
			start:  onA,
			events: []Event{rolledBack(6, "q", "r0", "q", "")},
			want: []Effect{Refuse{Commit: true, RequestID: "r0", Code: protocol.CodeUnknownRequest,
				Message: "request r0 is not in flight and q is not the active certificate"}},
			active: "a", online: true,
		},
		{
			name:   "in-flight timeout drops the pending certificate",
			start:  renewing,
			at:     t0.Add(time.Minute),
			events: []Event{Tick{}, committed(2, "b", "r1")},
			want: []Effect{
				EndRequest{RequestID: "r1", Serial: "b", Outcome: OutcomeExpired, Failure: protocol.CauseCommitTimeout,
					Cause: "no commit before the in-flight timeout 2026-12-01T12:01:00Z"},
				Refuse{Commit: true, RequestID: "r1", Code: protocol.CodeUnknownRequest, Message: "request r1 is not in flight"},
			},
			active: "a", online: true,
		},
		{
			name:   "command waits for the subscription",
			start:  onA,
			events: []Event{CommandQueued{Command: cmd}, Subscribed{Conn: 1}},
			want:   []Effect{SendCommand{Command: Command{ID: "c1", Action: "renew", Deadline: t0.Add(time.Hour), Sent: 1}}},
			active: "a", online: true,
		},
		{
			name:  "command to a subscribed session is sent at once and again on a new subscription",
			start: State{Active: "a", Sessions: map[Conn]Session{1: {Serial: "a", Subscribed: true}}},
			events: []Event{CommandQueued{Command: cmd}, SessionDown{Conn: 1}, SessionUp{Conn: 2, Serial: "a"},
				Subscribed{Conn: 2}},
			want: []Effect{
				SendCommand{Command: Command{ID: "c1", Action: "renew", Deadline: t0.Add(time.Hour), Sent: 1}},
				PresenceChanged{Online: false},
				PresenceChanged{Online: true},
				SendCommand{Command: Command{ID: "c1", Action: "renew", Deadline: t0.Add(time.Hour), Sent: 2}},
			},
			active: "a", online: true,
		},
		{
			name:   "a csr acknowledges the command",
			start:  onA,
			events: []Event{CommandQueued{Command: cmd}, CSRReceived{Conn: 1, RequestID: "r1", CommandID: "c1"}, Subscribed{Conn: 1}},
			want:   []Effect{CommandSeen{ID: "c1"}, Proceed{RequestID: "r1"}},
			active: "a", pending: "r1", online: true,
		},
		{
			name:   "command past its deadline is dropped",
			start:  onA,
			at:     t0.Add(time.Hour),
			events: []Event{CommandQueued{Command: cmd}, Tick{}, Subscribed{Conn: 1}},
			want:   []Effect{CommandSeen{ID: "c1", Expired: true}},
			active: "a", online: true,
		},
		{
			name:   "subscription of a closed session is ignored",
			start:  State{Active: "a", Command: &cmd},
			events: []Event{Subscribed{Conn: 4}},
			active: "a",
		},
		{
			name:   "health report of the active certificate is recorded",
			start:  onA,
			events: []Event{HealthReported{Conn: 1, Issuer: "CN=hub", Health: inventory.Health{ReportedSerial: "a", At: t0}}},
			want:   []Effect{RecordHealth{Health: inventory.Health{ReportedSerial: "a", At: t0}}},
			active: "a", online: true,
		},
		{
			name:   "health report of the certificate in flight is not a finding",
			start:  renewing,
			events: []Event{HealthReported{Conn: 1, Health: inventory.Health{ReportedSerial: "b"}}},
			want:   []Effect{RecordHealth{Health: inventory.Health{ReportedSerial: "b"}}},
			active: "a", pending: "r1", online: true,
		},
		{
			name:   "health report of another serial and issuer are findings",
			start:  onA,
			events: []Event{HealthReported{Conn: 1, Issuer: "CN=other", Health: inventory.Health{ReportedSerial: "z"}}},
			want: []Effect{RecordHealth{Health: inventory.Health{ReportedSerial: "z"}},
				Found{Kind: FindingUnexpectedSerial, Serial: "z", Detail: "a"},
				Found{Kind: FindingUnexpectedIssuer, Serial: "z", Detail: "CN=other"}},
			active: "a", online: true,
		},
		{
			name:  "health report naming a failed attempt records it",
			start: onA,
			events: []Event{HealthReported{Conn: 1, Health: inventory.Health{ReportedSerial: "a"},
				Failure: ReportedFailure{RequestID: "r7", Cause: protocol.CauseNetwork, Detail: "connection refused"}}},
			want: []Effect{RecordHealth{Health: inventory.Health{ReportedSerial: "a"}},
				RecordFailure{Failure: ReportedFailure{RequestID: "r7", Cause: protocol.CauseNetwork, Detail: "connection refused"}}},
			active: "a", online: true,
		},
		{
			name:  "health report without a request id or cause records no attempt",
			start: onA,
			events: []Event{HealthReported{Conn: 1, Health: inventory.Health{ReportedSerial: "a"}, Failure: ReportedFailure{Cause: protocol.CauseHookFailed}},
				HealthReported{Conn: 1, Health: inventory.Health{ReportedSerial: "a"}, Failure: ReportedFailure{RequestID: "r7"}}},
			want:   []Effect{RecordHealth{Health: inventory.Health{ReportedSerial: "a"}}, RecordHealth{Health: inventory.Health{ReportedSerial: "a"}}},
			active: "a", online: true,
		},
		{
			name:  "health report naming the request in flight ends it with the agent's cause",
			start: renewing,
			events: []Event{HealthReported{Conn: 1, Health: inventory.Health{ReportedSerial: "a"},
				Failure: ReportedFailure{RequestID: "r1", Cause: protocol.CauseTimeout, Detail: "no reply"}}},
			want: []Effect{RecordHealth{Health: inventory.Health{ReportedSerial: "a"}},
				EndRequest{RequestID: "r1", Serial: "b", Outcome: OutcomeRolledBack, Cause: "the agent reported it gave the request up: no reply", Failure: protocol.CauseTimeout}},
			active: "a", online: true,
		},
		{
			name:   "enrollment: csr on the token session, commit on the certificate session",
			events: []Event{SessionUp{Conn: 1}, CSRReceived{Conn: 1, RequestID: "e1"}, Issued{RequestID: "e1", Serial: "a"}, SessionDown{Conn: 1}, SessionUp{Conn: 2, Serial: "a"}, committed(2, "a", "e1")},
			want:   []Effect{Proceed{RequestID: "e1"}, PresenceChanged{Online: true}, Activate{RequestID: "e1", Serial: "a"}},
			active: "a", online: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := tt.at
			if at.IsZero() {
				at = t0
			}
			got, effects := run(tt.start, at, tt.events...)
			if !reflect.DeepEqual(effects, tt.want) {
				t.Errorf("effects:\n got %#v\nwant %#v", effects, tt.want)
			}
			if got.Active != tt.active {
				t.Errorf("Active = %q, want %q", got.Active, tt.active)
			}
			var pending string
			if got.Pending != nil {
				pending = got.Pending.RequestID
			}
			if pending != tt.pending {
				t.Errorf("Pending = %q, want %q", pending, tt.pending)
			}
			if got.Online() != tt.online {
				t.Errorf("Online() = %v, want %v", got.Online(), tt.online)
			}
		})
	}
}

func TestStepDoesNotChangeItsInput(t *testing.T) {
	start := renewing.clone()
	Rules{}.Step(start, SessionDown{Conn: 1}, t0)
	Rules{}.Step(start, committed(2, "b", "r1"), t0)
	if !reflect.DeepEqual(start, renewing) {
		t.Errorf("Step changed its input: %#v", start)
	}
}

// TestPresenceOrderDoesNotMatter checks every interleaving of a renewal's session events
// with its commit: whatever order the broker's events are applied in, the device ends on
// the committed certificate, online, with exactly one activation.
func TestPresenceOrderDoesNotMatter(t *testing.T) {
	// Connection 1 presents a (old), 2 presents b (new); 1 closes. The commit arrives on 2.
	events := []Event{SessionUp{Conn: 1, Serial: "a"}, SessionUp{Conn: 2, Serial: "b"}, SessionDown{Conn: 1}}
	start := State{Active: "a", Pending: &Pending{RequestID: "r1", Serial: "b", Expires: t0.Add(time.Minute)}}
	perms := permutations(len(events))
	for _, perm := range perms {
		for at := 0; at <= len(events); at++ {
			var seq []Event
			for i, p := range perm {
				if i == at {
					seq = append(seq, committed(2, "b", "r1"))
				}
				seq = append(seq, events[p])
			}
			if at == len(events) {
				seq = append(seq, committed(2, "b", "r1"))
			}
			// SessionDown before its SessionUp cannot happen on one connection's ordered
			// path; such orders leave a session that never closes, which is fine to skip.
			if before(seq, SessionDown{Conn: 1}, SessionUp{Conn: 1, Serial: "a"}) {
				continue
			}
			got, effects := run(start, t0, seq...)
			activations := 0
			for _, e := range effects {
				if _, ok := e.(Activate); ok {
					activations++
				}
			}
			if got.Active != "b" || !got.Online() || activations != 1 {
				t.Errorf("order %v: Active %q, Online %v, %d activations; want b, true, 1", seq, got.Active, got.Online(), activations)
			}
		}
	}
}

func before(seq []Event, a, b Event) bool {
	for _, e := range seq {
		switch e {
		case a:
			return true
		case b:
			return false
		}
	}
	return false
}

func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

// TestIssuersDuringRotation: with two intermediates in force (an intermediate rotation),
// a device reporting either is no finding; any other issuer still is.
func TestIssuersDuringRotation(t *testing.T) {
	r := Rules{Issuer: "CN=old", Issuers: func(i string) bool { return i == "CN=old" || i == "CN=new" }}
	for issuer, want := range map[string]bool{"CN=old": false, "CN=new": false, "CN=other": true, "": false} {
		if got := r.unexpectedIssuer(issuer); got != want {
			t.Errorf("unexpectedIssuer(%q) = %v, want %v", issuer, got, want)
		}
	}
	if !(Rules{Issuer: "CN=old"}).unexpectedIssuer("CN=new") {
		t.Error("without Issuers, an issuer other than Issuer is not a finding")
	}
}
