package protocol

import "time"

// Intermediate rotation (issue 12): ca/rotate-intermediate creates a new intermediate under
// the root, puts it in force, publishes the CA bundle with both intermediates retained on the
// CA topic, and runs a re-key campaign that moves every device onto the new one; once no
// device's active certificate is the previous intermediate's, that one is retired (its last
// CRL kept until it expires). incident/intermediate-compromised does the same and then lists
// the previous intermediate on the root's CRL.

// CARotateRequest is the payload of ca/rotate-intermediate and ca/rotate-root. Rate, Canary and AbortAfter
// shape the campaign that moves the devices, as for campaign/start; zero values take one
// canary and an abort once a fifth failed. Run while a rotation is under way, it starts a
// new campaign over the devices still on the previous intermediate.
type CARotateRequest struct {
	Transaction string  `json:"transaction,omitempty"`
	DryRun      bool    `json:"dry_run,omitempty"`
	Rate        float64 `json:"rate,omitempty"`
	Canary      int     `json:"canary,omitempty"`
	AbortAfter  float64 `json:"abort_after,omitempty"`
}

// RotationState is where an intermediate rotation stands.
type RotationState string

// The rotation states.
const (
	// RotationMoving: the new intermediate is in force, both are trusted, devices move.
	RotationMoving RotationState = "moving"
	// RotationRetired: no device uses the previous intermediate; it is no longer trusted.
	RotationRetired RotationState = "retired"
)

// CARotation is an intermediate rotation and its progress: the data of a
// ca/rotate-intermediate response and CAInfo.Rotation. A dry run has no State and changes
// nothing; Devices is then what the campaign would take.
type CARotation struct {
	State  RotationState `json:"state,omitempty"`
	DryRun bool          `json:"dry_run,omitempty"`
	// Incident is set for incident/intermediate-compromised: the previous intermediate is
	// revoked (on the root's CRL) when it is retired.
	Incident bool      `json:"incident,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Retired  time.Time `json:"retired,omitzero"`
	// Intermediate is the new intermediate (absent in a dry run), Previous the one it
	// replaces.
	Intermediate *CACertificate `json:"intermediate,omitempty"`
	Previous     CACertificate  `json:"previous"`
	// Campaign is the re-key campaign moving the devices, CampaignState where it stands.
	Campaign      string        `json:"campaign,omitempty"`
	CampaignState CampaignState `json:"campaign_state,omitempty"`
	// Devices is how many devices the campaign took (or would take); Remaining how many
	// devices' active certificates the previous intermediate still issued.
	Devices   int `json:"devices"`
	Remaining int `json:"remaining"`
	// Revoked: the previous intermediate is on the root's CRL.
	Revoked bool `json:"revoked,omitempty"`
	// Root marks a root rotation (ca/rotate-root): a new root, cross-signed by the previous
	// one, and a new intermediate under it; the previous root is retired with the previous
	// intermediate.
	Root bool `json:"root,omitempty"`
}
