package inventory

import (
	"context"
	"fmt"
	"slices"

	"gorm.io/gorm"
)

// CommandRecord is a renew command of the renewal scheduler with everything it changes, as
// RecordCommand stores it.
type CommandRecord struct {
	DeviceID string
	// Renewal replaces the device's renewal state (as SetRenewal does): commanded, with the
	// command's deadline.
	Renewal RenewalStatus
	// Command becomes the device's stored command (as SetCommand does), which the device
	// state machine sends once the device subscribes, after a restart too. Its ID is
	// required.
	Command Command
	// Campaign is the id of the campaign the command belongs to, "" for none; the
	// campaign's entry for the device then takes Stage.
	Campaign string
	Stage    CampaignStage
	// Event is the command's audit event; an empty Actor is taken from the context.
	Event Event
}

// RecordCommand stores a renew command in one transaction: the device's renewal state, its
// stored command, its campaign entry's stage (when the command belongs to a campaign) and
// the audit event. Either all of them are written or none (issue 10: a crash between them
// left campaigns listing devices committed without commanded_at). An unknown device, or a
// device the campaign does not hold, is ErrNotFound.
func (s *Store) RecordCommand(ctx context.Context, r CommandRecord) error {
	st, c := r.Renewal, r.Command
	switch {
	case r.DeviceID == "":
		return invalidf("command record has no device id")
	case c.ID == "":
		return invalidf("command for device %q has no id", r.DeviceID)
	case st.State != "" && !slices.Contains(renewalStates, st.State):
		return invalidf("device %q: unknown renewal state %q", r.DeviceID, st.State)
	}
	if err := checkText(r.DeviceID, st.LastCause, c.ID, c.Action, c.Reason, r.Campaign); err != nil {
		return err
	}
	if r.Campaign != "" {
		if err := checkStage(r.Stage); err != nil {
			return err
		}
	}
	if err := checkEvent(r.Event); err != nil {
		return err
	}
	e := r.Event
	if e.Actor == "" {
		e.Actor = actorFrom(ctx)
	}
	set := renewalColumns(st)
	// The columns SetCommand writes.
	set["command_id"], set["command_action"], set["command_reason"], set["command_deadline"] =
		c.ID, c.Action, c.Reason, unix(c.Deadline)
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&deviceRow{}).Where("id = ?", r.DeviceID).Updates(set)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrNotFound
		}
		if r.Campaign != "" {
			if err := setStage(tx, r.Campaign, r.DeviceID, r.Stage); err != nil {
				return err
			}
		}
		_, err := s.appendEvent(ctx, tx, e)
		return err
	})
	if err != nil {
		return fmt.Errorf("record command %q of device %q: %w", c.ID, r.DeviceID, err)
	}
	return nil
}
