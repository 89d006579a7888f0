package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// The crash test of issue 10: the hub binary SIGKILLed at random instants of campaigns that
// renew every device of a fleet simulated by hearth-fleet (the real agent code, one MQTT
// session per device) in another process, and restarted each time on the same data
// directory and address.

const (
	// crashDevices is the fleet's size, crashRounds the number of kills during the paced
	// campaign.
	crashDevices = 1000
	crashRounds  = 10
	// crashRate is the paced campaign's pace, in commands per minute: it lasts about a
	// minute, so that every kill lands in it. Unpaced, the hub renews the whole fleet within
	// the first restart's recovery; the storm campaign after it is unpaced, and killed once.
	crashRate = 2400
	// crashResumeBound is the most a restart may take until every device that was renewing
	// when the hub died is renewing again: far below the 10-minute in-flight timeout, which
	// is what such devices waited for before the hub sent stored commands again. It is not
	// a speed target: on a quiet machine every device is back within 2.5–7.5 s, but on two
	// cores under a load average of 30 the agents' reconnections alone took 15–28 s, so
	// the bound leaves room for that while staying a fifth of the in-flight timeout.
	crashResumeBound = 2 * time.Minute
	// crashMaxDelay bounds the random wait before each kill, and crashWaveDelay the random
	// moment into the wave of renewals it lands in.
	crashMaxDelay  = 2 * time.Second
	crashWaveDelay = 40 * time.Millisecond
	// crashReconnectMax caps the agents' wait between connection attempts. Theirs doubles
	// with each session that ended within a minute (1, 2, 4, 8, 16 s… after kills a few
	// seconds apart), which would measure the agents' protection of a failing hub, not the
	// hub's recovery.
	crashReconnectMax = 2 * time.Second
)

// crashTest is the hub and fleet processes of TestCrashDuringCampaign.
type crashTest struct {
	t          *testing.T
	rng        *rand.Rand
	data, conf string
	addr       string // the broker's address, the same for every run of the hub
	logs       hubLog
	hub        *hubProcess
	fleet      *fleetProcess
	rounds     []crashRound
}

// crashCampaign is a campaign and the fleet's view when it started.
type crashCampaign struct {
	id       string
	started  time.Time
	renewals map[string]int    // device → renewals committed before the campaign
	serials  map[string]string // device → the serial it held
}

// crashRound is what one kill and restart measured.
type crashRound struct {
	campaign  string
	delay     time.Duration // from the start of the round (the campaign's, or the last recovery) to the kill
	renewed   int           // devices that had renewed in the campaign when the hub was killed
	renewing  int           // devices that were renewing: commanded by the hub, or in an attempt
	startup   time.Duration // from the restart to the hub's listener
	connected time.Duration // from the restart until every device was connected again
	first     time.Duration // from the restart to the first commit after it
	median    time.Duration // from the restart until half the renewing devices renewed again
	resumed   time.Duration // from the restart until every one did
}

// TestCrashDuringCampaign kills the hub with SIGKILL crashRounds times at random instants of
// a paced campaign over crashDevices devices held by hearth-fleet, then once in the middle of
// an unpaced one (every device commanded at once), restarting it each time on the same data
// directory and address. After each restart, every device that was renewing when the hub
// died — commanded, or in an attempt, and not committed — must be renewing again within
// crashResumeBound: a new attempt started (its stored command sent again) or its
// interrupted one committed. At the end every device renewed once per campaign, each
// campaign's counts are what the devices did, the inventory's active serial of each device is
// the one it holds, and there is one cert.activated event per commit. A last kill with every
// device online, and the fleet stopped while the hub is down, must leave no device online
// after the restart.
func TestCrashDuringCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the hub and 1,000 simulated devices as processes and kills the hub 11 times")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	dir := t.TempDir()
	c := &crashTest{t: t, rng: rand.New(rand.NewPCG(seed, 10)), data: filepath.Join(dir, "data"),
		conf: filepath.Join(dir, "hearth.yaml"), logs: newHubLog(t, filepath.Join(dir, "hub.log"))}
	// Neither the issuance rate nor the scheduler holds a campaign back.
	if err := os.WriteFile(c.conf, fmt.Appendf(nil, "issuance_rate: 1000000\nrenewal:\n  rate: 10000\n  max_in_flight: %d\n", crashDevices), 0o600); err != nil {
		t.Fatal(err)
	}
	c.hub = startHub(t, c.data, "127.0.0.1:0", c.logs.File, "--config", c.conf)
	c.addr = c.hub.addr
	c.fleet = startFleet(t, c.addr, filepath.Join(c.data, "ca", "root.pem"), filepath.Join(dir, "fleet.json"), crashDevices,
		"--id-prefix", "crash-", "--reconnect-max", crashReconnectMax.String())
	ready := c.fleet.waitReady(t, time.Duration(crashDevices)*50*time.Millisecond+2*time.Minute)
	if ready.Enrolled != crashDevices || ready.Online != crashDevices {
		t.Fatalf("hearth-fleet ready with %d of %d devices enrolled and %d online (enrollment failures %v)",
			ready.Enrolled, crashDevices, ready.Online, ready.EnrollFailures)
	}
	testkit.Eventually(t, time.Minute, func() bool { return countOnline(c.devices()) == crashDevices },
		"the hub never saw the %d devices online: %v", crashDevices, testkit.Lazy(func() string {
			return strconv.Itoa(countOnline(c.devices())) + " online"
		}))

	// The paced campaign, killed crashRounds times while its waves of renewals run.
	paced := c.start("crash", fmt.Sprintf("%d/min", crashRate))
	for r := range crashRounds {
		waited := time.Now()
		base := c.fleet.view(t)
		// At most a share of the devices left is renewed before the kill, so that later
		// kills still land in the campaign.
		budget := max(1, (crashDevices-paced.renewed(base))/(crashRounds-r+1))
		c.killWhile(waited, paced, func(v fleetView) bool { return paced.renewed(v)-paced.renewed(base) >= budget })
	}
	pacedStatus := c.finish(paced)

	// The storm: every device commanded at once, the hub killed in the middle of it.
	storm := c.start("crash-storm", "")
	c.killWhile(time.Now(), storm, func(v fleetView) bool { return storm.renewed(v) >= crashDevices/10 })
	stormStatus := c.finish(storm)

	// The inventory agrees with every device, and sees them all online.
	var disagree []string
	testkit.Eventually(t, 30*time.Second, func() bool {
		inv := map[string]protocol.DeviceSummary{}
		for _, d := range c.devices() {
			inv[d.ID] = d
		}
		disagree = nil
		for _, d := range c.fleet.view(t).DeviceList {
			if s := inv[d.ID]; s.Serial != d.Serial || !s.Online {
				disagree = append(disagree, fmt.Sprintf("%s holds %s, the hub says %s (online %v)", d.ID, d.Serial, s.Serial, s.Online))
			}
		}
		return len(disagree) == 0
	}, "the inventory disagrees with the devices: %v", testkit.Lazy(func() string {
		return fmt.Sprintf("%d, e.g. %q", len(disagree), disagree[:min(3, len(disagree))])
	}))

	// Presence after a SIGKILL: kill the hub with every device online, stop the fleet while
	// it is down (the devices never come back): the restarted hub shows every device offline.
	c.hub.kill()
	sum := c.fleet.stop(t)
	c.hub = startHub(t, c.data, c.addr, c.logs.File, "--config", c.conf)
	if n := countOnline(c.devices()); n != 0 {
		t.Errorf("after a SIGKILL and a restart without the fleet, the hub shows %d devices online, want 0", n)
	}
	for _, want := range []protocol.CampaignStatus{pacedStatus, stormStatus} {
		if got := c.campaign(want.ID); got.State != want.State || got.Committed != want.Committed || got.Failed != want.Failed {
			t.Errorf("campaign %s after the last restart: %s, %d committed, %d failed; want %s, %d, %d as before", want.ID,
				got.State, got.Committed, got.Failed, want.State, want.Committed, want.Failed)
		}
	}
	c.hub.cmd.Process.Signal(syscall.SIGTERM)
	c.hub.cmd.Wait()

	// One cert.activated event per commit (the enrollments and the renewals the devices saw
	// acknowledged, none twice), and the inventory's active certificates are the devices'.
	store, err := inventory.Open(t.Context(), filepath.Join(c.data, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	activated, err := store.Events(t.Context(), inventory.EventFilter{Kind: protocol.EventCertActivated})
	if err != nil {
		t.Fatal(err)
	}
	if commits := sum.Enrolled + sum.Committed; len(activated) != commits {
		t.Errorf("%d cert.activated events for %d commits (%d enrollments, %d renewals), want one per commit",
			len(activated), commits, sum.Enrolled, sum.Committed)
	}
	if err := store.VerifyAudit(t.Context()); err != nil {
		t.Errorf("audit chain after %d kills: %v", len(c.rounds)+1, err)
	}
	for _, d := range sum.DeviceList {
		if a, err := store.ActiveCertificate(t.Context(), d.ID); err != nil || a.Serial != d.Serial {
			t.Errorf("device %s holds %s; the inventory's active certificate is %q (%v)", d.ID, d.Serial, a.Serial, err)
		}
		if d.Renewals != 2 {
			t.Errorf("device %s renewed %d times, want once per campaign", d.ID, d.Renewals)
		}
	}

	var worst time.Duration
	for _, r := range c.rounds {
		worst = max(worst, r.resumed)
	}
	t.Logf("%d kills: renewing again at most %s after a restart; campaigns %s %d committed %d failed, %s %d committed %d failed; "+
		"fleet: %d renewals by %d devices, %d failed %v; %d cert.activated events for %d enrollments and %d renewals",
		len(c.rounds), worst.Round(time.Millisecond), pacedStatus.ID, pacedStatus.Committed, pacedStatus.Failed, stormStatus.ID,
		stormStatus.Committed, stormStatus.Failed, sum.Committed, sum.DevicesRenewed, sum.Failed, sum.Failures, len(activated),
		sum.Enrolled, sum.Committed)
}

// cli runs a hearth-gateway client command against the running hub.
func (c *crashTest) cli(args ...string) []byte {
	c.t.Helper()
	var out, errb bytes.Buffer
	if err := run(c.t.Context(), append(args, "--data", c.data), nil, &out, &errb, os.Getenv); err != nil {
		c.t.Fatalf("hearth-gateway %v: %v %s", args, err, errb.String())
	}
	return out.Bytes()
}

// devices is `hearth-gateway devices --json`.
func (c *crashTest) devices() []protocol.DeviceSummary {
	c.t.Helper()
	var list []protocol.DeviceSummary
	if err := json.Unmarshal(c.cli("devices", "--json"), &list); err != nil {
		c.t.Fatal(err)
	}
	return list
}

// campaign is campaign id as `hearth-gateway campaigns --json` lists it.
func (c *crashTest) campaign(id string) protocol.CampaignStatus {
	c.t.Helper()
	var list []protocol.CampaignStatus
	if err := json.Unmarshal(c.cli("campaigns", "--json"), &list); err != nil {
		c.t.Fatal(err)
	}
	for _, s := range list {
		if s.ID == id {
			return s
		}
	}
	c.t.Fatalf("campaign %s is not listed", id)
	return protocol.CampaignStatus{}
}

// start starts a campaign renewing every device (`renew --all`), at pace ("" for none).
func (c *crashTest) start(id, pace string) *crashCampaign {
	c.t.Helper()
	v := c.fleet.view(c.t)
	camp := &crashCampaign{id: id, started: time.Now(), renewals: map[string]int{}, serials: map[string]string{}}
	for _, d := range v.DeviceList {
		camp.renewals[d.ID], camp.serials[d.ID] = d.Renewals, d.Serial
	}
	args := []string{"renew", "--all", "--campaign-id", id, "--json"}
	if pace != "" {
		args = append(args, "--rate", pace)
	}
	var st protocol.CampaignStatus
	if err := json.Unmarshal(c.cli(args...), &st); err != nil || st.Total != crashDevices {
		c.t.Fatalf("campaign %s: %+v, %v; want %d devices", id, st, err, crashDevices)
	}
	return camp
}

// renewed counts the devices of v that renewed since camp started.
func (camp *crashCampaign) renewed(v fleetView) int {
	n := 0
	for _, d := range v.DeviceList {
		if d.Renewals > camp.renewals[d.ID] {
			n++
		}
	}
	return n
}

// killWhile SIGKILLs the hub at a random instant while devices renew — after a random wait
// from since, once the fleet shows renewals in progress, a random moment later; sooner if
// enough(view) — restarts it and measures how long until every device that was renewing is
// renewing again.
func (c *crashTest) killWhile(since time.Time, camp *crashCampaign, enough func(fleetView) bool) {
	t := c.t
	t.Helper()
	end := since.Add(time.Duration(c.rng.Int64N(int64(crashMaxDelay))))
	for ; ; time.Sleep(10 * time.Millisecond) {
		v := c.fleet.view(t)
		if now := time.Now(); enough(v) || now.After(end) && v.Renewing > 0 || now.After(end.Add(3*time.Second)) {
			break
		}
	}
	time.Sleep(time.Duration(c.rng.Int64N(int64(crashWaveDelay))))
	killed := time.Now()
	c.hub.kill()
	// The fleet's view once the kill reached it (an acknowledgement in flight may still
	// arrive, none once the connections are gone), and the hub's record of the campaign.
	at := c.fleet.viewAfter(t, killed.Add(500*time.Millisecond))
	renewing := c.renewingAtKill(camp, at)
	round := crashRound{campaign: camp.id, delay: killed.Sub(since), renewed: camp.renewed(at), renewing: len(renewing)}

	c.hub = startHub(t, c.data, c.addr, c.logs.File, "--config", c.conf)
	round.startup = c.hub.listening.Sub(c.hub.started)
	c.measureResume(c.hub.started, renewing, &round)
	c.rounds = append(c.rounds, round)
	t.Logf("kill %d (%s): after %s, %d devices renewed, %d renewing, %d waiting their turn; hub listening %s after the restart, "+
		"every device connected after %s, first commit after %s, half the renewing devices renewing again after %s, all after %s",
		len(c.rounds), camp.id, round.delay.Round(time.Millisecond), round.renewed, round.renewing, crashDevices-round.renewed-round.renewing,
		round.startup.Round(time.Millisecond), round.connected.Round(time.Millisecond), round.first.Round(time.Millisecond),
		round.median.Round(time.Millisecond), round.resumed.Round(time.Millisecond))
}

// renewingAtKill returns the devices of camp that were renewing when the hub died (it must
// be down), each with its renewals then: those not renewed since camp started that the
// inventory shows commanded with no outcome, or that had started an attempt. It also checks
// that the campaign's records are whole: a device is commanded or committed only with the
// time it was commanded (here devices renew only when commanded).
func (c *crashTest) renewingAtKill(camp *crashCampaign, at fleetView) map[string]int {
	t := c.t
	t.Helper()
	renewing := map[string]int{}
	waiting := map[string]bool{} // not renewed since camp started
	for _, d := range at.DeviceList {
		if d.Renewals == camp.renewals[d.ID] {
			waiting[d.ID] = true
			if d.LastAttempt.After(camp.started) {
				renewing[d.ID] = d.Renewals
			}
		}
	}
	store, err := inventory.Open(t.Context(), filepath.Join(c.data, "hearth.db"))
	if err != nil {
		t.Fatalf("open the inventory after a SIGKILL: %v", err)
	}
	defer store.Close()
	recs, err := store.CampaignsInProgress(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if rec.ID != camp.id {
			continue
		}
		for _, e := range rec.Devices {
			if (e.Stage == inventory.StageCommanded || e.Stage == inventory.StageCommitted) && e.CommandedAt.IsZero() {
				t.Errorf("after a SIGKILL, campaign %s lists %s %s without the time it was commanded", camp.id, e.DeviceID, e.Stage)
			}
			if e.Stage == inventory.StageCommanded && waiting[e.DeviceID] {
				renewing[e.DeviceID] = camp.renewals[e.DeviceID]
			}
		}
	}
	return renewing
}

// measureResume follows the fleet after the hub's restart until every device of renewing
// (device → its renewals at the kill) started an attempt or committed one since, and every
// device is connected, and records the times in round. It fails the test if that takes
// longer than crashResumeBound.
func (c *crashTest) measureResume(restart time.Time, renewing map[string]int, round *crashRound) {
	t := c.t
	t.Helper()
	resumed := map[string]time.Time{}
	var first, connected time.Time
	var v fleetView
	testkit.Eventually(t, time.Until(restart.Add(crashResumeBound)), func() bool {
		v = c.fleet.view(t)
		if connected.IsZero() && v.Online == crashDevices && v.At.After(restart) {
			connected = v.At
		}
		for _, d := range v.DeviceList {
			if d.LastCommit.After(restart) && (first.IsZero() || d.LastCommit.Before(first)) {
				first = d.LastCommit
			}
			before, ok := renewing[d.ID]
			if _, done := resumed[d.ID]; !ok || done {
				continue
			}
			switch {
			case d.LastAttempt.After(restart):
				resumed[d.ID] = d.LastAttempt
			case d.Renewals > before:
				resumed[d.ID] = d.LastCommit
			}
		}
		return len(resumed) == len(renewing) && !connected.IsZero()
	}, "after restart %d, %v", len(c.rounds)+1, testkit.Lazy(func() string {
		var stuck []string
		for _, d := range v.DeviceList {
			if _, ok := renewing[d.ID]; ok && resumed[d.ID].IsZero() && len(stuck) < 5 {
				stuck = append(stuck, fmt.Sprintf("%s (last attempt %s, %d renewals, online %v, error %q)", d.ID,
					d.LastAttempt.Format(time.StampMilli), d.Renewals, d.Online, d.Error))
			}
		}
		return fmt.Sprintf("%d of the %d devices renewing at the kill are not renewing again (e.g. %v); %d of %d devices connected\nhub log (end):\n%s",
			len(renewing)-len(resumed), len(renewing), stuck, v.Online, crashDevices, c.logs.tail(4<<10))
	}))
	round.connected = connected.Sub(restart)
	if !first.IsZero() {
		round.first = first.Sub(restart)
	}
	if times := slices.SortedFunc(maps.Values(resumed), time.Time.Compare); len(times) > 0 {
		round.median, round.resumed = times[len(times)/2].Sub(restart), times[len(times)-1].Sub(restart)
	}
}

// finish waits until every device renewed in camp and camp ended, and checks its counts
// against what the devices did: committed are the devices now on another serial than at the
// start, failed the others. It returns the campaign's status.
func (c *crashTest) finish(camp *crashCampaign) protocol.CampaignStatus {
	t := c.t
	t.Helper()
	var v fleetView
	testkit.Eventually(t, 2*time.Minute, func() bool { v = c.fleet.view(t); return camp.renewed(v) == crashDevices },
		"after the last restart not every device renewed in campaign %s: %v", camp.id, testkit.Lazy(func() string {
			return fmt.Sprintf("%d of %d; failures %v %q", camp.renewed(v), crashDevices, v.Failures, v.FailureExamples)
		}))
	var st protocol.CampaignStatus
	testkit.Eventually(t, time.Minute, func() bool { st = c.campaign(camp.id); return st.State != protocol.CampaignRunning },
		"campaign %s did not end after every device renewed: %v", camp.id, testkit.Lazy(func() string { return fmt.Sprintf("%+v", st) }))
	changed := 0
	for _, d := range v.DeviceList {
		if d.Serial != camp.serials[d.ID] {
			changed++
		}
	}
	if st.State != protocol.CampaignFinished || st.Committed != changed || st.Failed != crashDevices-changed || st.InFlight != 0 || st.Pending != 0 {
		t.Errorf("campaign %s = %s, %d committed, %d failed, %d in flight, %d pending; want finished, %d committed (devices on a new serial), %d failed, none left",
			camp.id, st.State, st.Committed, st.Failed, st.InFlight, st.Pending, changed, crashDevices-changed)
	}
	if v.Failed != 0 {
		t.Errorf("the devices saw %d renewals fail %v: %q", v.Failed, v.Failures, v.FailureExamples)
	}
	return st
}

func countOnline(list []protocol.DeviceSummary) int {
	n := 0
	for _, d := range list {
		if d.Online {
			n++
		}
	}
	return n
}
