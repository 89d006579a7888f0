package inventory

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// commandOf is the record of command id to device dev, which campaign "c" holds, at at.
func commandOf(dev, id string, at time.Time) CommandRecord {
	deadline := at.Add(10 * time.Minute)
	return CommandRecord{
		DeviceID: dev,
		Renewal:  RenewalStatus{State: RenewalCommanded, Failures: 1, NextAttemptAt: deadline, WindowEnd: at},
		Command:  Command{ID: id, Action: "rekey", Reason: "campaign c: rekey", Deadline: deadline},
		Campaign: "c",
		Stage:    CampaignStage{Stage: StageCommanded, CommandedAt: at, CommandID: id, Failures: 1},
		Event: Event{Time: at, Kind: "renewal.commanded", DeviceID: dev,
			Data: map[string]string{"command_id": id, "campaign": "c"}},
	}
}

// commandState describes what the store holds of device dev's command: its renewal state,
// its stored command, its entry in campaign "c" and its renewal.commanded events.
func commandState(t *testing.T, s *Store, dev string) string {
	t.Helper()
	d, err := s.Device(t.Context(), dev)
	if err != nil {
		t.Fatalf("Device(%s) = %v", dev, err)
	}
	var stage []campaignDeviceRow
	if err := s.w.Where("campaign_id = ? AND device_id = ?", "c", dev).Find(&stage).Error; err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(t.Context(), EventFilter{DeviceID: dev, Kind: "renewal.commanded"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.Data["command_id"])
	}
	return fmt.Sprintf("renewal %s until %d; command %q until %d; stage %v; events %v", d.Renewal.State, unix(d.Renewal.NextAttemptAt),
		d.Command.ID, unix(d.Command.Deadline), stage, ids)
}

func TestRecordCommandWritesEverything(t *testing.T) {
	s := openTest(t)
	ctx := WithActor(t.Context(), "renewal")
	mustCreateCampaign(t, s, campaignOf(t, s, "c", 2, 0))
	r := commandOf("dev-001", "cmd-7", t0)
	if err := s.RecordCommand(ctx, r); err != nil {
		t.Fatalf("RecordCommand() = %v", err)
	}
	d, _ := s.Device(ctx, "dev-001")
	if d.Renewal.State != RenewalCommanded || !d.Renewal.NextAttemptAt.Equal(r.Renewal.NextAttemptAt) || d.Renewal.Failures != 1 {
		t.Errorf("renewal = %+v, want %+v", d.Renewal, r.Renewal)
	}
	if d.Command != r.Command {
		t.Errorf("stored command = %+v, want %+v", d.Command, r.Command)
	}
	if l, _ := s.Lifecycle(ctx, "dev-001"); l.Command != r.Command {
		t.Errorf("Lifecycle().Command = %+v, want %+v (what the state machine sends after a restart)", l.Command, r.Command)
	}
	recs, _ := s.CampaignsInProgress(ctx)
	if got := recs[0].Devices[1].CampaignStage; got != r.Stage {
		t.Errorf("campaign entry = %+v, want %+v", got, r.Stage)
	}
	if got := recs[0].Devices[0].Stage; got != StagePending {
		t.Errorf("the other entry's stage = %q, want untouched pending", got)
	}
	evs, _ := s.Events(ctx, EventFilter{Kind: "renewal.commanded"})
	if len(evs) != 1 || evs[0].Actor != "renewal" || evs[0].Data["command_id"] != "cmd-7" {
		t.Errorf("renewal.commanded events = %+v, want one by renewal for cmd-7", evs)
	}
	// Without a campaign, no entry is needed.
	r = commandOf("dev-000", "cmd-8", t0)
	r.Campaign = ""
	if err := s.RecordCommand(ctx, r); err != nil {
		t.Fatalf("RecordCommand(no campaign) = %v", err)
	}
	if got := commandState(t, s, "dev-000"); !strings.Contains(got, `command "cmd-8"`) || !strings.Contains(got, "stage [{c dev-000 0 01 false pending") {
		t.Errorf("after a command outside the campaign: %s, want the command stored and the entry untouched", got)
	}
}

// failOn makes the next writes to table on s's writer connection fail, until the returned
// func is called. The trigger is TEMP: it lives on the writer connection only. (On
// PostgreSQL it is an ordinary trigger, in the test's own database.)
func failOn(t *testing.T, s *Store, table, op string) func() {
	t.Helper()
	name := "test_fail_" + table
	if onPostgres() {
		for _, q := range []string{
			`CREATE OR REPLACE FUNCTION test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN RAISE EXCEPTION 'injected failure'; END $$`,
			fmt.Sprintf("CREATE TRIGGER %s BEFORE %s ON %s FOR EACH ROW EXECUTE FUNCTION test_fail()", name, op, table),
		} {
			if err := s.w.Exec(q).Error; err != nil {
				t.Fatal(err)
			}
		}
		return func() {
			if err := s.w.Exec(fmt.Sprintf("DROP TRIGGER %s ON %s", name, table)).Error; err != nil {
				t.Fatal(err)
			}
		}
	}
	err := s.w.Exec(fmt.Sprintf("CREATE TEMP TRIGGER %s BEFORE %s ON %s BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
		name, op, table)).Error
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := s.w.Exec("DROP TRIGGER temp." + name).Error; err != nil {
			t.Fatal(err)
		}
	}
}

func TestRecordCommandFailureWritesNothing(t *testing.T) {
	s := openTest(t)
	mustCreateCampaign(t, s, campaignOf(t, s, "c", 2, 0))
	tests := []struct {
		name   string
		record func() CommandRecord
		inject func() func() // a failure inside the transaction; nil for none
		want   error
	}{
		{"device row fails", func() CommandRecord { return commandOf("dev-001", "cmd-1", t0) },
			func() func() { return failOn(t, s, "devices", "UPDATE") }, nil},
		{"campaign entry fails after the device row", func() CommandRecord { return commandOf("dev-001", "cmd-1", t0) },
			func() func() { return failOn(t, s, "campaign_devices", "UPDATE") }, nil},
		{"event fails after the device row and the entry", func() CommandRecord { return commandOf("dev-001", "cmd-1", t0) },
			func() func() { return failOn(t, s, "events", "INSERT") }, nil},
		{"campaign does not hold the device", func() CommandRecord {
			r := commandOf("dev-001", "cmd-1", t0)
			r.Campaign = "other"
			return r
		}, nil, ErrNotFound},
		{"unknown device", func() CommandRecord { return commandOf("dev-404", "cmd-1", t0) }, nil, ErrNotFound},
		{"no command id", func() CommandRecord {
			r := commandOf("dev-001", "", t0)
			return r
		}, nil, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, beforeRows := commandState(t, s, "dev-001"), snapshot(t, s)
			if tt.inject != nil {
				defer tt.inject()()
			}
			err := s.RecordCommand(t.Context(), tt.record())
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("RecordCommand() = %v, want an error (%v)", err, tt.want)
			}
			if after := commandState(t, s, "dev-001"); after != before {
				t.Errorf("after a failed RecordCommand:\n%s\nwant nothing written:\n%s", after, before)
			}
			if after := snapshot(t, s); after != beforeRows {
				t.Errorf("rows after a failed RecordCommand:\n%s\nwant\n%s", after, beforeRows)
			}
		})
	}
	if err := s.VerifyAudit(t.Context()); err != nil {
		t.Errorf("VerifyAudit() = %v", err)
	}
}

const commandHelperEnv = "HEARTH_INVENTORY_COMMAND_CRASH_DB"

// crashDevices is the number of campaign devices of TestRecordCommandCrash.
const crashDevices = 500

// TestCommandHelperProcess is not a test: run by TestRecordCommandCrash as a child process,
// it commands every device of campaign "c" in turn and prints each device once
// RecordCommand has returned.
func TestCommandHelperProcess(t *testing.T) {
	path := os.Getenv(commandHelperEnv)
	if path == "" {
		t.Skip("helper process for TestRecordCommandCrash")
	}
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := range crashDevices {
		dev := fmt.Sprintf("dev-%03d", i)
		if err := s.RecordCommand(ctx, commandOf(dev, "cmd-"+dev, t0.Add(time.Duration(i)*time.Second))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(dev) // os.Stdout is unbuffered: the line leaves once the commit returned
	}
	os.Exit(0)
}

// TestRecordCommandCrash SIGKILLs a process recording commands and checks that, for every
// device, the renewal state, the stored command, the campaign entry and the event are all
// there or all absent, and all there for every command the process saw committed.
func TestRecordCommandCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	mustCreateCampaign(t, s, campaignOf(t, s, "c", crashDevices, 0))
	s.Close()

	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCommandHelperProcess$")
	cmd.Env = append(os.Environ(), commandHelperEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	committed := map[string]bool{}
	sc := bufio.NewScanner(out)
	for len(committed) < 100 && sc.Scan() {
		committed[sc.Text()] = true
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no deferred code, no Close
		t.Fatal(err)
	}
	for sc.Scan() { // lines already in the pipe were committed too
		committed[sc.Text()] = true
	}
	cmd.Wait()
	if len(committed) < 100 {
		t.Fatalf("child printed %d devices before ending, want at least 100", len(committed))
	}

	s, err = Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(after crash) = %v", err)
	}
	defer s.Close()
	recs, err := s.CampaignsInProgress(t.Context())
	if err != nil || len(recs) != 1 {
		t.Fatalf("CampaignsInProgress(after crash) = %d campaigns, %v", len(recs), err)
	}
	devs, err := s.Devices(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(t.Context(), EventFilter{Kind: "renewal.commanded"})
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]string{}
	for _, e := range evs {
		events[e.DeviceID] = e.Data["command_id"]
	}
	stages := map[string]CampaignStage{}
	for _, d := range recs[0].Devices {
		stages[d.DeviceID] = d.CampaignStage
	}
	done := 0
	for _, d := range devs {
		want := "cmd-" + d.ID
		parts := map[string]bool{
			"renewal commanded": d.Renewal.State == RenewalCommanded,
			"command stored":    d.Command.ID == want,
			"entry commanded":   stages[d.ID].Stage == StageCommanded && stages[d.ID].CommandID == want && !stages[d.ID].CommandedAt.IsZero(),
			"event":             events[d.ID] == want,
		}
		n := 0
		for _, ok := range parts {
			if ok {
				n++
			}
		}
		if n != 0 && n != len(parts) {
			t.Errorf("%s after the crash: %v, want all or nothing", d.ID, parts)
		}
		if committed[d.ID] && n != len(parts) {
			t.Errorf("%s printed as committed: %v, want all written", d.ID, parts)
		}
		if n == len(parts) {
			done++
		}
	}
	if err := s.VerifyAudit(t.Context()); err != nil {
		t.Errorf("VerifyAudit(after crash) = %v", err)
	}
	t.Logf("%d commands survived SIGKILL whole (%d seen committed), none half-written", done, len(committed))
}
