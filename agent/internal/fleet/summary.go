package fleet

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/atomicfile"
)

// Phases of a fleet, in Summary.Phase.
const (
	PhaseStarting = "starting" // devices are enrolling and making their first connection
	PhaseHolding  = "holding"  // every device was started: the fleet is ready
	PhaseStopped  = "stopped"  // Run returned; the figures are final
)

// Summary is what a fleet did, as of its At. Its JSON form is hearth-fleet's --json output
// and --state file; field names are a format that scripts read: add, never rename.
type Summary struct {
	Phase string    `json:"phase"`
	At    time.Time `json:"at"`
	// Elapsed is the time since Run started; ReadyAfter when the fleet became ready
	// (PhaseHolding), 0 before.
	Elapsed    Seconds `json:"elapsed_s"`
	ReadyAfter Seconds `json:"ready_after_s,omitempty"`

	Devices int `json:"devices"`
	// Enrolled counts the devices that hold a certificate: enrolled in this run, or Reused
	// from Config.KeysDir.
	Enrolled int `json:"enrolled"`
	Reused   int `json:"reused,omitempty"`
	// EnrollFailed counts the devices that could not enroll, by cause in EnrollFailures.
	EnrollFailed   int            `json:"enroll_failed"`
	EnrollFailures map[string]int `json:"enroll_failures,omitempty"`

	// Online counts the devices with a live session now; Renewing those in a renewal.
	Online   int `json:"online"`
	Renewing int `json:"renewing"`
	// Commands counts the hub commands the devices received.
	Commands int `json:"commands"`
	// Committed counts the renewals acknowledged by the hub (enrollments not counted), by
	// DevicesRenewed distinct devices.
	Committed      int `json:"renewals_committed"`
	DevicesRenewed int `json:"devices_renewed"`
	// AllRenewed reports that every enrolled device committed at least one renewal.
	AllRenewed bool `json:"all_renewed"`
	// Failed counts the renewals that failed or rolled back, by cause in Failures: the
	// hub's protocol error code when it sent one ("busy", "rate_limited", …), else what the
	// device saw ("no_reply", "connection_lost", …). FailureExamples holds the first ones.
	Failed          int            `json:"renewals_failed"`
	Failures        map[string]int `json:"failures,omitempty"`
	FailureExamples []string       `json:"failure_examples,omitempty"`
	// Disconnects counts sessions lost; ConnectFailures failed connection attempts by cause.
	Disconnects     int            `json:"disconnects"`
	ConnectFailures map[string]int `json:"connect_failures,omitempty"`

	// Latency is the time from the start of a renewal to its acknowledgment (the device's
	// key and CSR, the hub's issuance, the reconnection with the new certificate, the
	// commit), over the committed renewals.
	Latency Latency `json:"latency_s"`
	// FirstRenewal is when the first renewal started and LastCommit when the last one was
	// acknowledged; RenewalsPerSecond is Committed over that span.
	FirstRenewal      time.Time `json:"first_renewal,omitzero"`
	LastCommit        time.Time `json:"last_commit,omitzero"`
	RenewalsPerSecond float64   `json:"renewals_per_second"`

	// DeviceList is every device's view, in device order.
	DeviceList []DeviceState `json:"device_list"`
}

// Latency is a distribution of durations, in seconds.
type Latency struct {
	P50 Seconds `json:"p50"`
	P99 Seconds `json:"p99"`
	Max Seconds `json:"max"`
}

// DeviceState is one simulated device as it sees itself.
type DeviceState struct {
	ID string `json:"id"`
	// Serial is the certificate the device holds and presents (lowercase hex), "" if it never
	// enrolled.
	Serial   string `json:"serial,omitempty"`
	Online   bool   `json:"online"`
	Renewals int    `json:"renewals"`
	Failures int    `json:"failures,omitempty"`
	// Error is the last failure: why it could not enroll, or why its last renewal failed.
	Error string `json:"error,omitempty"`
	// LastAttempt is when the device's last renewal started (its key and CSR), and
	// LastCommit when its last commit was acknowledged: a test that crashes the hub tells
	// from them which devices are renewing again since the restart.
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastCommit  time.Time `json:"last_commit,omitzero"`
}

// Seconds is a duration that encodes in JSON as seconds with millisecond precision.
type Seconds time.Duration

// MarshalJSON encodes s as a number of seconds.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%.3f", time.Duration(s).Seconds())), nil
}

// UnmarshalJSON decodes a number of seconds.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*s = Seconds(f * float64(time.Second))
	return nil
}

// String formats s for people, rounded to the millisecond.
func (s Seconds) String() string { return time.Duration(s).Round(time.Millisecond).String() }

// latency returns the distribution of samples (sorted in place).
func latency(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	slices.Sort(samples)
	n := len(samples)
	return Latency{P50: Seconds(samples[n/2]), P99: Seconds(samples[min(n-1, n*99/100)]), Max: Seconds(samples[n-1])}
}

// ProgressLine is the one-line form of s printed at each progress report.
func (s Summary) ProgressLine() string {
	line := fmt.Sprintf("hearth-fleet: %s %s: enrolled %d/%d, online %d, renewing %d, committed %d (%d devices), failed %d",
		time.Duration(s.Elapsed).Round(time.Second), s.Phase, s.Enrolled, s.Devices, s.Online, s.Renewing, s.Committed, s.DevicesRenewed, s.Failed)
	if s.EnrollFailed > 0 {
		line += fmt.Sprintf(", enrollment failed %d", s.EnrollFailed)
	}
	return line
}

// WriteText writes s for people: the counts, the failures by cause, the latency.
func (s Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "devices:     %d, %d enrolled", s.Devices, s.Enrolled)
	if s.Reused > 0 {
		fmt.Fprintf(&b, " (%d reused)", s.Reused)
	}
	fmt.Fprintf(&b, ", %d failed to enroll%s\n", s.EnrollFailed, causes(s.EnrollFailures))
	fmt.Fprintf(&b, "renewals:    %d committed by %d devices, %d failed%s; %d hub commands received\n",
		s.Committed, s.DevicesRenewed, s.Failed, causes(s.Failures), s.Commands)
	if s.Committed > 0 {
		fmt.Fprintf(&b, "latency:     p50 %s, p99 %s, max %s (start of a renewal to the hub's ack)\n", s.Latency.P50, s.Latency.P99, s.Latency.Max)
		fmt.Fprintf(&b, "rate:        %.1f renewals/s over %s (first renewal started to last commit)\n",
			s.RenewalsPerSecond, s.LastCommit.Sub(s.FirstRenewal).Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "connections: %d lost, %d attempts failed%s\n", s.Disconnects, sum(s.ConnectFailures), causes(s.ConnectFailures))
	for _, e := range s.FailureExamples {
		fmt.Fprintf(&b, "  failure: %s\n", e)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// causes formats counts by cause as " (busy 2, no_reply 1)", or "" when there are none.
func causes(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// writeState replaces path with s as JSON, atomically (a reader never sees half a file) but
// unsynced: the file is informative.
func writeState(path string, s Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err == nil {
		err = atomicfile.WriteFileNoSync(filepath.Dir(path), filepath.Base(path), append(b, '\n'))
	}
	if err != nil {
		return fmt.Errorf("fleet: state: %w", err)
	}
	return nil
}
