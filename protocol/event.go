package protocol

import "slices"

// EventType names a hub event: the type of an Event on bridge/event and the kind of a record
// in the hub's audit log. The list is append-only, like the error codes: a type is never
// renamed, removed or given another meaning, and new types are added at the end of
// eventTypes (testdata/event_types.txt locks the order). Receivers ignore types they do not
// know, so a version may gain types.
type EventType string

// The event types, in the order they were added. Each one's data keys are in EventTypes.
const (
	EventCertIssued              EventType = "cert.issued"
	EventTokenUsed               EventType = "token.used"
	EventCertActivated           EventType = "cert.activated"
	EventCertRevoked             EventType = "cert.revoked"
	EventTokenCreated            EventType = "token.created"
	EventDeviceRemoved           EventType = "device.removed"
	EventDeviceState             EventType = "device.state"
	EventRenewalDue              EventType = "renewal.due"
	EventRenewalForced           EventType = "renewal.forced"
	EventRenewalCommanded        EventType = "renewal.commanded"
	EventRenewalFailed           EventType = "renewal.failed"
	EventRenewalFailing          EventType = "renewal.failing"
	EventRenewalReminder         EventType = "renewal.reminder"
	EventCampaignStarted         EventType = "campaign.started"
	EventCampaignProgress        EventType = "campaign.progress"
	EventCampaignAborted         EventType = "campaign.aborted"
	EventCampaignFinished        EventType = "campaign.finished"
	EventRenewalRequested        EventType = "renewal.requested"
	EventPolicyChanged           EventType = "policy.changed"
	EventFindingDuplicateSession EventType = "finding.duplicate_session"
	EventRenewalRolledBack       EventType = "renewal.rolled_back"
	EventFindingUnexpectedSerial EventType = "finding.unexpected_serial"
	EventFindingUnexpectedIssuer EventType = "finding.unexpected_issuer"
	EventRenewalExpired          EventType = "renewal.expired"
	EventHelpRequested           EventType = "help.requested"
	EventEnrollmentLogin         EventType = "enrollment.login"
	EventEnrollmentRefused       EventType = "enrollment.refused"
	EventAlertRaised             EventType = "alert.raised"
	EventAlertResolved           EventType = "alert.resolved"
	EventAlertFailed             EventType = "alert.failed"
	EventIncidentNotice          EventType = "incident.notice"
	EventUserAdded               EventType = "user.added"
	EventUserRemoved             EventType = "user.removed"
	EventUserRoleChanged         EventType = "user.role_changed"
	EventLoginFailed             EventType = "login.failed"
	EventChangeProposed          EventType = "change.proposed"
	EventChangeApproved          EventType = "change.approved"
	EventChangeRejected          EventType = "change.rejected"
	EventCARotation              EventType = "ca.rotation"
)

// EventTypeInfo describes an event type: what it reports, where the hub writes it, and the
// keys its Data may hold (values are strings; a key may be missing or empty).
type EventTypeInfo struct {
	Type        EventType
	Description string
	Published   bool     // sent on bridge/event
	Recorded    bool     // appended to the hub's audit log
	Data        []string // the keys of Data, in the event and in the audit record
}

// campaignCounts are the data keys of every campaign event after campaign.started.
var campaignCounts = []string{"id", "state", "total", "commanded", "committed", "failed", "pending"}

var eventTypes = []EventTypeInfo{
	{EventCertIssued, "a certificate was issued, pending until the device proves it; the audit record adds not_after, replaces and fingerprint", true, true,
		[]string{"serial", "request_id", "reason", "not_after", "replaces", "fingerprint"}},
	{EventTokenUsed, "an issuance consumed the device's enrollment token", true, true, []string{"request_id"}},
	{EventCertActivated, "a certificate became the device's active one, superseding previous; reason is import for an imported certificate", true, true,
		[]string{"serial", "previous", "reason"}},
	{EventCertRevoked, "certificates of the device were revoked (one audit record each, with the status it had)", true, true,
		[]string{"serial", "reason", "status"}},
	{EventTokenCreated, "an enrollment token was created for the device", true, true, []string{"name", "family", "expires_at"}},
	{EventDeviceRemoved, "the device was removed from the inventory (its certificates and records stay)", false, true, nil},
	{EventDeviceState, "the device's state changed", false, true, []string{"from", "to"}},
	{EventRenewalDue, "the device's certificate reached the end of its renewal window", true, true, []string{"serial", "reason"}},
	{EventRenewalForced, "an admin asked for a renewal now", true, true, []string{"reason"}},
	{EventRenewalCommanded, "a renew or rekey command was sent; the scheduler's audit record adds action, reason, deadline and campaign", true, true,
		[]string{"command_id", "action", "reason", "deadline", "campaign"}},
	{EventRenewalFailed, "a renewal attempt failed; the scheduler retries at next_attempt_at", true, true,
		[]string{"cause", "failures", "next_attempt_at", "detail"}},
	{EventRenewalFailing, "renewal failed the configured number of times in a row", true, true, []string{"cause", "failures", "detail"}},
	{EventRenewalReminder, "a device without an agent reached a reminder threshold before its certificate expires", true, true,
		[]string{"serial", "threshold", "expires"}},
	{EventCampaignStarted, "a campaign started", true, true, []string{"id", "action", "total"}},
	{EventCampaignProgress, "a campaign's counts changed", true, true, campaignCounts},
	{EventCampaignAborted, "a campaign reached its abort threshold; the message says why", true, true, campaignCounts},
	{EventCampaignFinished, "every device of a campaign committed or failed", true, true, campaignCounts},
	{EventRenewalRequested, "a renew command was sent, with whoever asked as the record's actor", false, true, []string{"command_id", "action"}},
	{EventPolicyChanged, "the policy in force changed; the message lists the differences", true, true, []string{"hash", "previous"}},
	{EventFindingDuplicateSession, "one certificate is presented on two connections at once: a cloned device or a leaked key", true, true,
		[]string{"serial"}},
	{EventRenewalRolledBack, "the agent gave up a request (failed: the certificate abandoned, if one was issued) and stays on serial, or went back to serial after the commit of request_id; previous is no longer sent", true, true,
		[]string{"serial", "failed", "request_id", "previous", "cause"}},
	{EventFindingUnexpectedSerial, "a health report names a serial other than the active certificate's", true, false, nil},
	{EventFindingUnexpectedIssuer, "a health report names an issuer other than the hub's intermediate", true, false, nil},
	{EventRenewalExpired, "a request ended without a commit before the in-flight timeout; its certificate (serial, if one was issued) is abandoned", true, true,
		[]string{"serial", "request_id", "cause"}},
	{EventHelpRequested, "someone pressed Request help on the dashboard's resident view, about the device if named; problems are its problem codes then (comma-separated), actor who asked", true, true,
		[]string{"problems", "actor"}},
	{EventEnrollmentLogin, "a device logged in with a valid enrollment token; source is where from", true, false, []string{"source"}},
	{EventEnrollmentRefused, "an enrollment login was refused; code is the reason the agent is told (token_unknown, token_used, token_expired, locked_out); at most a few a second are published, suppressed counts those left out before it", true, false,
		[]string{"code", "source", "suppressed"}},
	{EventAlertRaised, "the hub's monitor raised an alert (a family failing, a device failing repeatedly with one cause, a hub certificate expiring…); id is the same for the same problem", true, true,
		alertKeys},
	{EventAlertResolved, "the problem of alert id cleared", true, true, alertKeys},
	{EventAlertFailed, "an alert could not be delivered on route (webhook, home_assistant, or rate when over the rate limit)", true, true,
		[]string{"id", "state", "route", "error"}},
	{EventIncidentNotice, "an incident runbook ran; the message is what residents are told, in plain language", true, true,
		[]string{"incident", "family", "campaign", "devices"}},
	{EventUserAdded, "a user was added with role; the record's actor is who added it", false, true, []string{"user", "role"}},
	{EventUserRemoved, "a user was removed, and its dashboard sessions with it", false, true, []string{"user", "role"}},
	{EventUserRoleChanged, "a user's role changed from previous to role", false, true, []string{"user", "role", "previous"}},
	{EventLoginFailed, "a login was refused (wrong name or password, or throttled); the actor is the name tried", false, true,
		[]string{"user", "remote", "via", "reason"}},
	{EventChangeProposed, "an admin proposed a change that needs a second admin's approval (kind policy)", false, true,
		[]string{"id", "kind", "hash", "canary"}},
	{EventChangeApproved, "a second admin approved a proposed change, which was applied", false, true, []string{"id", "kind", "proposed_by"}},
	{EventChangeRejected, "an admin rejected (or the proposer withdrew) a proposed change", false, true, []string{"id", "kind", "proposed_by"}},
	{EventCARotation, "a step of an intermediate rotation: step rotated (the new intermediate in force, both trusted), rooted (a root rotation's new root, cross-signed by the previous one, and its intermediate in force), moving (the campaign campaign started), retired (no device uses previous; it is no longer trusted, nor a previous root) or revoked (previous listed on the root's CRL)", true, true,
		[]string{"step", "intermediate", "previous", "campaign", "remaining", "incident", "root"}},
}

// alertKeys are the data keys of alert.raised and alert.resolved.
var alertKeys = []string{"id", "kind", "family", "class", "devices", "cause", "cause_class"}

// EventTypes returns every event type in the order it was added.
func EventTypes() []EventTypeInfo {
	out := slices.Clone(eventTypes)
	for i := range out {
		out[i].Data = slices.Clone(out[i].Data)
	}
	return out
}

// Info returns the description of t, and false for a type this version does not know (a
// newer hub's type): show such an event by its message.
func (t EventType) Info() (EventTypeInfo, bool) {
	for _, i := range eventTypes {
		if i.Type == t {
			return i, true
		}
	}
	return EventTypeInfo{Type: t}, false
}
