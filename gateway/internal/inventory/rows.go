package inventory

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/hearth-pki/hearth/protocol"
)

// The row structs below mirror the tables of migrations. Their Go field names avoid
// CreatedAt/UpdatedAt on purpose: gorm fills fields with those names with the current time,
// and the store wants the caller's time.

type deviceRow struct {
	ID                 string `gorm:"column:id;primaryKey"`
	Name               string `gorm:"column:name"`
	Family             string `gorm:"column:family"`
	Model              string `gorm:"column:model"`
	Vendor             string `gorm:"column:vendor"`
	Firmware           string `gorm:"column:firmware"`
	Class              string `gorm:"column:class"`
	ClassHash          string `gorm:"column:class_hash"`
	Tags               string `gorm:"column:tags"`
	Path               string `gorm:"column:path"`
	Via                string `gorm:"column:via"`
	Mechanism          string `gorm:"column:mechanism"`
	Created            int64  `gorm:"column:created_at"`
	LastSeen           int64  `gorm:"column:last_seen"`
	State              string `gorm:"column:state"`
	Online             bool   `gorm:"column:online"`
	HealthSerial       string `gorm:"column:health_serial"`
	HealthNotAfter     int64  `gorm:"column:health_not_after"`
	HealthChainOK      bool   `gorm:"column:health_chain_ok"`
	HealthClockSkewNS  int64  `gorm:"column:health_clock_skew_ns"`
	HealthAgentVersion string `gorm:"column:health_agent_version"`
	HealthLastError    string `gorm:"column:health_last_error"`
	HealthAt           int64  `gorm:"column:health_at"`
	HealthManufacturer string `gorm:"column:health_manufacturer"`
	HealthModel        string `gorm:"column:health_model"`
	HealthArch         string `gorm:"column:health_arch"`
	RenewalState       string `gorm:"column:renewal_state"`
	RenewalFailures    int    `gorm:"column:renewal_failures"`
	RenewalNextAttempt int64  `gorm:"column:renewal_next_attempt_at"`
	RenewalLastCause   string `gorm:"column:renewal_last_cause"`
	RenewalWindowStart int64  `gorm:"column:renewal_window_start"`
	RenewalWindowEnd   int64  `gorm:"column:renewal_window_end"`
	RenewalAgain       bool   `gorm:"column:renewal_again"`
	CommandID          string `gorm:"column:command_id"`
	CommandAction      string `gorm:"column:command_action"`
	CommandReason      string `gorm:"column:command_reason"`
	CommandDeadline    int64  `gorm:"column:command_deadline"`
	Epoch              int64  `gorm:"column:epoch"`
}

func (deviceRow) TableName() string { return "devices" }

type certRow struct {
	Serial       string `gorm:"column:serial;primaryKey"`
	DeviceID     string `gorm:"column:device_id"`
	NotBefore    int64  `gorm:"column:not_before"`
	NotAfter     int64  `gorm:"column:not_after"`
	Issuer       string `gorm:"column:issuer"`
	KeyAlgorithm string `gorm:"column:key_algorithm"`
	Fingerprint  string `gorm:"column:fingerprint"`
	Status       string `gorm:"column:status"`
	PEM          string `gorm:"column:pem"`
	RequestID    string `gorm:"column:request_id"`
	Replaces     string `gorm:"column:replaces"`
	Created      int64  `gorm:"column:created_at"`
	Activated    int64  `gorm:"column:activated_at"`
	Revoked      int64  `gorm:"column:revoked_at"`
	RevokeReason string `gorm:"column:revoke_reason"`
	RevokeCode   int    `gorm:"column:revoke_code"`
	Superseded   int64  `gorm:"column:superseded_at"`
}

func (certRow) TableName() string { return "certificates" }

type attemptRow struct {
	DeviceID  string `gorm:"column:device_id;primaryKey"`
	RequestID string `gorm:"column:request_id;primaryKey"`
	Reason    string `gorm:"column:reason"`
	Serial    string `gorm:"column:serial"`
	Started   int64  `gorm:"column:started_at"`
	Finished  int64  `gorm:"column:finished_at"`
	Outcome   string `gorm:"column:outcome"`
	ErrorCode string `gorm:"column:error_code"`
	LatencyNS int64  `gorm:"column:latency_ns"`
	Cause     string `gorm:"column:cause"`
	Detail    string `gorm:"column:detail"`
}

func (attemptRow) TableName() string { return "attempts" }

type tokenRow struct {
	Hash     string `gorm:"column:hash;primaryKey"`
	DeviceID string `gorm:"column:device_id"`
	Name     string `gorm:"column:name"`
	Family   string `gorm:"column:family"`
	Created  int64  `gorm:"column:created_at"`
	Expires  int64  `gorm:"column:expires_at"`
	Used     int64  `gorm:"column:used_at"`
}

func (tokenRow) TableName() string { return "tokens" }

type eventRow struct {
	Seq      int64  `gorm:"column:seq;primaryKey;autoIncrement:false"`
	Time     int64  `gorm:"column:time"`
	Kind     string `gorm:"column:kind"`
	DeviceID string `gorm:"column:device_id"`
	Actor    string `gorm:"column:actor"`
	Message  string `gorm:"column:message"`
	Data     string `gorm:"column:data"`
	Hash     string `gorm:"column:hash"`
	PrevHash string `gorm:"column:prev_hash"`
}

func (eventRow) TableName() string { return "events" }

type settingRow struct {
	Key   string `gorm:"column:key;primaryKey"`
	Value string `gorm:"column:value"`
}

func (settingRow) TableName() string { return "settings" }

func (r deviceRow) device() (Device, error) {
	d := Device{
		ID: r.ID, Name: r.Name, Family: r.Family, Model: r.Model, Vendor: r.Vendor,
		Firmware: r.Firmware, Class: r.Class, ClassHash: r.ClassHash, Path: r.Path, Via: r.Via, Mechanism: r.Mechanism,
		CreatedAt: fromUnix(r.Created), LastSeen: fromUnix(r.LastSeen),
		State: r.State, Online: r.Online,
		Health: Health{
			ReportedSerial:   r.HealthSerial,
			ReportedNotAfter: fromUnix(r.HealthNotAfter),
			ChainOK:          r.HealthChainOK,
			ClockSkew:        time.Duration(r.HealthClockSkewNS),
			AgentVersion:     r.HealthAgentVersion,
			LastError:        r.HealthLastError,
			At:               fromUnix(r.HealthAt),
			Manufacturer:     r.HealthManufacturer,
			Model:            r.HealthModel,
			Arch:             r.HealthArch,
		},
		Renewal: RenewalStatus{
			State:         r.RenewalState,
			Failures:      r.RenewalFailures,
			NextAttemptAt: fromUnix(r.RenewalNextAttempt),
			LastCause:     r.RenewalLastCause,
			WindowStart:   fromUnix(r.RenewalWindowStart),
			WindowEnd:     fromUnix(r.RenewalWindowEnd),
			Again:         r.RenewalAgain,
		},
		Command: Command{ID: r.CommandID, Action: r.CommandAction, Reason: r.CommandReason,
			Deadline: fromUnix(r.CommandDeadline)},
	}
	if r.Tags != "" && r.Tags != "[]" {
		if err := json.Unmarshal([]byte(r.Tags), &d.Tags); err != nil {
			return Device{}, fmt.Errorf("device %q: decode tags: %w", r.ID, err)
		}
	}
	return d, nil
}

func (r certRow) certificate() Certificate {
	return Certificate{
		Serial: r.Serial, DeviceID: r.DeviceID,
		NotBefore: fromUnix(r.NotBefore), NotAfter: fromUnix(r.NotAfter),
		Issuer: r.Issuer, KeyAlgorithm: protocol.KeyAlgorithm(r.KeyAlgorithm), Fingerprint: r.Fingerprint,
		Status: Status(r.Status), PEM: r.PEM, RequestID: r.RequestID, Replaces: r.Replaces,
		CreatedAt: fromUnix(r.Created), ActivatedAt: fromUnix(r.Activated),
		RevokedAt: fromUnix(r.Revoked), RevokeReason: r.RevokeReason,
		RevokeCode: r.RevokeCode, SupersededAt: fromUnix(r.Superseded),
	}
}

func certRowOf(c Certificate) certRow {
	return certRow{
		Serial: c.Serial, DeviceID: c.DeviceID,
		NotBefore: unix(c.NotBefore), NotAfter: unix(c.NotAfter),
		Issuer: c.Issuer, KeyAlgorithm: string(c.KeyAlgorithm), Fingerprint: c.Fingerprint,
		Status: string(c.Status), PEM: c.PEM, RequestID: c.RequestID, Replaces: c.Replaces,
		Created: unix(c.CreatedAt), Activated: unix(c.ActivatedAt),
		Revoked: unix(c.RevokedAt), RevokeReason: c.RevokeReason,
		RevokeCode: c.RevokeCode, Superseded: unix(c.SupersededAt),
	}
}

func (r attemptRow) attempt() Attempt {
	return Attempt{
		RequestID: r.RequestID, DeviceID: r.DeviceID, Reason: r.Reason, Serial: r.Serial,
		StartedAt: fromUnix(r.Started), FinishedAt: fromUnix(r.Finished),
		Outcome: r.Outcome, ErrorCode: r.ErrorCode, Latency: time.Duration(r.LatencyNS),
		Cause: protocol.Cause(r.Cause), Detail: r.Detail,
	}
}

func attemptRowOf(a Attempt) attemptRow {
	return attemptRow{
		DeviceID: a.DeviceID, RequestID: a.RequestID, Reason: a.Reason, Serial: a.Serial,
		Started: unix(a.StartedAt), Finished: unix(a.FinishedAt),
		Outcome: a.Outcome, ErrorCode: a.ErrorCode, LatencyNS: int64(a.Latency),
		Cause: string(a.Cause), Detail: a.Detail,
	}
}

func (r tokenRow) token() Token {
	return Token{
		Hash: r.Hash, DeviceID: r.DeviceID, Name: r.Name, Family: r.Family,
		CreatedAt: fromUnix(r.Created), ExpiresAt: fromUnix(r.Expires), UsedAt: fromUnix(r.Used),
	}
}

func (r eventRow) event() (Event, error) {
	e := Event{
		Seq: r.Seq, Time: fromUnix(r.Time), Kind: protocol.EventType(r.Kind), DeviceID: r.DeviceID,
		Actor: r.Actor, Message: r.Message, Hash: r.Hash, PrevHash: r.PrevHash,
	}
	if r.Data != "" && r.Data != "{}" {
		if err := json.Unmarshal([]byte(r.Data), &e.Data); err != nil {
			return Event{}, fmt.Errorf("event %d: decode data: %w", r.Seq, err)
		}
	}
	return e, nil
}

// checkText refuses strings that are not valid UTF-8: JSON encoding would silently replace
// their bytes, so what is stored would differ from what was given (and hashed).
func checkText(ss ...string) error {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return invalidf("text %q is not valid UTF-8", s)
		}
	}
	return nil
}
