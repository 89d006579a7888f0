package inventory

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"
)

// campaignOf returns a running campaign started at t0 with n pending devices dev-000…,
// the first canaries of them canaries, each device enrolled in s.
func campaignOf(t *testing.T, s *Store, id string, n, canaries int) CampaignRecord {
	t.Helper()
	r := CampaignRecord{Campaign: Campaign{ID: id, Family: "plug", Rate: 60, Canary: canaries, AbortAfter: 0.3,
		Action: "rekey", State: CampaignRunning, Started: t0}}
	for i := range n {
		dev := fmt.Sprintf("dev-%03d", i)
		if err := s.UpsertDevice(t.Context(), Device{ID: dev, Mechanism: MechanismAgent}); err != nil {
			t.Fatalf("UpsertDevice(%s) = %v", dev, err)
		}
		r.Devices = append(r.Devices, CampaignDevice{DeviceID: dev, Serial: fmt.Sprintf("%02x", i+1), Canary: i < canaries,
			CampaignStage: CampaignStage{Stage: StagePending}})
	}
	return r
}

func startEvent(id string) Event {
	return Event{Time: t0, Kind: "campaign.started", Data: map[string]string{"id": id}}
}

func mustCreateCampaign(t *testing.T, s *Store, r CampaignRecord) {
	t.Helper()
	if err := s.CreateCampaign(t.Context(), r, startEvent(r.ID)); err != nil {
		t.Fatalf("CreateCampaign(%s) = %v", r.ID, err)
	}
}

func TestCreateCampaignAndReadBack(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	r := campaignOf(t, s, "rekey-plugs", 5, 2)
	mustCreateCampaign(t, s, r)

	got, err := s.CampaignsInProgress(ctx)
	if err != nil || len(got) != 1 {
		t.Fatalf("CampaignsInProgress() = %d campaigns, %v, want 1", len(got), err)
	}
	if diff := cmp.Diff(r, got[0]); diff != "" {
		t.Errorf("CampaignsInProgress()[0] (-stored +read):\n%s", diff)
	}
	if evs, _ := s.Events(ctx, EventFilter{Kind: "campaign.started"}); len(evs) != 1 {
		t.Errorf("%d campaign.started events, want 1 (appended with the campaign)", len(evs))
	}
	if err := s.CreateCampaign(ctx, r, startEvent(r.ID)); !errors.Is(err, ErrDuplicate) {
		t.Errorf("CreateCampaign(same id) = %v, want %v", err, ErrDuplicate)
	}
	if evs, _ := s.Events(ctx, EventFilter{Kind: "campaign.started"}); len(evs) != 1 {
		t.Errorf("%d campaign.started events after a refused duplicate, want 1", len(evs))
	}
	bad := r
	bad.ID, bad.State = "other", "paused"
	if err := s.CreateCampaign(ctx, bad, startEvent(bad.ID)); !errors.Is(err, ErrInvalid) {
		t.Errorf("CreateCampaign(state paused) = %v, want %v", err, ErrInvalid)
	}
}

func TestCampaignStagesCountsAndEnd(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	mustCreateCampaign(t, s, campaignOf(t, s, "old", 2, 0))
	mustCreateCampaign(t, s, campaignOf(t, s, "new", 4, 1))
	commanded := CampaignStage{Stage: StageCommanded, CommandedAt: t0.Add(time.Minute), CommandID: "cmd-1", Failures: 2}
	err := s.SetCampaignStages(ctx, "new", map[string]CampaignStage{
		"dev-000": {Stage: StageCommitted, CommandedAt: t0, CommandID: "cmd-0"},
		"dev-001": commanded,
		"dev-002": {Stage: StageFailed, CommandedAt: t0, Cause: "no commit before the deadline"},
	})
	if err != nil {
		t.Fatalf("SetCampaignStages() = %v", err)
	}
	// An unknown entry writes nothing, not even the valid ones beside it.
	err = s.SetCampaignStages(ctx, "new", map[string]CampaignStage{"dev-003": commanded, "dev-999": commanded})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("SetCampaignStages(unknown device) = %v, want %v", err, ErrNotFound)
	}
	if err := s.EndCampaign(ctx, "old", CampaignFinished, t0.Add(time.Hour), "", Event{Time: t0.Add(time.Hour), Kind: "campaign.finished"}); err != nil {
		t.Fatalf("EndCampaign(old) = %v", err)
	}
	if err := s.EndCampaign(ctx, "old", CampaignAborted, t0.Add(time.Hour), "again", Event{Time: t0.Add(time.Hour), Kind: "campaign.aborted"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("EndCampaign(not running) = %v, want %v", err, ErrNotFound)
	}

	sums, err := s.Campaigns(ctx)
	if err != nil {
		t.Fatalf("Campaigns() = %v", err)
	}
	type counts struct {
		ID, State                                              string
		Total, Commanded, Pending, InFlight, Committed, Failed int
	}
	var got []counts
	for _, c := range sums {
		got = append(got, counts{c.ID, c.State, c.Total, c.Commanded, c.Pending, c.InFlight, c.Committed, c.Failed})
	}
	want := []counts{
		{"old", CampaignFinished, 2, 0, 2, 0, 0, 0},
		{"new", CampaignRunning, 4, 3, 1, 1, 1, 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Campaigns() counts, oldest first (-want +got):\n%s", diff)
	}

	// A stopped campaign stays in progress while a device is commanded, and no longer.
	ended := Event{Time: t0.Add(2 * time.Hour), Kind: "campaign.aborted"}
	if err := s.EndCampaign(ctx, "new", CampaignAborted, ended.Time, "too many failures", ended); err != nil {
		t.Fatalf("EndCampaign(new) = %v", err)
	}
	inProgress := func() []string {
		t.Helper()
		recs, err := s.CampaignsInProgress(ctx)
		if err != nil {
			t.Fatalf("CampaignsInProgress() = %v", err)
		}
		var ids []string
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
		return ids
	}
	if got := inProgress(); !cmp.Equal(got, []string{"new"}) {
		t.Errorf("in progress with dev-001 still commanded: %v, want [new]", got)
	}
	if err := s.SetCampaignStages(ctx, "new", map[string]CampaignStage{"dev-001": {Stage: StageCommitted, CommandedAt: t0, CommandID: "cmd-1"}}); err != nil {
		t.Fatal(err)
	}
	if got := inProgress(); len(got) != 0 {
		t.Errorf("in progress once nothing is commanded: %v, want none", got)
	}
}

// countReads counts the statements s's read pool runs from now on.
func countReads(t *testing.T, s *Store) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	count := func(*gorm.DB) { n.Add(1) }
	cb := s.r.Callback()
	if err := cb.Query().After("gorm:query").Register(fmt.Sprintf("test:count_query:%p", &n), count); err != nil {
		t.Fatal(err)
	}
	if err := cb.Row().After("gorm:row").Register(fmt.Sprintf("test:count_row:%p", &n), count); err != nil {
		t.Fatal(err)
	}
	return &n
}

func TestCampaignReadsAreConstant(t *testing.T) {
	queries := map[int]int64{}
	for _, n := range []int{3, 600} {
		s := openTest(t)
		mustCreateCampaign(t, s, campaignOf(t, s, "a", n, 1))
		mustCreateCampaign(t, s, campaignOf(t, s, "b", n, 0))
		q := countReads(t, s)
		recs, err := s.CampaignsInProgress(t.Context())
		if err != nil || len(recs) != 2 || len(recs[1].Devices) != n {
			t.Fatalf("CampaignsInProgress() = %d campaigns, %v, want 2 of %d devices", len(recs), err, n)
		}
		if _, err := s.Campaigns(t.Context()); err != nil {
			t.Fatal(err)
		}
		queries[n] = q.Load()
	}
	if queries[3] != queries[600] || queries[3] > 3 {
		t.Errorf("queries to read 2 campaigns and list them: %d with 3 devices each, %d with 600; want the same, at most 3",
			queries[3], queries[600])
	}
}

func TestMigrateCampaignSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v2.db")
	// A database at version 2 with the campaign records an older hub wrote.
	db, err := openPool(t.Context(), path+"?_txlock=immediate", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(t.Context(), db, migrations[:2]); err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{
		"campaigns": `["second","first","listed-only"]`,
		"campaign/first": `{"campaign":{"id":"first","selector":{"family":"plug"},"rate":30,"canary":1,"abort_after":0.25,"action":"rekey"},
			"state":"running","started":"2026-03-01T12:00:00Z","devices":[
			{"id":"plug-2","serial":"0b","canary":true,"stage":"commanded","commanded_at":"2026-03-01T12:01:00Z","command_id":"cmd-1","failures":1},
			{"id":"plug-1","serial":"0a","stage":"pending"}]}`,
		"campaign/second": `{"campaign":{"id":"second","selector":{"all":true},"action":"renew"},"state":"aborted",
			"started":"2026-02-01T00:00:00Z","ended":"2026-02-01T01:00:00Z","cause":"canary plug-1 failed: x","devices":[
			{"id":"plug-1","serial":"09","canary":true,"stage":"failed","commanded_at":"2026-02-01T00:00:10Z","command_id":"cmd-0","cause":"x"}]}`,
		"campaign/broken": `{"campaign":`,
		"crl_number":      "7",
	}
	for k, v := range settings {
		if err := db.Exec("INSERT INTO settings (key, value) VALUES (?, ?)", k, v).Error; err != nil {
			t.Fatal(err)
		}
	}
	sqlDB, _ := db.DB()
	sqlDB.Close()

	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(version 2 with campaign settings) = %v", err)
	}
	defer s.Close()
	sums, err := s.Campaigns(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range sums {
		ids = append(ids, c.ID)
	}
	if !cmp.Equal(ids, []string{"second", "first"}) {
		t.Fatalf("campaigns after the upgrade: %v, want [second first] (the index's order)", ids)
	}
	if c := sums[0]; c.State != CampaignAborted || !c.All || c.Cause != "canary plug-1 failed: x" || c.Failed != 1 || c.Commanded != 1 ||
		!c.Ended.Equal(time.Date(2026, 2, 1, 1, 0, 0, 0, time.UTC)) {
		t.Errorf("second after the upgrade: %+v", c)
	}
	recs, err := s.CampaignsInProgress(t.Context())
	if err != nil || len(recs) != 1 {
		t.Fatalf("CampaignsInProgress() = %v, %v, want first only", recs, err)
	}
	want := CampaignRecord{Campaign: Campaign{ID: "first", Family: "plug", Rate: 30, Canary: 1, AbortAfter: 0.25, Action: "rekey",
		State: CampaignRunning, Started: t0}, Devices: []CampaignDevice{
		{DeviceID: "plug-2", Serial: "0b", Canary: true, CampaignStage: CampaignStage{Stage: StageCommanded,
			CommandedAt: t0.Add(time.Minute), CommandID: "cmd-1", Failures: 1}},
		{DeviceID: "plug-1", Serial: "0a", CampaignStage: CampaignStage{Stage: StagePending}},
	}}
	if diff := cmp.Diff(want, recs[0]); diff != "" {
		t.Errorf("first after the upgrade (-want +got):\n%s", diff)
	}
	for key, kept := range map[string]bool{"campaigns": false, "campaign/first": false, "campaign/second": false,
		"campaign/broken": true, "crl_number": true} {
		_, err := s.Setting(t.Context(), key)
		if got := err == nil; got != kept {
			t.Errorf("setting %q kept after the upgrade: %v, want %v (%v)", key, got, kept, err)
		}
	}
}
