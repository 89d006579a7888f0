package inventory

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"gorm.io/gorm"
)

// Campaign states (Campaign.State).
const (
	CampaignRunning  = "running"
	CampaignAborted  = "aborted"  // stopped at its abort threshold; pending devices left untouched
	CampaignFinished = "finished" // every device committed or failed
)

// Stages of a device in a campaign (CampaignStage.Stage).
const (
	StagePending   = "pending"   // not commanded yet
	StageCommanded = "commanded" // commanded, no outcome yet
	StageCommitted = "committed" // a certificate other than the one at the start is active
	StageFailed    = "failed"
)

var (
	campaignStates = []string{CampaignRunning, CampaignAborted, CampaignFinished}
	campaignStages = []string{StagePending, StageCommanded, StageCommitted, StageFailed}
)

// Campaign is a campaign as stored: its definition and where it stands. The renewal
// scheduler gives the fields their meaning (renewal.Campaign).
type Campaign struct {
	ID string
	// Family, Class and All are the selector the devices were chosen with.
	Family string
	Class  string
	All    bool
	// Rate is in commands per minute; 0 leaves only the scheduler's rate.
	Rate       float64
	Canary     int
	AbortAfter float64
	Action     string
	State      string // one of the Campaign* states
	Started    time.Time
	Ended      time.Time // zero while running
	Cause      string    // why it was aborted
}

// CampaignStage is where one device stands in a campaign.
type CampaignStage struct {
	Stage       string    // one of the Stage* constants
	CommandedAt time.Time // zero until commanded
	CommandID   string    // "" when the device already had a command in flight
	Failures    int       // the device's consecutive renewal failures when it was commanded
	Cause       string    // why it failed
}

// CampaignDevice is one device of a campaign.
type CampaignDevice struct {
	DeviceID string
	Serial   string // the active certificate when the campaign started
	Canary   bool
	CampaignStage
}

// CampaignRecord is a campaign with its devices in the order they are commanded (canaries
// first).
type CampaignRecord struct {
	Campaign
	Devices []CampaignDevice
}

// CampaignSummary is a campaign with the number of its devices at each stage.
type CampaignSummary struct {
	Campaign
	Total     int
	Commanded int // devices commanded at some point (CommandedAt set), whatever their stage now
	Pending   int
	InFlight  int // stage commanded
	Committed int
	Failed    int
}

type campaignRow struct {
	Seq        int64   `gorm:"column:seq;primaryKey"`
	ID         string  `gorm:"column:id"`
	Family     string  `gorm:"column:family"`
	Class      string  `gorm:"column:class"`
	All        bool    `gorm:"column:all_devices"`
	Rate       float64 `gorm:"column:rate"`
	Canary     int     `gorm:"column:canary"`
	AbortAfter float64 `gorm:"column:abort_after"`
	Action     string  `gorm:"column:action"`
	State      string  `gorm:"column:state"`
	Started    int64   `gorm:"column:started_at"`
	Ended      int64   `gorm:"column:ended_at"`
	Cause      string  `gorm:"column:cause"`
}

func (campaignRow) TableName() string { return "campaigns" }

type campaignDeviceRow struct {
	CampaignID  string `gorm:"column:campaign_id;primaryKey"`
	DeviceID    string `gorm:"column:device_id;primaryKey"`
	Position    int    `gorm:"column:position"`
	Serial      string `gorm:"column:serial"`
	Canary      bool   `gorm:"column:canary"`
	Stage       string `gorm:"column:stage"`
	CommandedAt int64  `gorm:"column:commanded_at"`
	CommandID   string `gorm:"column:command_id"`
	Failures    int    `gorm:"column:failures"`
	Cause       string `gorm:"column:cause"`
}

func (campaignDeviceRow) TableName() string { return "campaign_devices" }

func campaignRowOf(c Campaign) campaignRow {
	return campaignRow{ID: c.ID, Family: c.Family, Class: c.Class, All: c.All, Rate: c.Rate, Canary: c.Canary,
		AbortAfter: c.AbortAfter, Action: c.Action, State: c.State, Started: unix(c.Started), Ended: unix(c.Ended), Cause: c.Cause}
}

func (r campaignRow) campaign() Campaign {
	return Campaign{ID: r.ID, Family: r.Family, Class: r.Class, All: r.All, Rate: r.Rate, Canary: r.Canary,
		AbortAfter: r.AbortAfter, Action: r.Action, State: r.State, Started: fromUnix(r.Started), Ended: fromUnix(r.Ended), Cause: r.Cause}
}

func (r campaignDeviceRow) device() CampaignDevice {
	return CampaignDevice{DeviceID: r.DeviceID, Serial: r.Serial, Canary: r.Canary, CampaignStage: CampaignStage{
		Stage: r.Stage, CommandedAt: fromUnix(r.CommandedAt), CommandID: r.CommandID, Failures: r.Failures, Cause: r.Cause}}
}

func checkCampaign(c Campaign) error {
	if c.ID == "" {
		return invalidf("campaign id is empty")
	}
	if !slices.Contains(campaignStates, c.State) {
		return invalidf("campaign %q: unknown state %q", c.ID, c.State)
	}
	if unix(c.Started) == 0 {
		return invalidf("campaign %q has no start time", c.ID)
	}
	return checkText(c.ID, c.Family, c.Class, c.Action, c.Cause)
}

func checkStage(st CampaignStage) error {
	if !slices.Contains(campaignStages, st.Stage) {
		return invalidf("unknown campaign stage %q", st.Stage)
	}
	return checkText(st.CommandID, st.Cause)
}

func checkEvent(e Event) error {
	if e.Kind == "" || unix(e.Time) == 0 {
		return invalidf("event needs a kind and a time")
	}
	return nil
}

// CreateCampaign stores the campaign r with its devices (in r.Devices' order) and appends e
// (its start event), in one transaction. An id already stored is refused with ErrDuplicate.
func (s *Store) CreateCampaign(ctx context.Context, r CampaignRecord, e Event) error {
	if err := checkCampaign(r.Campaign); err != nil {
		return err
	}
	if err := checkEvent(e); err != nil {
		return err
	}
	rows := make([]campaignDeviceRow, len(r.Devices))
	for i, d := range r.Devices {
		if d.DeviceID == "" {
			return invalidf("campaign %q: device %d has no id", r.ID, i)
		}
		if err := checkStage(d.CampaignStage); err != nil {
			return fmt.Errorf("campaign %q, device %q: %w", r.ID, d.DeviceID, err)
		}
		if err := checkText(d.DeviceID, d.Serial); err != nil {
			return err
		}
		rows[i] = campaignDeviceRow{CampaignID: r.ID, DeviceID: d.DeviceID, Position: i, Serial: d.Serial, Canary: d.Canary,
			Stage: d.Stage, CommandedAt: unix(d.CommandedAt), CommandID: d.CommandID, Failures: d.Failures, Cause: d.Cause}
	}
	if e.Actor == "" {
		e.Actor = actorFrom(ctx)
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&campaignRow{}).Where("id = ?", r.ID).Count(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return ErrDuplicate
		}
		row := campaignRowOf(r.Campaign)
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
		if len(rows) > 0 {
			// 10 columns a row: 500 rows stay far below SQLite's limit on bound parameters.
			if err := tx.CreateInBatches(rows, 500).Error; err != nil {
				return err
			}
		}
		_, err := s.appendEvent(ctx, tx, e)
		return err
	})
	if err != nil {
		if !errors.Is(err, ErrDuplicate) {
			s.camps.drop(r.ID)
		}
		return fmt.Errorf("create campaign %q: %w", r.ID, err)
	}
	s.camps.created(r.ID, r.Devices)
	return nil
}

// CampaignsInProgress returns, oldest first, the campaigns a renewal pass looks at with
// their devices: those running, and those stopped that still have devices commanded (whose
// outcome still counts). The campaign rows are read each time (one query); the entries of a
// campaign are read once (one query for all the campaigns not read before) and then kept in
// memory, changed by the Store's own writes (campaignCache), so that a pass over a running
// campaign of 10,000 devices does not read its 10,000 entries again. The records returned
// are the caller's to change.
func (s *Store) CampaignsInProgress(ctx context.Context) ([]CampaignRecord, error) {
	var out []CampaignRecord
	err := s.read(ctx).Transaction(func(tx *gorm.DB) error {
		out = nil
		var camps []campaignRow
		err := tx.Where("state = ? OR EXISTS (SELECT 1 FROM campaign_devices d WHERE d.campaign_id = campaigns.id AND d.stage = ?)",
			CampaignRunning, StageCommanded).Order("seq").Find(&camps).Error
		if err != nil {
			return err
		}
		ids := make([]string, len(camps))
		for i, c := range camps {
			ids[i] = c.ID
			out = append(out, CampaignRecord{Campaign: c.campaign()})
		}
		cached, gen := s.camps.lookup(ids)
		var missing []string
		at := map[string]int{}
		for i, devs := range cached {
			if devs == nil {
				missing = append(missing, ids[i])
				at[ids[i]] = i
				continue
			}
			out[i].Devices = devs
		}
		loaded := map[string][]CampaignDevice{}
		if len(missing) > 0 {
			var devs []campaignDeviceRow
			if err := tx.Where("campaign_id IN ?", missing).Order("campaign_id, position").Find(&devs).Error; err != nil {
				return err
			}
			for _, d := range devs {
				r := &out[at[d.CampaignID]]
				r.Devices = append(r.Devices, d.device())
			}
			for _, id := range missing {
				loaded[id] = out[at[id]].Devices
			}
		}
		s.camps.keep(gen, ids, loaded)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("campaigns in progress: %w", err)
	}
	return out, nil
}

// Campaigns returns every campaign with its counts, oldest first, in one aggregate query.
func (s *Store) Campaigns(ctx context.Context) ([]CampaignSummary, error) {
	type summaryRow struct {
		C         campaignRow `gorm:"embedded"`
		Total     int         `gorm:"column:total"`
		Commanded int         `gorm:"column:commanded"`
		Pending   int         `gorm:"column:pending"`
		InFlight  int         `gorm:"column:in_flight"`
		Committed int         `gorm:"column:committed"`
		Failed    int         `gorm:"column:failed"`
	}
	var rows []summaryRow
	err := s.read(ctx).Raw(`SELECT c.*, COUNT(d.device_id) AS total,
			COALESCE(SUM(CASE WHEN d.commanded_at <> 0 THEN 1 ELSE 0 END), 0) AS commanded,
			COALESCE(SUM(CASE WHEN d.stage = ? THEN 1 ELSE 0 END), 0) AS pending,
			COALESCE(SUM(CASE WHEN d.stage = ? THEN 1 ELSE 0 END), 0) AS in_flight,
			COALESCE(SUM(CASE WHEN d.stage = ? THEN 1 ELSE 0 END), 0) AS committed,
			COALESCE(SUM(CASE WHEN d.stage = ? THEN 1 ELSE 0 END), 0) AS failed
		FROM campaigns c LEFT JOIN campaign_devices d ON d.campaign_id = c.id
		GROUP BY c.seq ORDER BY c.seq`, StagePending, StageCommanded, StageCommitted, StageFailed).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	out := make([]CampaignSummary, len(rows))
	for i, r := range rows {
		out[i] = CampaignSummary{Campaign: r.C.campaign(), Total: r.Total, Commanded: r.Commanded, Pending: r.Pending,
			InFlight: r.InFlight, Committed: r.Committed, Failed: r.Failed}
	}
	return out, nil
}

// SetCampaignStages sets the stage of the given devices (id → stage) of a campaign, in one
// transaction: one row written per entry, whatever the campaign's size. A device the
// campaign does not hold is ErrNotFound, and nothing is written.
func (s *Store) SetCampaignStages(ctx context.Context, campaignID string, stages map[string]CampaignStage) error {
	for id, st := range stages {
		if err := checkStage(st); err != nil {
			return fmt.Errorf("campaign %q, device %q: %w", campaignID, id, err)
		}
	}
	if len(stages) == 0 {
		return nil
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		for _, id := range slices.Sorted(maps.Keys(stages)) {
			if err := s.setStage(ctx, tx, campaignID, id, stages[id]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.camps.drop(campaignID)
		return fmt.Errorf("set stages of campaign %q: %w", campaignID, err)
	}
	s.camps.staged(campaignID, stages)
	return nil
}

// setStage writes one campaign entry's stage inside tx (a prepared statement: a pass sets
// the stage of every device it commands or sees commit, issue 11).
func (s *Store) setStage(ctx context.Context, tx *gorm.DB, campaignID, deviceID string, st CampaignStage) error {
	n, err := s.execN(ctx, tx, s.st.setStage, st.Stage, unix(st.CommandedAt), st.CommandID, st.Failures, st.Cause,
		campaignID, deviceID)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("device %q of campaign %q: %w", deviceID, campaignID, ErrNotFound)
	}
	return nil
}

// EndCampaign moves a running campaign to state (CampaignAborted or CampaignFinished) at
// ended, with cause, and appends e, in one transaction. A campaign that is not running (or
// does not exist) is ErrNotFound.
func (s *Store) EndCampaign(ctx context.Context, id, state string, ended time.Time, cause string, e Event) error {
	if state != CampaignAborted && state != CampaignFinished {
		return invalidf("campaign %q cannot end %q", id, state)
	}
	if err := checkText(cause); err != nil {
		return err
	}
	if err := checkEvent(e); err != nil {
		return err
	}
	if e.Actor == "" {
		e.Actor = actorFrom(ctx)
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&campaignRow{}).Where("id = ? AND state = ?", id, CampaignRunning).
			Updates(map[string]any{"state": state, "ended_at": unix(ended), "cause": cause})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("running campaign: %w", ErrNotFound)
		}
		_, err := s.appendEvent(ctx, tx, e)
		return err
	})
	if err != nil {
		return fmt.Errorf("end campaign %q: %w", id, err)
	}
	return nil
}
