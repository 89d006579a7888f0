package web

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// showcaseFamilies are the extra families seedShowcase adds, with how many devices each.
var showcaseFamilies = []struct {
	Family string
	N      int
}{{"camera", 6}, {"lock", 4}, {"thermostat", 5}, {"sensor", 8}}

// showcaseDevices is the number of devices seedShowcase adds.
const showcaseDevices = 6 + 4 + 5 + 8 + 1

// seedShowcase adds to the fixture's seven devices a household the browser test and its
// screenshots show: four more families with expiries spread over four months, a device
// without an agent whose 90-day certificate has 12 days left, a month of renewals with
// failures of several causes, and three campaigns (finished, aborted by a failed canary,
// running).
func seedShowcase(t *testing.T, s *inventory.Store) {
	t.Helper()
	ctx := t.Context()
	n := 0
	byFamily := map[string][]string{}
	for _, fam := range showcaseFamilies {
		for i := range fam.N {
			n++
			id := fmt.Sprintf("%s-%d", fam.Family, i+1)
			byFamily[fam.Family] = append(byFamily[fam.Family], id)
			name := strings.ToUpper(fam.Family[:1]) + fam.Family[1:] + fmt.Sprintf(" %d", i+1)
			d := inventory.Device{ID: id, Name: name, Family: fam.Family, Path: inventory.PathDirect, Mechanism: inventory.MechanismAgent}
			// Expiries from 1 to about 120 days ahead, two of them past.
			left := time.Duration((n*37)%121-2) * day
			requested := t0.Add(left - 30*day)
			// Each device also renewed once before, spreading the successes over the month.
			prev := fmt.Sprintf("%02x01", 0x60+n)
			issue(t, s, d, prev, t0.Add(left-29*day), t0.Add(-time.Duration(n)*day-3*time.Hour), true)
			serial := fmt.Sprintf("%02x02", 0x20+n)
			if requested.Before(t0) {
				issue(t, s, d, serial, t0.Add(left), requested, true)
			}
			if n%3 != 0 {
				if err := s.SetOnline(ctx, id, true, t0.Add(-time.Duration(n)*time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// Failures of the month: by family and cause.
	for i, f := range []struct{ dev, code string }{
		{"camera-2", "policy_denied"}, {"camera-2", "policy_denied"}, {"lock-1", "install_failed"}, {"lock-2", "install_failed"},
		{"lock-1", "weak_key"}, {"sensor-4", "busy"}, {"thermostat-3", "rate_limited"},
	} {
		at := t0.Add(-time.Duration(i*4+1) * day)
		if err := s.RecordFailedAttempt(ctx, inventory.Attempt{RequestID: fmt.Sprintf("fail-%d", i), DeviceID: f.dev, Reason: "window",
			StartedAt: at, FinishedAt: at, ErrorCode: f.code, Latency: 2 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	// A gate without an agent: a 90-day certificate imported by hand, 12 days left.
	gate := inventory.Device{ID: "garden-gate", Name: "Garden gate", Family: "gate", Path: inventory.PathDirect, Mechanism: inventory.MechanismManual}
	err := s.RecordIssuance(ctx, inventory.Issuance{Device: gate,
		Cert: inventory.Certificate{Serial: "0900", NotBefore: t0.Add(-78 * day), NotAfter: t0.Add(12 * day), Issuer: "Hearth Intermediate",
			KeyAlgorithm: "ECDSA-P256", Fingerprint: strings.Repeat("09", 32)},
		Attempt: inventory.Attempt{RequestID: "req-0900", Reason: "import", StartedAt: t0.Add(-78 * day), FinishedAt: t0.Add(-78 * day)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Activate(ctx, "garden-gate", "0900", t0.Add(-78*day)); err != nil {
		t.Fatal(err)
	}

	campaign := func(id, family string, canary int, stages []string, state, cause string) {
		t.Helper()
		rec := inventory.CampaignRecord{Campaign: inventory.Campaign{ID: id, Family: family, Canary: canary, AbortAfter: 0.25,
			Action: "renew", State: inventory.CampaignRunning, Started: t0.Add(-2 * day)}}
		for i, dev := range byFamily[family] {
			st := inventory.CampaignStage{Stage: stages[i%len(stages)]}
			if st.Stage != inventory.StagePending {
				st.CommandedAt = t0.Add(-2*day + time.Duration(i)*time.Minute)
			}
			if st.Stage == inventory.StageFailed {
				st.Cause = "install_failed"
			}
			rec.Devices = append(rec.Devices, inventory.CampaignDevice{DeviceID: dev, Canary: i < canary, CampaignStage: st})
		}
		if err := s.CreateCampaign(ctx, rec, inventory.Event{Time: rec.Started, Kind: protocol.EventCampaignStarted, Message: "campaign " + id}); err != nil {
			t.Fatal(err)
		}
		if state != inventory.CampaignRunning {
			if err := s.EndCampaign(ctx, id, state, t0.Add(-day), cause, inventory.Event{Time: t0.Add(-day), Kind: protocol.EventCampaignFinished,
				Message: "campaign " + id + " " + state}); err != nil {
				t.Fatal(err)
			}
		}
	}
	campaign("spring-cameras", "camera", 2, []string{inventory.StageCommitted}, inventory.CampaignFinished, "")
	campaign("locks-rekey", "lock", 1, []string{inventory.StageFailed, inventory.StagePending, inventory.StagePending, inventory.StagePending}, inventory.CampaignAborted,
		"canary lock-1 failed (install_failed): the other 3 devices were left untouched")
	campaign("sensors-2026", "sensor", 2, []string{inventory.StageCommitted, inventory.StageCommitted, inventory.StageCommitted,
		inventory.StageCommanded, inventory.StageCommanded, inventory.StagePending}, inventory.CampaignRunning, "")
}
