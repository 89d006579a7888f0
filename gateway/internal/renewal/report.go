package renewal

import (
	"log/slog"
	"time"
)

// Report describes one reconcile pass, for logs and the CLI.
type Report struct {
	// At is the pass's time.
	At time.Time `json:"at"`
	// Devices is the number of devices with an active certificate the scheduler looks after
	// (the pass itself reads only those due or touched, see Reconcile).
	Devices int `json:"devices"`
	// Published is the number of renewal windows published because they changed.
	Published int `json:"published"`
	// Renewed is the number of devices that had been due, commanded or failing and now hold
	// a new certificate.
	Renewed int `json:"renewed"`
	// Due is the number of devices that needed a command at the pass's time: those
	// commanded, those queued offline and those held back by the rate or the cap.
	Due int `json:"due"`
	// Commanded is the number of commands stored and handed to the Commander.
	Commanded int `json:"commanded"`
	// QueuedOffline is the number of due devices waiting to reconnect.
	QueuedOffline int `json:"queued_offline"`
	// Held is the number of due, online devices left for a later pass by the rate limit or
	// the in-flight cap.
	Held int `json:"held"`
	// Waiting is the number of due or failing devices backing off after a failure.
	Waiting int `json:"waiting"`
	// InFlight is the number of devices commanded and not yet committed or failed.
	InFlight int `json:"in_flight"`
	// Failed is the number of failures recorded (missed deadlines, rollbacks, refusals).
	Failed int `json:"failed"`
	// Failing is the number of devices in state "failing", across the fleet.
	Failing int `json:"failing"`
	// Reminders is the number of reminders sent for devices without an agent.
	Reminders int `json:"reminders"`
	// Campaigns is the number of campaigns still running.
	Campaigns int `json:"campaigns"`
	// NextWake is when the next pass has work to do (zero: nothing scheduled; Run still
	// passes every Interval).
	NextWake time.Time `json:"next_wake,omitzero"`
}

// busy reports whether the pass did anything worth an info log line.
func (r Report) busy() bool {
	return r.Published+r.Renewed+r.Commanded+r.Failed+r.Reminders > 0
}

// LogValue makes a Report log as a group of its counts.
func (r Report) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.Int("devices", r.Devices), slog.Int("due", r.Due), slog.Int("commanded", r.Commanded),
		slog.Int("queued_offline", r.QueuedOffline), slog.Int("held", r.Held), slog.Int("waiting", r.Waiting),
		slog.Int("in_flight", r.InFlight), slog.Int("failed", r.Failed), slog.Int("failing", r.Failing),
		slog.Int("renewed", r.Renewed), slog.Int("published", r.Published), slog.Int("reminders", r.Reminders),
		slog.Int("campaigns", r.Campaigns),
	}
	if !r.NextWake.IsZero() {
		attrs = append(attrs, slog.Time("next_wake", r.NextWake))
	}
	return slog.GroupValue(attrs...)
}
