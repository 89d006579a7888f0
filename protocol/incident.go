package protocol

import "strings"

// Incident names a runbook the hub runs as one command: the incident/<name> bridge
// operations and `hearth-gateway incident <name>`.
type Incident string

// The incidents.
const (
	// IncidentDeviceLost: a device was lost or stolen. Its certificates are revoked with
	// reason keyCompromise and it is quarantined.
	IncidentDeviceLost Incident = "device-lost"
	// IncidentFamilyCompromised: the keys of a device family may have leaked. Every device of
	// the family is re-keyed by a campaign, and the certificate each one leaves is revoked
	// (keyCompromise) as soon as it commits its new one.
	IncidentFamilyCompromised Incident = "family-compromised"
	// IncidentIntermediateCompromised: the hub's intermediate key may have leaked. The
	// intermediate is rotated (a new one in force, every device re-keyed onto it) and the old
	// one revoked on the root's CRL once no device uses it.
	IncidentIntermediateCompromised Incident = "intermediate-compromised"
)

// IncidentCampaignPrefix starts the id of every campaign an incident starts
// ("incident-<family>-<time>"): the hub revokes the previous certificate of a device that
// commits in a running campaign of that name.
const IncidentCampaignPrefix = "incident-"

// IsIncidentCampaign reports whether a campaign id is one an incident started.
func IsIncidentCampaign(id string) bool { return strings.HasPrefix(id, IncidentCampaignPrefix) }

// IncidentRequest is the payload of the incident/* operations.
type IncidentRequest struct {
	Transaction string `json:"transaction,omitempty"`
	// ID is the device of device-lost.
	ID string `json:"id,omitempty"`
	// Family is the family of family-compromised.
	Family string `json:"family,omitempty"`
	// DryRun lists who would be affected and what residents would be told, and changes
	// nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// IncidentDevice is one device an incident affects.
type IncidentDevice struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Online bool   `json:"online"`
	// Serial is the device's active certificate, the one the incident replaces or revokes.
	Serial string `json:"serial,omitempty"`
	// Action says what the incident does (or would do) to the device.
	Action string `json:"action"`
}

// IncidentPlan is the data of an incident/* response: who is (or, for a dry run, would be)
// affected and what residents are told.
type IncidentPlan struct {
	Incident Incident         `json:"incident"`
	DryRun   bool             `json:"dry_run,omitempty"`
	Devices  []IncidentDevice `json:"devices"`
	// Notice is the plain-language message for the people in the home, published as the
	// message of an EventIncidentNotice on bridge/event and kept in the audit log.
	Notice string `json:"notice"`
	// Revoked is how many certificates were revoked now (device-lost).
	Revoked int `json:"revoked,omitempty"`
	// Campaign is the re-key campaign started (family-compromised, intermediate-compromised).
	Campaign string `json:"campaign,omitempty"`
	// Rotation is the intermediate rotation (intermediate-compromised).
	Rotation *CARotation `json:"rotation,omitempty"`
}
