package admin

import (
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// The inventory's records as the bridge API answers them (protocol.DeviceDetail, events):
// the protocol owns their shape, so a change of the inventory's structs changes no answer.

func deviceRecord(d inventory.Device) protocol.DeviceRecord {
	return protocol.DeviceRecord{
		ID: d.ID, Name: d.Name, Family: d.Family, Model: d.Model, Vendor: d.Vendor, Firmware: d.Firmware,
		Class: d.Class, Tags: d.Tags, Path: d.Path, Via: d.Via, Mechanism: d.Mechanism,
		CreatedAt: d.CreatedAt, LastSeen: d.LastSeen, State: d.State, Online: d.Online,
		Health: protocol.DeviceHealth{ReportedSerial: d.Health.ReportedSerial, ReportedNotAfter: d.Health.ReportedNotAfter,
			ChainOK: d.Health.ChainOK, ClockSkew: d.Health.ClockSkew, AgentVersion: d.Health.AgentVersion,
			LastError: d.Health.LastError, At: d.Health.At},
		Renewal: protocol.DeviceRenewal{State: d.Renewal.State, Failures: d.Renewal.Failures,
			NextAttemptAt: d.Renewal.NextAttemptAt, LastCause: d.Renewal.LastCause,
			WindowStart: d.Renewal.WindowStart, WindowEnd: d.Renewal.WindowEnd},
	}
}

// certificateRecords converts certs, leaving out their PEM: the list stays readable, and the
// PEM is in the inventory.
func certificateRecords(certs []inventory.Certificate) []protocol.CertificateRecord {
	if certs == nil {
		return nil // as the inventory gave it: null, not []
	}
	out := make([]protocol.CertificateRecord, len(certs))
	for i, c := range certs {
		out[i] = protocol.CertificateRecord{
			Serial: c.Serial, DeviceID: c.DeviceID, NotBefore: c.NotBefore, NotAfter: c.NotAfter, Issuer: c.Issuer,
			KeyAlgorithm: c.KeyAlgorithm, Fingerprint: c.Fingerprint, Status: string(c.Status),
			RequestID: c.RequestID, Replaces: c.Replaces, CreatedAt: c.CreatedAt, ActivatedAt: c.ActivatedAt,
			RevokedAt: c.RevokedAt, RevokeReason: c.RevokeReason,
		}
	}
	return out
}

func attemptRecords(atts []inventory.Attempt) []protocol.AttemptRecord {
	if atts == nil {
		return nil // as the inventory gave it: null, not []
	}
	out := make([]protocol.AttemptRecord, len(atts))
	for i, a := range atts {
		out[i] = protocol.AttemptRecord{
			RequestID: a.RequestID, DeviceID: a.DeviceID, Reason: a.Reason, Serial: a.Serial,
			StartedAt: a.StartedAt, FinishedAt: a.FinishedAt, Outcome: a.Outcome,
			ErrorCode: protocol.Code(a.ErrorCode), Latency: a.Latency, Cause: a.Cause, Detail: a.Detail,
		}
		if a.Cause != "" {
			out[i].CauseClass = a.Cause.Class()
		}
	}
	return out
}

func auditEvents(evs []inventory.Event) []protocol.AuditEvent {
	if evs == nil {
		return nil // as the inventory gave it: null, not []
	}
	out := make([]protocol.AuditEvent, len(evs))
	for i, e := range evs {
		out[i] = protocol.AuditEvent{
			Seq: e.Seq, Time: e.Time, Kind: e.Kind, DeviceID: e.DeviceID, Actor: e.Actor,
			Message: e.Message, Data: e.Data, Hash: e.Hash, PrevHash: e.PrevHash,
		}
	}
	return out
}
