package keystore

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/hearth-pki/hearth/protocol/jsoncodec"
)

// State is what the agent remembers between runs besides its keys.
type State struct {
	// LastKnownGood is the latest wall-clock time the agent trusts (learned from the hub or a
	// verified certificate). Boards without an RTC boot in 1970; this is the floor for the clock.
	LastKnownGood time.Time
	// LastError is the last renewal or connection error, for health reports.
	LastError string
	// LastCause is LastError's cause, one of the protocol's causes ("" with no error).
	LastCause string
	// LastRequestID is the id of the renewal attempt LastError ended ("" when the error
	// belongs to no attempt): health reports carry it so that the hub records the failure
	// once.
	LastRequestID string
	// LastRenewal is when the current generation was installed and committed.
	LastRenewal time.Time
	// Pending is the renewal request in flight, or nil.
	Pending *Pending
}

// Pending is a renewal request sent to the hub and not yet concluded.
type Pending struct {
	// RequestID correlates the request with the hub's reply; resubmitting it is idempotent.
	RequestID string
	// Replaces is the serial (lowercase hex, as Pair.Serial) of the certificate being replaced.
	Replaces string
}

// stateVersion is the version of state.json's format; a file of another version is refused.
const stateVersion = 1

// stateFile is state.json on disk. Its field names are a file format: never rename them.
type stateFile struct {
	V             int          `json:"v"`
	LastKnownGood time.Time    `json:"last_known_good,omitzero"`
	LastError     string       `json:"last_error,omitempty"`
	LastCause     string       `json:"last_cause,omitempty"`
	LastRequestID string       `json:"last_request_id,omitempty"`
	LastRenewal   time.Time    `json:"last_renewal,omitzero"`
	Pending       *pendingFile `json:"pending,omitempty"`
}

type pendingFile struct {
	RequestID string `json:"request_id"`
	Replaces  string `json:"replaces,omitempty"`
}

// encodeState returns state.json's content for s. Times are stored in UTC.
func encodeState(s State) ([]byte, error) {
	f := stateFile{
		V:             stateVersion,
		LastKnownGood: s.LastKnownGood.UTC(),
		LastError:     s.LastError,
		LastCause:     s.LastCause,
		LastRequestID: s.LastRequestID,
		LastRenewal:   s.LastRenewal.UTC(),
	}
	if s.Pending != nil {
		f.Pending = &pendingFile{RequestID: s.Pending.RequestID, Replaces: s.Pending.Replaces}
	}
	b, err := jsoncodec.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// decodeState parses state.json. Every failure wraps ErrCorrupt and returns the zero State.
func decodeState(data []byte) (State, error) {
	var f stateFile
	if err := jsoncodec.Unmarshal(data, &f); err != nil {
		return State{}, fmt.Errorf("%w: %s: %w", ErrCorrupt, stateName, err)
	}
	if f.V != stateVersion {
		return State{}, fmt.Errorf("%w: %s: version %d, want %d", ErrCorrupt, stateName, f.V, stateVersion)
	}
	s := State{LastKnownGood: f.LastKnownGood, LastError: f.LastError, LastCause: f.LastCause, LastRequestID: f.LastRequestID,
		LastRenewal: f.LastRenewal}
	if f.Pending != nil {
		if f.Pending.RequestID == "" {
			return State{}, fmt.Errorf("%w: %s: pending request without an id", ErrCorrupt, stateName)
		}
		s.Pending = &Pending{RequestID: f.Pending.RequestID, Replaces: f.Pending.Replaces}
	}
	return s, nil
}

// LoadState returns the saved State. A missing state.json is the zero State and no error; an
// unreadable, corrupt or unknown-version one is the zero State and an error (wrapping ErrCorrupt
// when the content is at fault) for the caller to log before carrying on.
func (d *Dir) LoadState() (State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	data, err := readFile(d.file(stateName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return State{}, nil
	case err != nil:
		return State{}, fmt.Errorf("keystore: read %s: %w", stateName, err)
	}
	return decodeState(data)
}

// SaveState replaces state.json with s atomically. Saving the state already saved writes
// nothing.
func (d *Dir) SaveState(s State) error {
	if s.Pending != nil && s.Pending.RequestID == "" {
		return fmt.Errorf("keystore: save state: pending request without an id")
	}
	data, err := encodeState(s)
	if err != nil {
		return fmt.Errorf("keystore: save state: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := writeAtomic(d.path, stateName, data); err != nil {
		return fmt.Errorf("keystore: save state: %w", err)
	}
	return nil
}
