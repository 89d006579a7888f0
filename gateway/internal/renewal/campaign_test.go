package renewal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// progressOf returns the counts of a campaign status.
func progressOf(st protocol.CampaignStatus) map[string]int {
	return map[string]int{"total": st.Total, "commanded": st.Commanded, "in_flight": st.InFlight,
		"committed": st.Committed, "failed": st.Failed, "pending": st.Pending}
}

func TestCampaignCanariesThenAbortAtThreshold(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, t0.Add(day), Config{})
	serials := map[string]string{}
	for i := range 10 {
		id := fmt.Sprintf("acme-%02d", i)
		serials[id] = f.enroll(spec{id: id, family: "acme"}, t0, 30*day).Serial
	}
	f.enroll(spec{id: "other-1", family: "other"}, t0, 30*day)
	f.enroll(spec{id: "meter-1", family: "acme", manual: true}, t0, 30*day)
	// The agents of acme-03, 04 and 05 fail their renewal as soon as they are commanded.
	broken := map[string]bool{"acme-03": true, "acme-04": true, "acme-05": true}
	reported := map[string]bool{}

	st, err := f.s.StartCampaign(ctx, protocol.Campaign{ID: "rekey-acme", Selector: protocol.CampaignSelector{Family: "acme"}, Rate: 60,
		Canary: 2, AbortAfter: 0.3, Action: protocol.ActionRekey})
	if err != nil {
		t.Fatalf("StartCampaign() = %v", err)
	}
	if st.Total != 10 || st.Pending != 10 || st.State != protocol.CampaignRunning {
		t.Fatalf("StartCampaign() = %+v, want 10 pending devices (agents of family acme)", st)
	}
	step := func() Report { // one pass a second: the campaign's rate allows one command each
		rep := f.reconcile()
		for _, id := range f.cmd.ids() {
			if broken[id] && !reported[id] {
				reported[id] = true
				f.s.Failed(id, string(protocol.CodePolicyDenied), "")
			}
		}
		f.clock.Add(time.Second)
		return rep
	}
	step()
	step()
	for range 5 {
		step()
	}
	if got, want := f.cmd.ids(), []string{"acme-00", "acme-01"}; !slices.Equal(got, want) {
		t.Fatalf("before the canaries commit: commands %v, want only the canaries %v", got, want)
	}
	for _, c := range f.cmd.commands() {
		if c.Action != protocol.ActionRekey {
			t.Errorf("command to %s: action %q, want rekey", c.ID, c.Action)
		}
	}
	for _, id := range []string{"acme-00", "acme-01"} {
		f.renew(id, f.clock.Now(), 30*day)
		f.s.Committed(id)
	}
	for range 10 {
		step()
	}
	// acme-02 is commanded; 03, 04 and 05 fail: 3 of 10 reach the 0.3 threshold.
	if got, want := f.cmd.ids(), []string{"acme-00", "acme-01", "acme-02", "acme-03", "acme-04", "acme-05"}; !slices.Equal(got, want) {
		t.Errorf("commands %v, want %v", got, want)
	}
	all, err := f.s.Campaigns(ctx)
	if err != nil || len(all) != 1 {
		t.Fatalf("Campaigns() = %v, %v, want one campaign", all, err)
	}
	st = all[0]
	if st.State != protocol.CampaignAborted || st.Cause == "" {
		t.Errorf("campaign state %q, cause %q, want aborted with a cause", st.State, st.Cause)
	}
	want := map[string]int{"total": 10, "commanded": 6, "in_flight": 1, "committed": 2, "failed": 3, "pending": 4}
	if diff := cmp.Diff(want, progressOf(st)); diff != "" {
		t.Errorf("campaign progress (-want +got):\n%s", diff)
	}
	for i := 6; i < 10; i++ {
		id := fmt.Sprintf("acme-%02d", i)
		c, err := f.store.ActiveCertificate(ctx, id)
		if st := f.status(id); err != nil || c.Serial != serials[id] || st.State != inventory.RenewalIdle {
			t.Errorf("%s after the abort: serial %s (was %s), state %q, want untouched and idle", id, c.Serial, serials[id], st.State)
		}
	}
	if n := len(f.events(protocol.EventCampaignAborted)); n != 1 {
		t.Errorf("%d %s events, want 1", n, protocol.EventCampaignAborted)
	}

	// After a restart nothing more is commanded for the campaign; the device in flight still
	// counts when it commits.
	f.restart()
	f.renew("acme-02", f.clock.Now(), 30*day)
	for range 5 {
		step()
	}
	if n := len(f.cmd.commands()); n != 6 {
		t.Errorf("after a restart: %d commands, want still 6", n)
	}
	all, _ = f.s.Campaigns(ctx)
	if all[0].Committed != 3 || all[0].InFlight != 0 || all[0].State != protocol.CampaignAborted {
		t.Errorf("after acme-02 committed: %+v, want 3 committed, none in flight, still aborted", all[0])
	}
}

func TestCampaignCanaryFailureAborts(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, t0.Add(day), Config{})
	for i := range 4 {
		f.enroll(spec{id: fmt.Sprintf("cam-%d", i), family: "cam"}, t0, 30*day)
	}
	if _, err := f.s.StartCampaign(ctx, protocol.Campaign{ID: "c1", Selector: protocol.CampaignSelector{All: true}, Canary: 1}); err != nil {
		t.Fatalf("StartCampaign() = %v", err)
	}
	f.reconcile()
	f.clock.Add(10 * time.Minute) // the canary's deadline passes without a commit
	f.reconcile()
	f.clock.Add(time.Hour)
	f.reconcile()
	all, _ := f.s.Campaigns(ctx)
	if all[0].State != protocol.CampaignAborted || all[0].Failed != 1 || all[0].Pending != 3 {
		t.Errorf("after the canary's deadline: %+v, want aborted, 1 failed, 3 pending", all[0])
	}
	if got := f.cmd.ids(); !slices.Equal(got, []string{"cam-0", "cam-0"}) {
		// The canary itself is retried like any due device; the others are never touched.
		t.Errorf("commands %v, want the canary only (commanded, then retried after its backoff)", got)
	}
}

func TestCampaignFinishes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, t0.Add(day), Config{})
	for i := range 3 {
		f.enroll(spec{id: fmt.Sprintf("plug-%d", i), family: "plug"}, t0, 30*day)
	}
	if _, err := f.s.StartCampaign(ctx, protocol.Campaign{ID: "renew-all", Selector: protocol.CampaignSelector{Class: "default"}}); err != nil {
		t.Fatalf("StartCampaign() = %v", err)
	}
	if rep := f.reconcile(); rep.Commanded != 3 || rep.Campaigns != 1 {
		t.Fatalf("first pass: %+v, want 3 commanded (no campaign rate) and 1 campaign running", rep)
	}
	for _, id := range f.cmd.ids() {
		f.renew(id, f.clock.Now(), 30*day)
		f.s.Committed(id)
	}
	if rep := f.reconcile(); rep.Campaigns != 0 || rep.Renewed != 3 {
		t.Errorf("after the commits: %+v, want no campaign running, 3 renewed", rep)
	}
	all, _ := f.s.Campaigns(ctx)
	if all[0].State != protocol.CampaignFinished || all[0].Committed != 3 {
		t.Errorf("campaign = %+v, want finished with 3 committed", all[0])
	}
	if n := f.notes.kinds()[protocol.EventCampaignFinished]; n != 1 {
		t.Errorf("%d %s notifications, want 1", n, protocol.EventCampaignFinished)
	}
}

func TestStartCampaignRefuses(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, t0.Add(day), Config{})
	f.enroll(spec{id: "plug-1", family: "plug"}, t0, 30*day)
	if _, err := f.s.StartCampaign(ctx, protocol.Campaign{ID: "taken", Selector: protocol.CampaignSelector{All: true}}); err != nil {
		t.Fatalf("StartCampaign(taken) = %v", err)
	}
	tests := []struct {
		name string
		c    protocol.Campaign
		want error
	}{
		{"empty id", protocol.Campaign{Selector: protocol.CampaignSelector{All: true}}, ErrInvalidCampaign},
		{"id with a slash", protocol.Campaign{ID: "a/b", Selector: protocol.CampaignSelector{All: true}}, ErrInvalidCampaign},
		{"no selector", protocol.Campaign{ID: "x"}, ErrInvalidCampaign},
		{"all and family", protocol.Campaign{ID: "x", Selector: protocol.CampaignSelector{All: true, Family: "plug"}}, ErrInvalidCampaign},
		{"negative rate", protocol.Campaign{ID: "x", Selector: protocol.CampaignSelector{All: true}, Rate: -1}, ErrInvalidCampaign},
		{"abort after 2", protocol.Campaign{ID: "x", Selector: protocol.CampaignSelector{All: true}, AbortAfter: 2}, ErrInvalidCampaign},
		{"report action", protocol.Campaign{ID: "x", Selector: protocol.CampaignSelector{All: true}, Action: protocol.ActionReport}, ErrInvalidCampaign},
		{"no device", protocol.Campaign{ID: "x", Selector: protocol.CampaignSelector{Family: "none"}}, ErrInvalidCampaign},
		{"id taken", protocol.Campaign{ID: "taken", Selector: protocol.CampaignSelector{All: true}}, ErrCampaignExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := f.s.StartCampaign(ctx, tt.c); !errors.Is(err, tt.want) {
				t.Errorf("StartCampaign(%+v) = %v, want %v", tt.c, err, tt.want)
			}
		})
	}
	if all, err := f.s.Campaigns(ctx); err != nil || len(all) != 1 {
		t.Errorf("Campaigns() = %d campaigns, %v, want only the one started", len(all), err)
	}
}
