package inventory

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/hearth-pki/hearth/protocol"
)

// Device states.
const (
	StateEnrolling   = "enrolling"   // created by an enrollment, no certificate proved yet
	StateActive      = "active"      // has proved a certificate (Activate)
	StateOffline     = "offline"     // set by callers that track long absences
	StateQuarantined = "quarantined" // only enrollment topics until re-enrolled
	StateRemoved     = "removed"     // for callers that keep a tombstone instead of RemoveDevice
)

// Device paths and enrollment mechanisms.
const (
	PathDirect      = "direct"  // the device runs an agent and talks to the hub itself
	PathGateway     = "gateway" // the device is reached through another device (Via)
	MechanismAgent  = "agent"   // certificates installed by hearth-agent
	MechanismManual = "manual"  // certificates installed by a person
)

// Renewal states of RenewalStatus.State.
const (
	RenewalIdle      = "idle"      // nothing to do until the window opens
	RenewalDue       = "due"       // inside the window, waiting for the agent
	RenewalCommanded = "commanded" // a renew command was pushed
	RenewalFailing   = "failing"   // the last attempts failed; backing off
)

// Device is one managed device. Descriptive fields are written by UpsertDevice; State by
// SetState (and Activate: enrolling → active); Online and LastSeen by SetOnline; Health by
// UpdateHealth; Renewal by SetRenewal.
type Device struct {
	ID       string
	Name     string
	Family   string
	Model    string
	Vendor   string
	Firmware string
	// Class is the device's policy class, chosen under the policy whose policy.ClassHash
	// is ClassHash ("" when unknown): written with the device's family and tags (issuance,
	// import) and rewritten by Reclassify when another policy is put in force.
	Class     string
	ClassHash string
	Tags      []string
	Path      string // PathDirect, PathGateway or ""
	Via       string // the device this one is reached through, for PathGateway
	Mechanism string // MechanismAgent, MechanismManual or ""
	CreatedAt time.Time
	LastSeen  time.Time
	State     string // one of the State* constants
	Online    bool
	Health    Health
	Renewal   RenewalStatus
	Command   Command // the renew command the device has not acted on; ID "" for none
}

// Health is what the device's agent last reported about its certificate.
type Health struct {
	ReportedSerial   string
	ReportedNotAfter time.Time
	ChainOK          bool
	ClockSkew        time.Duration // device clock minus hub clock
	AgentVersion     string
	LastError        string
	At               time.Time // when the report arrived
	// Manufacturer, Model and Arch describe the device as its agent reports them (its
	// operator's --manufacturer and --model, the agent's CPU architecture).
	Manufacturer, Model, Arch string
}

// RenewalStatus is the renewal orchestrator's bookkeeping for a device.
type RenewalStatus struct {
	State         string // one of the Renewal* constants; "" is stored as RenewalIdle
	Failures      int    // consecutive failed attempts
	NextAttemptAt time.Time
	LastCause     string
	WindowStart   time.Time
	WindowEnd     time.Time
	// Again is a renewal asked for while another was in flight: it follows once that one
	// ends.
	Again bool
}

var (
	deviceStates  = []string{StateEnrolling, StateActive, StateOffline, StateQuarantined, StateRemoved}
	renewalStates = []string{RenewalIdle, RenewalDue, RenewalCommanded, RenewalFailing}
)

func checkDevice(d Device) error {
	if d.ID == "" {
		return invalidf("device id is empty")
	}
	if d.State != "" && !slices.Contains(deviceStates, d.State) {
		return invalidf("device %q: unknown state %q", d.ID, d.State)
	}
	if !slices.Contains([]string{"", PathDirect, PathGateway}, d.Path) {
		return invalidf("device %q: unknown path %q", d.ID, d.Path)
	}
	if !slices.Contains([]string{"", MechanismAgent, MechanismManual}, d.Mechanism) {
		return invalidf("device %q: unknown mechanism %q", d.ID, d.Mechanism)
	}
	return checkText(append([]string{d.ID, d.Name, d.Family, d.Model, d.Vendor, d.Firmware, d.Class, d.Via}, d.Tags...)...)
}

// UpsertDevice creates the device or updates its descriptive fields (Name, Family, Model,
// Vendor, Firmware, Class, Tags, Path, Via, Mechanism). On update only the fields that are
// set replace the stored ones (a nil Tags keeps the tags, an empty non-nil Tags clears them;
// ClassHash is written with Class, even empty),
// and State, Online, LastSeen, CreatedAt, Health and Renewal are never touched. On create
// every field is taken from d; an empty State becomes StateEnrolling.
func (s *Store) UpsertDevice(ctx context.Context, d Device) error {
	if err := checkDevice(d); err != nil {
		return err
	}
	err := s.write(ctx, func(tx *gorm.DB) error { return s.upsertDevice(ctx, tx, d, d.CreatedAt) })
	if err != nil {
		return fmt.Errorf("upsert device %q: %w", d.ID, err)
	}
	return nil
}

// upsertDevice is UpsertDevice inside tx, in one statement (upsertDeviceSQL); created is
// CreatedAt for a new device whose CreatedAt is zero.
func (s *Store) upsertDevice(ctx context.Context, tx *gorm.DB, d Device, created time.Time) error {
	tags, err := json.Marshal(nonNil(d.Tags))
	if err != nil {
		return err
	}
	if d.State == "" {
		d.State = StateEnrolling
	}
	if d.CreatedAt.IsZero() {
		d.CreatedAt = created
	}
	var r deviceRow
	r.setHealth(d.Health)
	r.setRenewal(d.Renewal)
	return s.exec(ctx, tx, s.st.upsertDevice,
		d.ID, d.Name, d.Family, d.Model, d.Vendor, d.Firmware, d.Class, string(tags), d.Path, d.Via,
		d.Mechanism, unix(d.CreatedAt), unix(d.LastSeen), d.State, d.Online,
		r.HealthSerial, r.HealthNotAfter, r.HealthChainOK, r.HealthClockSkewNS, r.HealthAgentVersion,
		r.HealthLastError, r.HealthAt, r.RenewalState, r.RenewalFailures, r.RenewalNextAttempt,
		r.RenewalLastCause, r.RenewalWindowStart, r.RenewalWindowEnd, d.Tags != nil, d.ClassHash)
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

func (r *deviceRow) setHealth(h Health) {
	r.HealthSerial = h.ReportedSerial
	r.HealthNotAfter = unix(h.ReportedNotAfter)
	r.HealthChainOK = h.ChainOK
	r.HealthClockSkewNS = int64(h.ClockSkew)
	r.HealthAgentVersion = h.AgentVersion
	r.HealthLastError = h.LastError
	r.HealthAt = unix(h.At)
	r.HealthManufacturer, r.HealthModel, r.HealthArch = h.Manufacturer, h.Model, h.Arch
}

func (r *deviceRow) setRenewal(st RenewalStatus) {
	if st.State == "" {
		st.State = RenewalIdle
	}
	r.RenewalState = st.State
	r.RenewalFailures = st.Failures
	r.RenewalNextAttempt = unix(st.NextAttemptAt)
	r.RenewalLastCause = st.LastCause
	r.RenewalWindowStart = unix(st.WindowStart)
	r.RenewalWindowEnd = unix(st.WindowEnd)
	r.RenewalAgain = st.Again
}

// Device returns the device with the given id, or ErrNotFound.
func (s *Store) Device(ctx context.Context, id string) (Device, error) {
	var row deviceRow
	found, err := readOne(ctx, s.rd.device, []any{id}, row.fields())
	if err != nil {
		return Device{}, fmt.Errorf("device %q: %w", id, err)
	}
	if !found {
		return Device{}, fmt.Errorf("device %q: %w", id, ErrNotFound)
	}
	return row.device()
}

// Subject is what the renewal policy matches a device on.
type Subject struct {
	Family string
	Tags   []string
}

// Subject returns the device's family and tags, or ErrNotFound: the two columns the policy
// needs for a window, read without the rest of the row (every commit publishes a window).
func (s *Store) Subject(ctx context.Context, id string) (Subject, error) {
	var row deviceRow
	found, err := readOne(ctx, s.rd.subject, []any{id}, []any{&row.Family, &row.Tags})
	if err != nil {
		return Subject{}, fmt.Errorf("device %q: %w", id, err)
	}
	if !found {
		return Subject{}, fmt.Errorf("device %q: %w", id, ErrNotFound)
	}
	out := Subject{Family: row.Family}
	if row.Tags != "" && row.Tags != "[]" {
		if err := json.Unmarshal([]byte(row.Tags), &out.Tags); err != nil {
			return Subject{}, fmt.Errorf("device %q: decode tags: %w", id, err)
		}
	}
	return out, nil
}

// Devices returns every device, sorted by id.
func (s *Store) Devices(ctx context.Context) ([]Device, error) {
	var rows []deviceRow
	if err := s.read(ctx).Order("id").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	out := make([]Device, 0, len(rows))
	for _, r := range rows {
		d, err := r.device()
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// CountDevices returns the number of devices.
func (s *Store) CountDevices(ctx context.Context) (int, error) {
	var n int64
	if err := s.read(ctx).Model(&deviceRow{}).Count(&n).Error; err != nil {
		return 0, fmt.Errorf("count devices: %w", err)
	}
	return int(n), nil
}

// updateDevice applies set to device id, or returns ErrNotFound.
func (s *Store) updateDevice(ctx context.Context, id, what string, set map[string]any) error {
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&deviceRow{}).Where("id = ?", id).Updates(set)
		if res.Error == nil && res.RowsAffected == 0 {
			return ErrNotFound
		}
		return res.Error
	})
	if err != nil {
		return fmt.Errorf("%s of device %q: %w", what, id, err)
	}
	return nil
}

// UpdateHealth replaces the device's health fields with h.
func (s *Store) UpdateHealth(ctx context.Context, id string, h Health) error {
	return s.updateHealth(ctx, id, h, false)
}

// RecordHealth is UpdateHealth for a report that arrived over a live session: in the same
// write the device is online and last seen at h.At (one write per report instead of
// UpdateHealth and SetOnline).
func (s *Store) RecordHealth(ctx context.Context, id string, h Health) error {
	return s.updateHealth(ctx, id, h, true)
}

func (s *Store) updateHealth(ctx context.Context, id string, h Health, seen bool) error {
	if err := checkText(h.ReportedSerial, h.AgentVersion, h.LastError, h.Manufacturer, h.Model, h.Arch); err != nil {
		return err
	}
	var r deviceRow
	r.setHealth(h)
	st, args := s.st.setHealth, []any{r.HealthSerial, r.HealthNotAfter, r.HealthChainOK, r.HealthClockSkewNS,
		r.HealthAgentVersion, r.HealthLastError, r.HealthAt, r.HealthManufacturer, r.HealthModel, r.HealthArch}
	if seen {
		st, args = s.st.setHealthSeen, append(args, true, unix(h.At))
	}
	return s.setDevice(ctx, id, "update health", st, append(args, id)...)
}

// setDevice is updateDevice for the state machine's frequent writes: a prepared UPDATE of
// one device (st, whose last parameter is the device id), without gorm building and SQLite
// compiling the statement at every write (issue 11). An unknown device is ErrNotFound.
func (s *Store) setDevice(ctx context.Context, id, what string, st *sql.Stmt, args ...any) error {
	err := s.write(ctx, func(tx *gorm.DB) error {
		n, err := s.execN(ctx, tx, st, args...)
		if err == nil && n == 0 {
			return ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("%s of device %q: %w", what, id, err)
	}
	return nil
}

// SetRenewal replaces the device's renewal fields with st.
func (s *Store) SetRenewal(ctx context.Context, id string, st RenewalStatus) error {
	if st.State != "" && !slices.Contains(renewalStates, st.State) {
		return invalidf("device %q: unknown renewal state %q", id, st.State)
	}
	if err := checkText(st.LastCause); err != nil {
		return err
	}
	return s.updateDevice(ctx, id, "set renewal", renewalColumns(st))
}

// SetRenewals replaces the renewal fields of each device in sts, as SetRenewal does, in one
// transaction per MaxBatch devices: what one pass of the renewal scheduler changed, with a
// commit per batch (a first pass over a large inventory must not hold the writer for one
// transaction of every device). A device that does not exist (removed meanwhile) is skipped
// and listed in missing. On an error, the batches before the failed one are written, the
// others not; each device's change is whole either way.
func (s *Store) SetRenewals(ctx context.Context, sts map[string]RenewalStatus) (missing []string, err error) {
	for id, st := range sts {
		if st.State != "" && !slices.Contains(renewalStates, st.State) {
			return nil, invalidf("device %q: unknown renewal state %q", id, st.State)
		}
		if err := checkText(st.LastCause); err != nil {
			return nil, err
		}
	}
	for chunk := range slices.Chunk(slices.Sorted(maps.Keys(sts)), MaxBatch) {
		var gone []string
		err := s.write(ctx, func(tx *gorm.DB) error {
			gone = nil
			for _, id := range chunk {
				n, err := s.execN(ctx, tx, s.st.setRenewal, append(renewalArgs(sts[id]), id)...)
				if err != nil {
					return fmt.Errorf("device %q: %w", id, err)
				}
				if n == 0 {
					gone = append(gone, id)
				}
			}
			return nil
		})
		if err != nil {
			return missing, fmt.Errorf("set renewal of %d devices: %w", len(sts), err)
		}
		missing = append(missing, gone...)
	}
	return missing, nil
}

// renewalArgs are the values of renewalColumns, in the order of setRenewalSQL (and of the
// start of recordCommandSQL).
func renewalArgs(st RenewalStatus) []any {
	var r deviceRow
	r.setRenewal(st)
	return []any{r.RenewalState, r.RenewalFailures, r.RenewalNextAttempt, r.RenewalLastCause,
		r.RenewalWindowStart, r.RenewalWindowEnd, r.RenewalAgain}
}

// renewalColumns are the device columns SetRenewal writes for st.
func renewalColumns(st RenewalStatus) map[string]any {
	var r deviceRow
	r.setRenewal(st)
	return map[string]any{
		"renewal_state": r.RenewalState, "renewal_failures": r.RenewalFailures,
		"renewal_next_attempt_at": r.RenewalNextAttempt, "renewal_last_cause": r.RenewalLastCause,
		"renewal_window_start": r.RenewalWindowStart, "renewal_window_end": r.RenewalWindowEnd,
		"renewal_again": r.RenewalAgain,
	}
}

// SetState changes the device's state and, when it changes, appends a protocol.EventDeviceState
// event (data: from, to) in the same transaction.
func (s *Store) SetState(ctx context.Context, id, state string, now time.Time) error {
	if !slices.Contains(deviceStates, state) {
		return invalidf("device %q: unknown state %q", id, state)
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		var rows []deviceRow
		if err := tx.Where("id = ?", id).Limit(1).Find(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 {
			return ErrNotFound
		}
		if rows[0].State == state {
			return nil
		}
		if err := tx.Model(&deviceRow{}).Where("id = ?", id).Update("state", state).Error; err != nil {
			return err
		}
		_, err := s.appendEvent(ctx, tx, Event{Time: now, Kind: protocol.EventDeviceState, DeviceID: id, Actor: actorFrom(ctx),
			Data: map[string]string{"from": rows[0].State, "to": state}})
		return err
	})
	if err != nil {
		return fmt.Errorf("set state of device %q: %w", id, err)
	}
	return nil
}

// RemoveDevice deletes the device and its enrollment tokens, and appends an
// protocol.EventDeviceRemoved event, in one transaction. Its certificates, attempts and events stay
// for the audit; revoking its certificates is the caller's decision (RevokeDevice).
func (s *Store) RemoveDevice(ctx context.Context, id string, now time.Time) error {
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Where("id = ?", id).Delete(&deviceRow{})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrNotFound
		}
		if err := tx.Where("device_id = ?", id).Delete(&tokenRow{}).Error; err != nil {
			return err
		}
		_, err := s.appendEvent(ctx, tx, Event{Time: now, Kind: protocol.EventDeviceRemoved, DeviceID: id, Actor: actorFrom(ctx)})
		return err
	})
	if err != nil {
		return fmt.Errorf("remove device %q: %w", id, err)
	}
	return nil
}
