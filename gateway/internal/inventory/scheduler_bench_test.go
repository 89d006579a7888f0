package inventory

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkSchedulerWrites is what the renewal scheduler writes for 100 devices of a campaign
// renewing: their commands (RecordCommands: renewal state, stored command, campaign entry,
// event, each in its savepoint), their status once committed (SetRenewals) and their
// campaign entries' stage (SetCampaignStages). ns/op and cpu-µs/op (the process's user +
// system time) are per 100 devices.
func BenchmarkSchedulerWrites(b *testing.B) {
	s := openTest(b)
	ctx := b.Context()
	const devices, batch = 1000, 100
	camp := CampaignRecord{Campaign: Campaign{ID: "c", Family: "plug", Rate: 60, Action: "rekey", State: CampaignRunning, Started: t0}}
	for i := range devices {
		id := fmt.Sprintf("dev-%04d", i)
		if err := s.UpsertDevice(ctx, Device{ID: id, Mechanism: MechanismAgent}); err != nil {
			b.Fatal(err)
		}
		camp.Devices = append(camp.Devices, CampaignDevice{DeviceID: id, Serial: fmt.Sprintf("%04x", i+1),
			CampaignStage: CampaignStage{Stage: StagePending}})
	}
	if err := s.CreateCampaign(ctx, camp, Event{Time: t0, Kind: "campaign.started"}); err != nil {
		b.Fatal(err)
	}
	recs := make([]CommandRecord, batch)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	i := 0
	for b.Loop() {
		now := t0.Add(time.Duration(i) * time.Second)
		idle := map[string]RenewalStatus{}
		stages := map[string]CampaignStage{}
		for j := range recs {
			id := fmt.Sprintf("dev-%04d", (i*batch+j)%devices)
			cmd := Command{ID: fmt.Sprintf("cmd-%d-%d", i, j), Action: "renew", Reason: "campaign", Deadline: now.Add(time.Hour)}
			recs[j] = CommandRecord{DeviceID: id, Renewal: RenewalStatus{State: RenewalCommanded, NextAttemptAt: cmd.Deadline},
				Command: cmd, Campaign: "c", Stage: CampaignStage{Stage: StageCommanded, CommandedAt: now, CommandID: cmd.ID},
				Event: Event{Time: now, Kind: "renewal.commanded", DeviceID: id}}
			idle[id] = RenewalStatus{State: RenewalIdle, WindowEnd: now.Add(30 * 24 * time.Hour)}
			stages[id] = CampaignStage{Stage: StageCommitted, CommandedAt: now, CommandID: cmd.ID}
		}
		for j, err := range s.RecordCommands(ctx, recs) {
			if err != nil {
				b.Fatalf("RecordCommands()[%d] = %v", j, err)
			}
		}
		if missing, err := s.SetRenewals(ctx, idle); err != nil || len(missing) > 0 {
			b.Fatalf("SetRenewals() = %v, %v", missing, err)
		}
		if err := s.SetCampaignStages(ctx, "c", stages); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Microsecond)/float64(i), "cpu-µs/op")
}
