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
	return s.RecordCommands(ctx, []CommandRecord{r})[0]
}

// RecordCommands stores a batch of renew commands, each as RecordCommand does, in one
// transaction (one commit, hence one sync of the WAL, for all of them: a pass of the
// renewal scheduler commands hundreds of devices at once), each inside its own SAVEPOINT:
// a record that fails is rolled back alone and the others commit together. The result has
// one entry per record, nil for those stored. If the transaction itself fails, every record
// not already failed gets that error: none was written.
func (s *Store) RecordCommands(ctx context.Context, recs []CommandRecord) []error {
	errs := make([]error, len(recs))
	sets := make([][]any, len(recs))
	events := make([]Event, len(recs))
	for i, r := range recs {
		sets[i], events[i], errs[i] = checkCommandRecord(ctx, r)
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		for i, r := range recs {
			if errs[i] != nil {
				continue
			}
			if err := s.exec(ctx, tx, s.st.commandSavepoint); err != nil {
				return err
			}
			if err := s.recordCommand(ctx, tx, r, sets[i], events[i]); err != nil {
				errs[i] = fmt.Errorf("record command %q of device %q: %w", r.Command.ID, r.DeviceID, err)
				if err := s.exec(ctx, tx, s.st.commandRollbackTo); err != nil {
					return err
				}
			}
			if err := s.exec(ctx, tx, s.st.commandRelease); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("record commands: %w", err)
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	s.cacheCommandStages(recs, errs)
	return errs
}

// checkCommandRecord validates r and returns the parameters of its device update
// (recordCommandSQL) and its event.
func checkCommandRecord(ctx context.Context, r CommandRecord) ([]any, Event, error) {
	st, c := r.Renewal, r.Command
	switch {
	case r.DeviceID == "":
		return nil, Event{}, invalidf("command record has no device id")
	case c.ID == "":
		return nil, Event{}, invalidf("command for device %q has no id", r.DeviceID)
	case st.State != "" && !slices.Contains(renewalStates, st.State):
		return nil, Event{}, invalidf("device %q: unknown renewal state %q", r.DeviceID, st.State)
	}
	if err := checkText(r.DeviceID, st.LastCause, c.ID, c.Action, c.Reason, r.Campaign); err != nil {
		return nil, Event{}, err
	}
	if r.Campaign != "" {
		if err := checkStage(r.Stage); err != nil {
			return nil, Event{}, err
		}
	}
	if err := checkEvent(r.Event); err != nil {
		return nil, Event{}, err
	}
	e := r.Event
	if e.Actor == "" {
		e.Actor = actorFrom(ctx)
	}
	// The renewal state's columns, then those SetCommand writes.
	args := append(renewalArgs(st), c.ID, c.Action, c.Reason, unix(c.Deadline), r.DeviceID)
	return args, e, nil
}

// recordCommand writes one checked command record inside tx.
// (The statements are prepared: a pass commands hundreds of devices, issue 11.)
func (s *Store) recordCommand(ctx context.Context, tx *gorm.DB, r CommandRecord, args []any, e Event) error {
	n, err := s.execN(ctx, tx, s.st.recordCommand, args...)
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	if r.Campaign != "" {
		if err := s.setStage(ctx, tx, r.Campaign, r.DeviceID, r.Stage); err != nil {
			return err
		}
	}
	_, err = s.appendEvent(ctx, tx, e)
	return err
}

// cacheCommandStages brings the cached campaign entries (campaignCache) up to date with the
// records of RecordCommands: the stage of each one stored, and the campaign of each one that
// failed dropped (its entry may or may not have been written).
func (s *Store) cacheCommandStages(recs []CommandRecord, errs []error) {
	for i, r := range recs {
		switch {
		case r.Campaign == "":
		case errs[i] == nil:
			s.camps.staged(r.Campaign, map[string]CampaignStage{r.DeviceID: r.Stage})
		default:
			s.camps.drop(r.Campaign)
		}
	}
}
