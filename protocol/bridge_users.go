package protocol

import (
	"github.com/hearth-pki/hearth/protocol/jsoncodec"
	"time"
)

// UserRequest is the payload of user/add (Name, Role, Password), user/set-role (Name, Role)
// and user/remove (Name). Role is viewer, operator or admin; the password is hashed by the
// hub and never stored or echoed.
type UserRequest struct {
	Transaction string `json:"transaction,omitempty"`
	Name        string `json:"name"`
	Role        string `json:"role,omitempty"`
	Password    string `json:"password,omitempty"`
}

// UserInfo is one user in the answers of the user operations.
type UserInfo struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Previous  string    `json:"previous_role,omitempty"` // user/set-role: the role before
	Removed   bool      `json:"removed,omitempty"`       // user/remove
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// UserList is the answer of user/list: the users of the inventory in name order, and the
// names of the admins configured outside it (config file, HEARTH_ADMIN_PASSWORD).
type UserList struct {
	Users      []UserInfo `json:"users"`
	Configured []string   `json:"configured_admins,omitempty"`
}

// PolicyChangeRequest is the payload of policy/diff, policy/propose and policy/apply: Policy
// is a policy file's YAML; Canary names one class whose settings alone are taken from it
// (every other class keeps the policy in force), to try a change on that class first.
// policy/diff may instead name an open proposal by ID.
type PolicyChangeRequest struct {
	Transaction string `json:"transaction,omitempty"`
	Policy      string `json:"policy,omitempty"`
	Canary      string `json:"canary,omitempty"`
	ID          string `json:"id,omitempty"`
}

// DeviceMove is a device whose policy class a change moves.
type DeviceMove struct {
	ID   string `json:"id"`
	From string `json:"from"`
	To   string `json:"to"`
}

// PolicyDiff is the answer of policy/diff: the settings that change, the devices whose
// class changes (at most MaxListedMoves listed, Moved counts them all) and the devices in a
// class whose settings change (Affected), so an approver sees what a change does to the
// fleet before approving it.
type PolicyDiff struct {
	Hash     string       `json:"hash"`
	Changes  []string     `json:"changes"`
	Moves    []DeviceMove `json:"moves"`
	Moved    int          `json:"moved"`
	Affected int          `json:"affected"`
	Canary   string       `json:"canary,omitempty"`
}

// MaxListedMoves bounds PolicyDiff.Moves.
const MaxListedMoves = 100

// ChangeRequest is the payload of change/propose (Op and its Payload: any operation that
// needs approval), change/approve and change/reject (ID).
type ChangeRequest struct {
	Transaction string  `json:"transaction,omitempty"`
	ID          string  `json:"id,omitempty"`
	Op          string  `json:"op,omitempty"`
	Payload     RawJSON `json:"payload,omitempty"`
}

// Change is a proposed change (answer of change/propose, policy/propose, change/approve,
// change/reject; change/list answers ChangeList). State is open, applied or rejected; Result
// is the applied operation's data.
type Change struct {
	ID         string    `json:"id"`
	Op         string    `json:"op"`
	State      string    `json:"state"`
	Summary    string    `json:"summary,omitempty"`
	Canary     string    `json:"canary,omitempty"`
	ProposedBy string    `json:"proposed_by"`
	ProposedAt time.Time `json:"proposed_at"`
	DecidedBy  string    `json:"decided_by,omitempty"`
	DecidedAt  time.Time `json:"decided_at,omitzero"`
	Result     RawJSON   `json:"result,omitempty"`
}

// ChangeList is the answer of change/list: the open changes, oldest first, then the last
// decided ones.
type ChangeList struct {
	Changes []Change `json:"changes"`
}

// Validate checks the fields present: a user name has the syntax of a device id; a password,
// when given, 8 to 256 characters (the hub also refuses a short one).
func (m *UserRequest) Validate() error {
	if err := checkText("transaction", m.Transaction, 128); err != nil {
		return err
	}
	if err := ValidateDeviceID(m.Name); m.Name != "" && err != nil {
		return invalid("user name %q: letters, digits, '-' and '_' only, 1 to 64 characters", m.Name)
	}
	if len(m.Password) > 256 {
		return invalid("password longer than 256 bytes")
	}
	return checkText("role", m.Role, 16)
}

// Validate checks the sizes: the policy fits a message, the canary is a class name, the id
// short.
func (m *PolicyChangeRequest) Validate() error {
	if err := checkText("transaction", m.Transaction, 128); err != nil {
		return err
	}
	if err := checkText("canary", m.Canary, 64); err != nil {
		return err
	}
	if err := checkText("id", m.ID, 64); err != nil {
		return err
	}
	return checkText("policy", m.Policy, MaxMessageSize)
}

// Validate checks the sizes of the fields and that the payload, if any, is JSON.
func (m *ChangeRequest) Validate() error {
	if err := checkText("transaction", m.Transaction, 128); err != nil {
		return err
	}
	if err := checkText("id", m.ID, 64); err != nil {
		return err
	}
	if err := checkText("op", m.Op, 64); err != nil {
		return err
	}
	if len(m.Payload) > 0 && !jsoncodec.Valid(m.Payload) {
		return invalid("payload is not JSON")
	}
	return nil
}
