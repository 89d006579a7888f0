package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// Issue 17's proof with real processes: the deployment example of gateway/deploy/replicas
// (three hub replicas on one PostgreSQL database, a three-node hearth-nats cluster) run as a
// whole on 127.0.0.1, with hearth-fleet's devices behind a load balancer that spreads their
// connections over the nodes, renewing through a storm while a replica and then a node die.

const (
	// stormDevices is the fleet's size, unless HEARTH_STORM_REPLICAS_DEVICES says otherwise.
	// Issue 17 asks for 1,000. On two cores shared with other work (load average 20–30) the
	// three nodes' JetStream gave up near 620 devices (every QoS 1 subscription of a device is
	// a consumer replicated three ways, six per agent: at ~3,700 consumer creations timed out,
	// then JetStream reported itself unavailable); at 300 the replicas' publishes, each waiting
	// for its PUBACK from JetStream, fell so far behind that commit acks reached the devices
	// after their timeout (README.md, "External clustered broker"). 100 is what the test runs
	// by default until that is solved.
	stormDevices = 100
	// stormMinutes is how long the campaign's pace spreads its commands over: long enough
	// that both kills land in it on a quiet machine too (at 1,200 commands a minute 100
	// devices had all renewed before the node's kill), short enough for CI.
	stormMinutes = 1
	// stormPassphrase is the CA passphrase (startHub's environment gives the same).
	stormPassphrase = "e2e passphrase"
	// stormBound bounds each wait of the test: generous, since two cores shared with other
	// work run four servers and a thousand devices here. The test asserts outcomes only.
	stormBound = 8 * time.Minute
	// stormEnrollBound bounds the fleet's enrollment: each device's QoS 1 subscriptions are
	// JetStream consumers replicated three ways, which two loaded cores create at a few per
	// second (gateway/README.md, "External clustered broker").
	stormEnrollBound = 25 * time.Minute
	// stormConcurrency is how many devices enroll at once: more only queue on the cluster's
	// JetStream API, whose requests then outlast the nodes' js_api_timeout.
	stormConcurrency = 8
)

// stormRig is the installation of TestReplicasStorm.
type stormRig struct {
	t      *testing.T
	size   int    // the fleet's size
	etc    string // /etc/hearth of the example
	dsn    string
	data   []string // each replica's data directory
	https  []string // each replica's dashboard address
	hubs   []*hubProcess
	logs   hubLog
	nodes  []*stormNode
	lb     *spreader
	fleet  *fleetProcess
	killed map[int]bool // replicas killed
}

// stormNode is one hearth-nats node run from the example's configuration.
type stormNode struct {
	name                string
	client, route, mqtt string // host:port
	cmd                 *exec.Cmd
	logs                *syncBuffer
	done                chan struct{}
}

// TestReplicasStorm runs issue 17's proof: the deployment example's three replicas, three
// broker nodes and PostgreSQL, and stormDevices devices in hearth-fleet connected through a
// load balancer that spreads them over the three nodes. A campaign renews every device;
// while it runs the replica that leads the scheduler is killed with SIGKILL, then a broker
// node. Every device must commit exactly one renewal (one cert.activated event per commit,
// one active certificate per device, the campaign's counts the devices'), the inventory must
// agree with the serial every device holds, the audit chain must verify, and the lease of
// the scheduler must have moved to another replica in a higher term.
func TestReplicasStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three hub replicas, three NATS nodes, PostgreSQL and 1,000 simulated devices as processes")
	}
	size := stormDevices
	if v := os.Getenv("HEARTH_STORM_REPLICAS_DEVICES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			t.Fatalf("HEARTH_STORM_REPLICAS_DEVICES=%q: want a number of devices, at least 10", v)
		}
		size = n
	}
	r := &stormRig{t: t, size: size, killed: map[int]bool{}}
	r.install()
	for i := range 3 {
		r.startReplica(i)
	}
	testkit.Eventually(t, stormBound, func() bool {
		return strings.Count(r.logs.tail(1<<22), "connected to the NATS cluster") >= 3
	}, "the replicas never all connected to the NATS cluster; logs:\n%s", testkit.Lazy(func() string { return r.logs.tail(4000) }))

	state := filepath.Join(t.TempDir(), "fleet.json")
	r.fleet = startFleet(t, r.lb.addr(), filepath.Join(r.data[0], "ca", "root.pem"), state, r.size,
		"--tokens", r.tokens(), "--reconnect-max", "2s", "--concurrency", fmt.Sprint(stormConcurrency))
	var ready fleetView
	testkit.Eventually(t, stormEnrollBound, func() bool {
		ready = r.fleet.view(t)
		return ready.Phase != "starting" || len(ready.EnrollFailures) > 0
	}, "hearth-fleet is not ready: %v", testkit.Lazy(func() string { return fmt.Sprintf("%d enrolled", ready.Enrolled) }))
	if ready.Enrolled != r.size || len(ready.EnrollFailures) > 0 {
		t.Fatalf("hearth-fleet ready with %d of %d devices enrolled (failures %v %q)", ready.Enrolled, r.size, ready.EnrollFailures, ready.FailureExamples)
	}
	testkit.Eventually(t, stormBound, func() bool { return countOnline(r.devices(1)) == r.size },
		"the replicas never saw the %d devices online: %v", r.size, testkit.Lazy(func() string {
			return fmt.Sprint(countOnline(r.devices(1)), " online")
		}))
	spread := r.lb.perTarget()
	t.Logf("connections per node before the storm: %v", spread)
	for _, n := range r.nodes {
		if spread[n.mqtt] == 0 {
			t.Fatalf("no device connected through %s: %v", n.name, spread)
		}
	}

	store := r.inventory()
	first := r.lease(store)
	leader := r.replicaOf(first)
	t.Logf("%s leads the scheduler in term %d", first.Holder, first.Term)

	// The storm: a campaign over every device, started on a replica that does not lead.
	before := map[string]fleetDevice{}
	start := r.fleet.view(t)
	for _, d := range start.DeviceList {
		before[d.ID] = d
	}
	other := (leader + 1) % 3
	var st protocol.CampaignStatus
	if err := json.Unmarshal(r.cli(other, "renew", "--all", "--campaign-id", "storm", "--rate", fmt.Sprintf("%d/min", r.size/stormMinutes), "--json"), &st); err != nil || st.Total != r.size {
		t.Fatalf("renew --all on hub-%d: %+v, %v; want %d devices", other+1, st, err, r.size)
	}
	renewed := func(v fleetView) int {
		n := 0
		for _, d := range v.DeviceList {
			if d.Renewals > before[d.ID].Renewals {
				n++
			}
		}
		return n
	}
	var v fleetView
	waitRenewed := func(n int, what string) {
		t.Helper()
		testkit.Eventually(t, stormBound, func() bool { v = r.fleet.view(t); return renewed(v) >= n },
			"%s: %v", what, testkit.Lazy(func() string {
				return fmt.Sprintf("%d of %d devices renewed; failures %v %q; logs:\n%s", renewed(v), r.size, v.Failures,
					v.FailureExamples, r.logs.tail(4000))
			}))
	}

	// The leader dies a fifth of the way in.
	waitRenewed(r.size/5, "the storm never got a fifth of the way")
	r.kill(leader)
	t.Logf("SIGKILLed the leader hub-%d with %d devices renewed", leader+1, renewed(r.fleet.view(t)))
	var second inventory.LeaseGrant
	testkit.Eventually(t, stormBound, func() bool {
		second = r.lease(store)
		return second.Term > first.Term && r.replicaOf(second) != leader
	}, "no other replica took the scheduler's lease from %s: %+v", first.Holder, testkit.Lazy(func() string { return fmt.Sprint(second) }))
	t.Logf("%s leads the scheduler in term %d", second.Holder, second.Term)

	// A broker node dies half way in: the balancer stops sending connections to it (its
	// health check), its devices reconnect through the two others.
	waitRenewed(r.size/2, "the storm never got half way after the leader's death")
	victim := r.nodes[1]
	r.lb.remove(victim.mqtt)
	onVictim, relayed := r.lb.openTo(victim.mqtt), r.lb.total()
	nodeKilled := time.Now()
	victim.cmd.Process.Signal(syscall.SIGKILL)
	<-victim.done
	t.Logf("SIGKILLed node %s with %d devices renewed and %d connections through it", victim.name, renewed(r.fleet.view(t)), onVictim)
	// Its devices come back through the two others (a measure for the README, not a bound).
	testkit.Eventually(t, stormBound, func() bool {
		v = r.fleet.view(t)
		return r.lb.total() >= relayed+onVictim && v.At.After(nodeKilled) && v.Online == r.size
	}, "the devices of %s never all came back: %v online", victim.name, testkit.Lazy(func() string { return fmt.Sprint(v.Online) }))
	t.Logf("every device online again %s after the SIGKILL of %s", time.Since(nodeKilled).Round(time.Second), victim.name)

	waitRenewed(r.size, "not every device renewed in the storm")
	testkit.Eventually(t, stormBound, func() bool { st = r.campaign(other, "storm"); return st.State != protocol.CampaignRunning },
		"the campaign did not end after every device renewed: %v", testkit.Lazy(func() string { return fmt.Sprintf("%+v", st) }))
	if st.State != protocol.CampaignFinished || st.Committed != r.size || st.Failed != 0 || st.InFlight != 0 || st.Pending != 0 {
		t.Errorf("campaign storm = %s, %d committed, %d failed, %d in flight, %d pending; want finished, %d committed, none failed or left",
			st.State, st.Committed, st.Failed, st.InFlight, st.Pending, r.size)
	}

	// The inventory agrees with every device, and sees them all online, on every replica left.
	for i := range 3 {
		if r.killed[i] {
			continue
		}
		var disagree []string
		testkit.Eventually(t, stormBound, func() bool {
			inv := map[string]protocol.DeviceSummary{}
			for _, d := range r.devices(i) {
				inv[d.ID] = d
			}
			disagree = nil
			for _, d := range r.fleet.view(t).DeviceList {
				if s := inv[d.ID]; s.Serial != d.Serial || !s.Online {
					disagree = append(disagree, fmt.Sprintf("%s holds %s, hub-%d says %s (online %v)", d.ID, d.Serial, i+1, s.Serial, s.Online))
				}
			}
			return len(disagree) == 0
		}, "the inventory disagrees with the devices: %v", testkit.Lazy(func() string {
			return fmt.Sprintf("%d, e.g. %q", len(disagree), disagree[:min(3, len(disagree))])
		}))
	}

	sum := r.fleet.stop(t)
	for i, h := range r.hubs {
		if !r.killed[i] {
			h.cmd.Process.Signal(syscall.SIGTERM)
			h.cmd.Wait()
		}
	}
	ctx := t.Context()
	activated, err := store.Events(ctx, inventory.EventFilter{Kind: protocol.EventCertActivated})
	if err != nil {
		t.Fatal(err)
	}
	perSerial := map[string]int{}
	for _, e := range activated {
		perSerial[e.Data["serial"]]++
	}
	if commits := sum.Enrolled + sum.Committed; len(activated) != commits || len(perSerial) != commits {
		t.Errorf("%d cert.activated events for %d serials and %d commits (%d enrollments, %d renewals), want one per commit",
			len(activated), len(perSerial), commits, sum.Enrolled, sum.Committed)
	}
	if err := store.VerifyAudit(ctx); err != nil {
		t.Errorf("audit chain after the storm: %v", err)
	}
	attempts, failedAttempts := 0, 0
	for _, d := range sum.DeviceList {
		if d.Renewals != 1 {
			t.Errorf("device %s renewed %d times, want once in the campaign", d.ID, d.Renewals)
		}
		certs, err := store.Certificates(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		var active []string
		for _, c := range certs {
			if c.Status == inventory.StatusActive {
				active = append(active, c.Serial)
			}
		}
		if len(active) != 1 || active[0] != d.Serial {
			t.Errorf("device %s holds %s; the inventory's active certificates are %q, want exactly that one", d.ID, d.Serial, active)
		}
		as, err := store.Attempts(ctx, d.ID, 100)
		if err != nil {
			t.Fatal(err)
		}
		committed := 0
		for _, a := range as {
			attempts++
			switch a.Outcome {
			case inventory.OutcomeCommitted:
				committed++
			case inventory.OutcomeIssued:
				t.Errorf("device %s: attempt %s still issued (never committed nor rolled back) after the storm", d.ID, a.RequestID)
			default:
				failedAttempts++
			}
		}
		if committed != 2 {
			t.Errorf("device %s: %d committed attempts, want 2 (its enrollment and its renewal)", d.ID, committed)
		}
	}
	t.Logf("fleet: %d enrolled, %d renewals by %d devices, %d failed %v; inventory: %d attempts, %d not committed, %d cert.activated events; campaign %d committed in %s",
		sum.Enrolled, sum.Committed, sum.DevicesRenewed, sum.Failed, sum.Failures, attempts, failedAttempts, len(activated), st.Committed,
		st.Ended.Sub(st.Started).Round(time.Second))
}

// install writes the example's files for the test (its /etc/hearth and /etc/hearth-nats
// with the secrets, the CA shared by the three data directories), and starts PostgreSQL,
// the three nodes and the load balancer.
func (r *stormRig) install() {
	t := r.t
	root := t.TempDir()
	r.etc = filepath.Join(root, "etc-hearth")
	natsEtc, natsState := filepath.Join(root, "etc-hearth-nats"), filepath.Join(root, "var-lib-hearth-nats")
	for _, d := range []string{r.etc, natsEtc, natsState} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	r.logs = newHubLog(t, filepath.Join(root, "hubs.log"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hub logs (tail):\n%s", r.logs.tail(12000))
		}
	})
	pg := testkit.StartPostgres(t)
	r.dsn = pg.NewDatabase(t)

	env := func(k string) string {
		if k == ca.PassphraseEnv {
			return stormPassphrase
		}
		return ""
	}
	var out, errb bytes.Buffer
	for i := range 3 {
		r.data = append(r.data, filepath.Join(root, fmt.Sprintf("hub-%d", i+1)))
		r.https = append(r.https, replicaAddr(t))
	}
	if err := run(t.Context(), []string{"ca", "init", "--data", r.data[0]}, nil, &out, &errb, env); err != nil {
		t.Fatalf("ca init: %v %s", err, errb.String())
	}
	for _, d := range r.data[1:] { // step 2 of the example: share the CA
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-a", (&config.Config{DataDir: r.data[0]}).CADir(), d).CombinedOutput(); err != nil {
			t.Fatalf("copy the CA: %v\n%s", err, out)
		}
	}
	akp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := akp.Seed()
	issuer, _ := akp.PublicKey()
	for name, body := range map[string]string{
		"ca-passphrase": stormPassphrase + "\n", "policy.yaml": "# the default policy\n", "pg-password": "unused-with-trust\n",
		"nats-issuer.nk": string(seed) + "\n", "nats-hub-password": "hub-storm-pass\n", "nats-sys-password": "sys-storm-pass\n",
	} {
		if err := os.WriteFile(filepath.Join(r.etc, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The nodes: the example's files with the test's directories and 127.0.0.1 listeners.
	bin := buildNATS(t)
	ports := freePorts(t, 9) // client, route, MQTT of each node
	dirs := map[string]string{"/etc/hearth-nats/": natsEtc + "/", "/var/lib/hearth-nats/": natsState + "/"}
	for i := range 3 {
		n := &stormNode{name: fmt.Sprintf("nats-%d", i+1), client: fmt.Sprintf("127.0.0.1:%d", ports[3*i]),
			route: fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]), mqtt: fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]),
			logs: &syncBuffer{}, done: make(chan struct{})}
		dirs[n.name+".hearth.lan:6222"] = n.route
		r.nodes = append(r.nodes, n)
	}
	secrets := []string{"HEARTH_NATS_HUB_PASSWORD=hub-storm-pass", "HEARTH_NATS_SYS_PASSWORD=sys-storm-pass", "HEARTH_NATS_ISSUER=" + issuer}
	for _, n := range r.nodes {
		errb.Reset()
		if err := run(t.Context(), []string{"ca", "broker-cert", "--data", r.data[0], "--hosts", "127.0.0.1," + n.name + ".hearth.lan,mqtt.hearth.lan",
			"--out", filepath.Join(natsEtc, n.name)}, nil, &out, &errb, env); err != nil {
			t.Fatalf("ca broker-cert: %v %s", err, errb.String())
		}
		body := readExample(t, n.name+".conf", dirs)
		for from, to := range map[string]string{"0.0.0.0:4222": n.client, "0.0.0.0:6222": n.route, "0.0.0.0:8883": n.mqtt} {
			if !strings.Contains(body, "listen: "+from) {
				t.Fatalf("%s.conf has no listen: %s", n.name, from)
			}
			body = strings.ReplaceAll(body, "listen: "+from, "listen: "+to)
		}
		if strings.Contains(body, ".hearth.lan") {
			t.Fatalf("%s.conf names a host the test does not replace:\n%s", n.name, body)
		}
		conf := filepath.Join(natsEtc, n.name+".conf")
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		n.cmd = exec.Command(bin, "-c", conf)
		n.cmd.Env = append(os.Environ(), secrets...)
		n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { n.cmd.Wait(); close(n.done) }()
		t.Cleanup(func() {
			n.cmd.Process.Kill()
			<-n.done
			if t.Failed() {
				var kept []string // without the reconnection attempts to a killed node
				for _, l := range strings.Split(n.logs.String(), "\n") {
					if !strings.Contains(l, "connect to route") {
						kept = append(kept, l)
					}
				}
				t.Logf("%s log (tail):\n%s", n.name, tailBytes([]byte(strings.Join(kept, "\n")), 4000))
			}
		})
	}
	for _, n := range r.nodes {
		testkit.Eventually(t, stormBound, func() bool {
			select {
			case <-n.done:
				return true
			default:
			}
			return strings.Contains(n.logs.String(), "Listening for MQTT clients")
		}, "%s never listened for MQTT", n.name)
		select {
		case <-n.done:
			t.Fatalf("%s exited at start:\n%s", n.name, n.logs.String())
		default:
		}
	}
	var targets []string
	for _, n := range r.nodes {
		targets = append(targets, n.mqtt)
	}
	r.lb = startSpreader(t, targets)
}

// tokens mints an enrollment token for each device through the control sockets of the
// replicas running, spread over them, and writes them to a file for hearth-fleet --tokens. (The fleet's
// own minting goes through the bridge API over several admin sessions, which the NATS
// broker cannot tell apart: gateway/README.md, "What differs from the embedded broker".)
func (r *stormRig) tokens() string {
	t := r.t
	lines := make([]string, r.size)
	var wg sync.WaitGroup
	work := make(chan int)
	for w := range 6 {
		wg.Go(func() {
			for i := range work {
				id := fmt.Sprintf("storm-%04d", i)
				var tok protocol.TokenCreated
				out, err := r.tryCLI(w%len(r.hubs), "token", "create", "--device", id, "--json")
				if err == nil {
					err = json.Unmarshal(out, &tok)
				}
				if err != nil {
					t.Error(err)
					continue
				}
				lines[i] = id + " " + tok.Token
			}
		})
	}
	for i := range r.size {
		work <- i
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// hubConfig is the example's hub-N.yaml for replica i with the test's paths and addresses,
// and limits that do not hold a campaign back.
func (r *stormRig) hubConfig(i int) string {
	t := r.t
	dirs := map[string]string{"/etc/hearth/": r.etc + "/", "mqtt.hearth.lan:8883": r.lb.addr(), "0.0.0.0:8099": r.https[i]}
	for _, n := range r.nodes {
		dirs[n.name+".hearth.lan:4222"] = n.client
		dirs[n.name+".hearth.lan:8883"] = n.mqtt
	}
	body := readExample(t, fmt.Sprintf("hub-%d.yaml", i+1), dirs)
	const exampleDSN = `dsn: "host=db.hearth.lan port=5432 user=hearth dbname=hearth sslmode=verify-full sslrootcert=` // then /etc/hearth/pg-root.pem
	lines := strings.Split(body, "\n")
	found := false
	for j, l := range lines {
		if strings.Contains(l, "dsn: ") {
			if !strings.Contains(l, exampleDSN[:40]) {
				t.Fatalf("hub-%d.yaml: unexpected dsn line %q", i+1, l)
			}
			lines[j] = fmt.Sprintf("  dsn: %q", r.dsn)
			found = true
		}
	}
	if !found {
		t.Fatalf("hub-%d.yaml has no storage.dsn", i+1)
	}
	body = strings.Join(lines, "\n")
	if strings.Contains(body, ".hearth.lan") {
		t.Fatalf("hub-%d.yaml names a host the test does not replace:\n%s", i+1, body)
	}
	body += fmt.Sprintf("issuance_rate: 1000000\nrenewal:\n  rate: 10000\n  max_in_flight: %d\n", r.size)
	path := filepath.Join(r.etc, fmt.Sprintf("hub-%d.yaml", i+1))
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startReplica starts replica i as the unit does (serve --data --config), its dashboard on
// the address of its file.
func (r *stormRig) startReplica(i int) {
	h := startHub(r.t, r.data[i], "127.0.0.1:0", r.logs.File, "--config", r.hubConfig(i), "--http", r.https[i], "--log-level", "info")
	if len(r.hubs) <= i {
		r.hubs = append(r.hubs, h)
	} else {
		r.hubs[i] = h
	}
}

// kill SIGKILLs replica i.
func (r *stormRig) kill(i int) {
	r.hubs[i].kill()
	r.killed[i] = true
}

// inventory opens the shared inventory.
func (r *stormRig) inventory() *inventory.Store {
	r.t.Helper()
	store, err := inventory.OpenPostgres(r.t.Context(), inventory.PostgresOptions{DSN: r.dsn})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { store.Close() })
	return store
}

// lease is the scheduler's lease now (waiting until a replica holds it).
func (r *stormRig) lease(store *inventory.Store) inventory.LeaseGrant {
	r.t.Helper()
	var g inventory.LeaseGrant
	testkit.Eventually(r.t, stormBound, func() bool { g, _ = store.Lease(r.t.Context(), "scheduler"); return g.Term != 0 },
		"no replica holds the scheduler's lease")
	return g
}

// replicaOf is the index of the replica holding g.
func (r *stormRig) replicaOf(g inventory.LeaseGrant) int {
	for i := range 3 {
		if strings.HasPrefix(g.Holder, fmt.Sprintf("hub-%d/", i+1)) {
			return i
		}
	}
	r.t.Fatalf("the lease's holder %q is none of the replicas", g.Holder)
	return -1
}

// cli runs a client command against replica i (its control socket).
func (r *stormRig) cli(i int, args ...string) []byte {
	r.t.Helper()
	out, err := r.tryCLI(i, args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// tryCLI is cli for any goroutine: it returns the command's error.
func (r *stormRig) tryCLI(i int, args ...string) ([]byte, error) {
	var out, errb bytes.Buffer
	if err := run(r.t.Context(), append(args, "--data", r.data[i]), nil, &out, &errb, os.Getenv); err != nil {
		return nil, fmt.Errorf("hearth-gateway %v on hub-%d: %w %s", args, i+1, err, errb.String())
	}
	return out.Bytes(), nil
}

// devices is `hearth-gateway devices --json` on replica i.
func (r *stormRig) devices(i int) []protocol.DeviceSummary {
	r.t.Helper()
	var list []protocol.DeviceSummary
	if err := json.Unmarshal(r.cli(i, "devices", "--json"), &list); err != nil {
		r.t.Fatal(err)
	}
	return list
}

// campaign is campaign id as replica i lists it.
func (r *stormRig) campaign(i int, id string) protocol.CampaignStatus {
	r.t.Helper()
	var list []protocol.CampaignStatus
	if err := json.Unmarshal(r.cli(i, "campaigns", "--json"), &list); err != nil {
		r.t.Fatal(err)
	}
	for _, s := range list {
		if s.ID == id {
			return s
		}
	}
	r.t.Fatalf("campaign %s is not listed on hub-%d", id, i+1)
	return protocol.CampaignStatus{}
}

// spreader is the example's load balancer (mqtt.hearth.lan:8883): a TCP relay that sends
// each new connection to the next of its targets in turn (round robin), and that a test
// tells when a target's health check fails.
type spreader struct {
	ln net.Listener

	mu      sync.Mutex
	targets []string
	next    int
	relayed map[string]int      // connections relayed to each target
	open    map[net.Conn]string // open connections and their targets
}

func startSpreader(t *testing.T, targets []string) *spreader {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &spreader{ln: ln, targets: targets, relayed: map[string]int{}, open: map[net.Conn]string{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.pass(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
	})
	return s
}

func (s *spreader) addr() string { return s.ln.Addr().String() }

// remove stops sending new connections to target.
func (s *spreader) remove(target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.targets {
		if x == target {
			s.targets = append(s.targets[:i:i], s.targets[i+1:]...)
		}
	}
}

// perTarget returns how many connections were relayed to each target.
func (s *spreader) perTarget() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.relayed {
		out[k] = v
	}
	return out
}

// openTo returns how many relayed connections to target are open.
func (s *spreader) openTo(target string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.open {
		if t == target {
			n++
		}
	}
	return n
}

// total returns how many connections were relayed.
func (s *spreader) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.relayed {
		n += v
	}
	return n
}

func (s *spreader) pass(c net.Conn) {
	s.mu.Lock()
	if len(s.targets) == 0 {
		s.mu.Unlock()
		c.Close()
		return
	}
	target := s.targets[s.next%len(s.targets)]
	s.next++
	s.relayed[target]++
	s.open[c] = target
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.open, c)
		s.mu.Unlock()
	}()
	d, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	done := make(chan struct{})
	go func() { io.Copy(d, c); d.Close(); c.Close(); close(done) }()
	io.Copy(c, d)
	c.Close()
	d.Close()
	<-done
}
