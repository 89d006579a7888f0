package inventory

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Settings keys under which hubs before schema version 3 kept their campaigns, as JSON.
const (
	legacyCampaignIndex  = "campaigns" // a list of campaign ids, oldest first
	legacyCampaignPrefix = "campaign/" // + id: the campaign's record
)

// legacyCampaign is a campaign record as the renewal scheduler stored it before schema
// version 3. It is frozen: it reads what those versions wrote.
type legacyCampaign struct {
	Campaign struct {
		ID       string `json:"id"`
		Selector struct {
			Family string `json:"family"`
			Class  string `json:"class"`
			All    bool   `json:"all"`
		} `json:"selector"`
		Rate       float64 `json:"rate"`
		Canary     int     `json:"canary"`
		AbortAfter float64 `json:"abort_after"`
		Action     string  `json:"action"`
	} `json:"campaign"`
	State   string    `json:"state"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	Cause   string    `json:"cause"`
	Devices []struct {
		ID          string    `json:"id"`
		Serial      string    `json:"serial"`
		Canary      bool      `json:"canary"`
		Stage       string    `json:"stage"`
		CommandedAt time.Time `json:"commanded_at"`
		CommandID   string    `json:"command_id"`
		Failures    int       `json:"failures"`
		Cause       string    `json:"cause"`
	} `json:"devices"`
}

// record converts l; ok is false for a record that does not fit the schema.
func (l *legacyCampaign) record(key string) (CampaignRecord, bool) {
	c := l.Campaign
	r := CampaignRecord{Campaign: Campaign{ID: c.ID, Family: c.Selector.Family, Class: c.Selector.Class, All: c.Selector.All,
		Rate: c.Rate, Canary: c.Canary, AbortAfter: c.AbortAfter, Action: c.Action,
		State: l.State, Started: l.Started, Ended: l.Ended, Cause: l.Cause}}
	if r.ID != strings.TrimPrefix(key, legacyCampaignPrefix) || checkCampaign(r.Campaign) != nil {
		return r, false
	}
	seen := map[string]bool{}
	for _, d := range l.Devices {
		e := CampaignDevice{DeviceID: d.ID, Serial: d.Serial, Canary: d.Canary, CampaignStage: CampaignStage{
			Stage: d.Stage, CommandedAt: d.CommandedAt, CommandID: d.CommandID, Failures: d.Failures, Cause: d.Cause}}
		if d.ID == "" || seen[d.ID] || checkStage(e.CampaignStage) != nil || checkText(d.ID, d.Serial) != nil {
			return r, false
		}
		seen[d.ID] = true
		r.Devices = append(r.Devices, e)
	}
	return r, true
}

// migrateCampaignSettings moves the JSON campaign records of earlier versions into the
// campaigns and campaign_devices tables, oldest first (the index's order, then records the
// index missed by key), and deletes the settings it converted. A record that does not decode
// or does not fit the schema is left in settings as it is: a hub that cannot read one
// campaign still starts, and nothing is lost.
func migrateCampaignSettings(tx *gorm.DB) error {
	var rows []settingRow
	err := tx.Where("key = ? OR substr(key, 1, ?) = ?", legacyCampaignIndex, len(legacyCampaignPrefix), legacyCampaignPrefix).
		Order("key").Find(&rows).Error
	if err != nil {
		return err
	}
	records := map[string]string{}
	var order []string
	for _, r := range rows {
		if r.Key == legacyCampaignIndex {
			var ids []string
			if json.Unmarshal([]byte(r.Value), &ids) == nil {
				for _, id := range ids {
					order = append(order, legacyCampaignPrefix+id)
				}
			}
			continue
		}
		records[r.Key] = r.Value
	}
	for _, r := range rows { // records without an index entry, by key
		if r.Key != legacyCampaignIndex && !slices.Contains(order, r.Key) {
			order = append(order, r.Key)
		}
	}
	converted := []string{legacyCampaignIndex}
	for _, key := range order {
		v, ok := records[key]
		if !ok {
			continue // listed in the index without a record, or already converted
		}
		delete(records, key)
		var l legacyCampaign
		if json.Unmarshal([]byte(v), &l) != nil {
			continue
		}
		rec, ok := l.record(key)
		if !ok {
			continue
		}
		row := campaignRowOf(rec.Campaign)
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
		devs := make([]campaignDeviceRow, len(rec.Devices))
		for i, d := range rec.Devices {
			devs[i] = campaignDeviceRow{CampaignID: rec.ID, DeviceID: d.DeviceID, Position: i, Serial: d.Serial, Canary: d.Canary,
				Stage: d.Stage, CommandedAt: unix(d.CommandedAt), CommandID: d.CommandID, Failures: d.Failures, Cause: d.Cause}
		}
		if len(devs) > 0 {
			if err := tx.CreateInBatches(devs, 500).Error; err != nil {
				return err
			}
		}
		converted = append(converted, key)
	}
	return tx.Where("key IN ?", converted).Delete(&settingRow{}).Error
}
