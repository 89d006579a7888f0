package inventory

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"
)

// countEntryReads counts the queries of s's read pool that read campaign entries.
func countEntryReads(t *testing.T, s *Store) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	err := s.r.Callback().Query().After("gorm:query").Register("test:count_entries", func(db *gorm.DB) {
		if strings.Contains(db.Statement.SQL.String(), "campaign_devices") && !strings.Contains(db.Statement.SQL.String(), "EXISTS") {
			n.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return &n
}

// TestCampaignsInProgressReadsEntriesOnce checks that the entries of a campaign are read from
// the database once, that the Store's own writes keep what it returns equal to what the
// database holds (a second Store on the same file reads them afresh), and that the records
// returned are copies.
func TestCampaignsInProgressReadsEntriesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := WithActor(t.Context(), "renewal")
	reads := countEntryReads(t, s)
	inProgress := func() []CampaignRecord {
		t.Helper()
		recs, err := s.CampaignsInProgress(ctx)
		if err != nil {
			t.Fatalf("CampaignsInProgress() = %v", err)
		}
		return recs
	}
	fresh := func() []CampaignRecord {
		t.Helper()
		o, err := Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		recs, err := o.CampaignsInProgress(ctx)
		if err != nil {
			t.Fatalf("CampaignsInProgress() on a second Store = %v", err)
		}
		return recs
	}
	same := func(step string) {
		t.Helper()
		if diff := cmp.Diff(fresh(), inProgress()); diff != "" {
			t.Errorf("%s: CampaignsInProgress() (-database +cached):\n%s", step, diff)
		}
	}

	mustCreateCampaign(t, s, campaignOf(t, s, "c", 6, 1))
	same("created")
	if n := reads.Load(); n != 0 {
		t.Errorf("entry reads after CreateCampaign = %d, want 0 (the created campaign is cached)", n)
	}

	// Sub-second times are stored to the second; the cache holds what the database does.
	at := t0.Add(1500 * time.Millisecond)
	if err := s.SetCampaignStages(ctx, "c", map[string]CampaignStage{
		"dev-000": {Stage: StageCommitted, CommandedAt: at, CommandID: "cmd-0"},
		"dev-002": {Stage: StageFailed, CommandedAt: at, Cause: "no commit before the deadline"},
	}); err != nil {
		t.Fatalf("SetCampaignStages() = %v", err)
	}
	same("stages set")
	if errs := s.RecordCommands(ctx, []CommandRecord{commandOf("dev-001", "cmd-1", at), commandOf("dev-003", "cmd-3", at)}); errs[0] != nil || errs[1] != nil {
		t.Fatalf("RecordCommands() = %v", errs)
	}
	same("commands recorded")
	if n := reads.Load(); n != 0 {
		t.Errorf("entry reads after %d passes' worth of writes and reads = %d, want 0", 3, n)
	}

	// A caller changing what it got changes nothing the next read returns.
	recs := inProgress()
	recs[0].Devices[4].Stage = StageFailed
	if got := inProgress()[0].Devices[4].Stage; got != StagePending {
		t.Errorf("entry 4 after the caller changed its copy = %q, want %q", got, StagePending)
	}

	// A write that fails drops the campaign: the next read loads it again, once.
	if err := s.SetCampaignStages(ctx, "c", map[string]CampaignStage{"dev-004": {Stage: StageCommanded}, "dev-999": {Stage: StageCommanded}}); err == nil {
		t.Fatal("SetCampaignStages(unknown device) = nil, want an error")
	}
	bad := commandOf("no-such-device", "cmd-x", at)
	if errs := s.RecordCommands(ctx, []CommandRecord{bad}); errs[0] == nil {
		t.Fatal("RecordCommands(unknown device) = nil, want an error")
	}
	same("after failed writes")
	same("again")
	if n := reads.Load(); n != 1 {
		t.Errorf("entry reads after failed writes and two reads = %d, want 1", n)
	}

	// A second campaign is read alone; an ended campaign with nothing in flight is dropped.
	mustCreateCampaign(t, s, campaignOf(t, s, "d", 3, 0))
	if err := s.EndCampaign(ctx, "d", CampaignAborted, t0, "stopped", Event{Time: t0, Kind: "campaign.aborted"}); err != nil {
		t.Fatal(err)
	}
	same("second campaign ended")
	if got := len(inProgress()); got != 1 {
		t.Errorf("campaigns in progress = %d, want 1 (d ended with nothing in flight)", got)
	}
	if n := len(s.camps.entries); n != 1 {
		t.Errorf("campaigns cached = %d, want 1", n)
	}
}

// BenchmarkCampaignsInProgress is the read a renewal pass makes while a campaign of 10,000
// devices runs.
func BenchmarkCampaignsInProgress(b *testing.B) {
	s := openTest(b)
	r := CampaignRecord{Campaign: Campaign{ID: "big", Family: "plug", State: CampaignRunning, Started: t0}}
	for i := range 10000 {
		r.Devices = append(r.Devices, CampaignDevice{DeviceID: fmt.Sprintf("dev-%05d", i), Serial: "01",
			CampaignStage: CampaignStage{Stage: StagePending}})
	}
	if err := s.CreateCampaign(b.Context(), r, startEvent(r.ID)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		recs, err := s.CampaignsInProgress(b.Context())
		if err != nil || len(recs[0].Devices) != 10000 {
			b.Fatalf("CampaignsInProgress() = %d, %v", len(recs), err)
		}
	}
}
