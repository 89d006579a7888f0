package renewal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// rawDB opens a second connection to f's database file, beside the store's, with the SQLite
// driver the inventory registers: the tests below plant triggers in the real schema to fail
// a write inside a transaction, or to count the rows a pass writes.
func (f *fixture) rawDB() *sql.DB {
	f.t.Helper()
	db, err := sql.Open("sqlite3", f.path+"?_busy_timeout=5000")
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { db.Close() })
	return db
}

func (f *fixture) exec(db *sql.DB, stmts ...string) {
	f.t.Helper()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			f.t.Fatalf("%s: %v", q, err)
		}
	}
}

// recorded describes what the inventory holds of device id's command in campaign camp: its
// renewal state, its stored command, its campaign entry and its renewal.commanded events.
type recorded struct {
	State     string
	Command   inventory.Command
	Stage     inventory.CampaignStage
	EventCmds []string
}

func (f *fixture) recorded(camp, id string) recorded {
	f.t.Helper()
	ctx := context.Background()
	d, err := f.store.Device(ctx, id)
	if err != nil {
		f.t.Fatalf("Device(%s) = %v", id, err)
	}
	out := recorded{State: d.Renewal.State, Command: d.Command}
	recs, err := f.store.CampaignsInProgress(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, r := range recs {
		for _, e := range r.Devices {
			if r.ID == camp && e.DeviceID == id {
				out.Stage = e.CampaignStage
			}
		}
	}
	for _, e := range f.events(protocol.EventRenewalCommanded) {
		if e.DeviceID == id {
			out.EventCmds = append(out.EventCmds, e.Data["command_id"])
		}
	}
	return out
}

// TestCampaignCommandIsRecordedWhole fails the last write of the command's transaction (its
// audit event) and checks that the campaign entry, the renewal state and the stored command
// stay as they were and nothing is queued; once the write succeeds, all four agree.
func TestCampaignCommandIsRecordedWhole(t *testing.T) {
	f := newFixture(t, t0.Add(day), Config{})
	f.enroll(spec{id: "plug-1", family: "plug"}, t0, 30*day)
	if _, err := f.s.StartCampaign(context.Background(), protocol.Campaign{ID: "c", Selector: protocol.CampaignSelector{All: true}}); err != nil {
		t.Fatalf("StartCampaign() = %v", err)
	}
	db := f.rawDB()
	f.exec(db, `CREATE TRIGGER test_fail_command BEFORE INSERT ON events WHEN NEW.kind = 'renewal.commanded'
		BEGIN SELECT RAISE(ABORT, 'injected failure'); END`)
	before := f.recorded("c", "plug-1")
	if _, err := f.s.Reconcile(context.Background()); err == nil {
		t.Fatal("Reconcile() with the command's event failing = nil, want an error")
	}
	if got := f.recorded("c", "plug-1"); !cmpRecorded(got, before) {
		t.Errorf("after a failed command: %+v, want nothing written: %+v", got, before)
	}
	if before.State == inventory.RenewalCommanded || before.Stage.Stage != inventory.StagePending || before.Command.ID != "" {
		t.Errorf("before the command: %+v, want not commanded, the entry pending, no stored command", before)
	}
	if n := len(f.cmd.commands()); n != 0 {
		t.Errorf("%d commands queued although none was stored, want 0", n)
	}

	f.exec(db, `DROP TRIGGER test_fail_command`)
	f.clock.Add(time.Second)
	if rep := f.reconcile(); rep.Commanded != 1 {
		t.Fatalf("once the store works: %+v, want 1 command", rep)
	}
	got, q := f.recorded("c", "plug-1"), f.cmd.commands()
	if len(q) != 1 {
		t.Fatalf("%d commands queued, want 1", len(q))
	}
	id := q[0].CommandID
	if got.State != inventory.RenewalCommanded || got.Command.ID != id || !got.Command.Deadline.Equal(f.status("plug-1").NextAttemptAt) ||
		got.Stage.Stage != inventory.StageCommanded || got.Stage.CommandID != id || !got.Stage.CommandedAt.Equal(f.clock.Now()) ||
		len(got.EventCmds) != 1 || got.EventCmds[0] != id {
		t.Errorf("after the command %s: %+v, want the renewal commanded, the stored command, the entry and the event to name it", id, got)
	}
}

func cmpRecorded(a, b recorded) bool {
	return a.State == b.State && a.Command == b.Command && a.Stage == b.Stage && fmt.Sprint(a.EventCmds) == fmt.Sprint(b.EventCmds)
}

// TestQueueFailureKeepsTheStoredCommand: a command the state machine does not take up is
// still stored (it is sent on the device's next subscription, after a restart too), so the
// device stays commanded until the deadline and is not commanded twice.
func TestQueueFailureKeepsTheStoredCommand(t *testing.T) {
	plug := spec{id: "plug-1"}
	f := newFixture(t, t0, Config{})
	c := f.enroll(plug, t0, 30*day)
	f.clock.Set(window(plug, c).End)
	f.cmd.fail = func(string) error { return errBrokerDown }
	rep, err := f.s.Reconcile(context.Background())
	if !errors.Is(err, errBrokerDown) || rep.Commanded != 1 {
		t.Fatalf("Reconcile() with Queue failing = %+v, %v; want 1 command and the error", rep, err)
	}
	got := f.recorded("", plug.id)
	if got.State != inventory.RenewalCommanded || got.Command.ID == "" || len(got.EventCmds) != 1 || got.EventCmds[0] != got.Command.ID {
		t.Errorf("after Queue failed: %+v, want commanded with the command stored and its event", got)
	}
	f.cmd.fail = nil
	f.restart()
	f.clock.Add(time.Minute)
	if rep := f.reconcile(); rep.Commanded != 0 || rep.InFlight != 1 || rep.Failed != 0 {
		t.Errorf("a minute later, after a restart: %+v, want the stored command in flight, nothing sent again", rep)
	}
}

// writes counts the rows written to the campaign tables and the settings, by triggers.
type writes struct {
	f  *fixture
	db *sql.DB
}

func (f *fixture) countWrites() *writes {
	db := f.rawDB()
	f.exec(db, `CREATE TABLE test_writes (what TEXT PRIMARY KEY, n INTEGER NOT NULL)`)
	for _, t := range []struct{ op, table string }{
		{"INSERT", "campaign_devices"}, {"UPDATE", "campaign_devices"}, {"INSERT", "campaigns"}, {"UPDATE", "campaigns"},
		{"INSERT", "settings"}, {"UPDATE", "settings"},
	} {
		what := t.op + " " + t.table
		f.exec(db, fmt.Sprintf(`CREATE TRIGGER "test_count_%s_%s" AFTER %s ON %s BEGIN
			INSERT INTO test_writes (what, n) VALUES ('%s', 1) ON CONFLICT (what) DO UPDATE SET n = n + 1; END`,
			t.op, t.table, t.op, t.table, what))
	}
	return &writes{f: f, db: db}
}

// take returns the counts since the last take.
func (w *writes) take() map[string]int {
	w.f.t.Helper()
	rows, err := w.db.Query(`SELECT what, n FROM test_writes`)
	if err != nil {
		w.f.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var what string
		var n int
		if err := rows.Scan(&what, &n); err != nil {
			w.f.t.Fatal(err)
		}
		out[what] = n
	}
	w.f.exec(w.db, `DELETE FROM test_writes`)
	return out
}

// TestCampaignPassWritesOnlyWhatChanged: a pass over a campaign of many devices writes one
// row per entry that changed (a command, an outcome), not the campaign's every entry, and
// nothing at all when nothing changed.
func TestCampaignPassWritesOnlyWhatChanged(t *testing.T) {
	const n = 200
	f := newFixture(t, t0.Add(day), Config{Rate: 10, Burst: 10, MaxInFlight: 1000})
	for i := range n {
		f.enroll(spec{id: fmt.Sprintf("plug-%03d", i), family: "plug"}, t0, 30*day)
	}
	w := f.countWrites()
	if _, err := f.s.StartCampaign(context.Background(), protocol.Campaign{ID: "c", Selector: protocol.CampaignSelector{All: true}}); err != nil {
		t.Fatalf("StartCampaign() = %v", err)
	}
	if got := w.take(); got["INSERT campaign_devices"] != n || got["INSERT campaigns"] != 1 {
		t.Errorf("StartCampaign wrote %v, want %d entries and 1 campaign", got, n)
	}
	tests := []struct {
		name    string
		before  func()
		entries int // rows of campaign_devices written
	}{
		{"first commands", func() {}, 10},
		{"nothing changed: no token left", func() {}, 0},
		{"3 commits and the next commands", func() {
			for _, id := range f.cmd.ids()[:3] {
				f.renew(id, f.clock.Now(), 30*day)
				f.s.Committed(id)
			}
			f.clock.Add(time.Second)
		}, 3 + 10},
	}
	for _, tt := range tests {
		tt.before()
		rep := f.reconcile()
		got := w.take()
		if got["UPDATE campaign_devices"] != tt.entries || got["INSERT campaign_devices"] != 0 {
			t.Errorf("%s: pass %+v wrote %v, want %d campaign entries", tt.name, rep, got, tt.entries)
		}
		if got["UPDATE campaigns"]+got["INSERT settings"]+got["UPDATE settings"] != 0 {
			t.Errorf("%s: pass wrote %v, want neither the campaign's row nor a setting", tt.name, got)
		}
	}
}
