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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// natsBuild is the hearth-nats binary, built once per test run from the module cache.
var (
	natsOnce sync.Once
	natsBin  string
	natsErr  error
)

// buildNATS builds cmd/hearth-nats (nats-server from the Go module proxy, cached in the
// module cache, with its MQTT listener asking for client certificates). A failed build
// fails the test in CI and skips it elsewhere, as a missing peer does.
func buildNATS(t *testing.T) string {
	t.Helper()
	natsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hearth-nats-bin")
		if err != nil {
			natsErr = err
			return
		}
		natsBin = filepath.Join(dir, "hearth-nats")
		if out, err := exec.Command("go", "build", "-o", natsBin, "../hearth-nats").CombinedOutput(); err != nil {
			natsErr = fmt.Errorf("go build ../hearth-nats: %v\n%s", err, out)
		}
	})
	if natsErr != nil {
		if testkit.InCI() {
			t.Fatalf("the NATS engine could not be built, and in CI a missing peer is a failure: %v", natsErr)
		}
		t.Skipf("the NATS engine could not be built: %v", natsErr)
	}
	return natsBin
}

// natsNode is one node of the test's NATS cluster.
type natsNode struct {
	name         string
	client, mqtt string // host:port
	cmd          *exec.Cmd
	logs         *syncBuffer
}

// freePorts returns n ports free on 127.0.0.1 now: the nodes' routes must name each other
// before any of them starts.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// natsCluster is the three-node cluster and the secrets the hub needs to use it.
type natsCluster struct {
	nodes                    []*natsNode
	hubPassFile, sysPassFile string
	seedFile                 string
}

// startNATSCluster starts three hearth-nats nodes clustered over routes, JetStream and MQTT
// over TLS on each, with the auth callout answered by the hub (issuer: a fresh account
// nkey). The nodes' MQTT certificates are issued by the hub's CA in data, as agents pin it.
func startNATSCluster(t *testing.T, data, passphrase string) *natsCluster {
	t.Helper()
	bin := buildNATS(t)
	dir := t.TempDir()
	var out, errb bytes.Buffer
	env := func(k string) string {
		if k == ca.PassphraseEnv {
			return passphrase
		}
		return ""
	}
	if err := run(t.Context(), []string{"ca", "broker-cert", "--data", data, "--hosts", "127.0.0.1,localhost", "--out", dir}, nil, &out, &errb, env); err != nil {
		t.Fatalf("ca broker-cert: %v %s", err, errb.String())
	}
	certFile, keyFile := filepath.Join(dir, "mqtt.pem"), filepath.Join(dir, "mqtt-key.pem")
	write := func(path string, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	akp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := akp.Seed()
	pub, _ := akp.PublicKey()
	cl := &natsCluster{hubPassFile: filepath.Join(dir, "hub-pass"), sysPassFile: filepath.Join(dir, "sys-pass"), seedFile: filepath.Join(dir, "issuer.nk")}
	write(cl.hubPassFile, []byte("hub-e2e-pass\n"))
	write(cl.sysPassFile, []byte("sys-e2e-pass\n"))
	write(cl.seedFile, seed)

	ports := freePorts(t, 9)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3*i+1]))
	}
	for i := range 3 {
		n := &natsNode{name: fmt.Sprintf("n%d", i), client: fmt.Sprintf("127.0.0.1:%d", ports[3*i]),
			mqtt: fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]), logs: &syncBuffer{}}
		conf := fmt.Sprintf(`server_name: %s
listen: %q
jetstream { store_dir: %q }
cluster { name: hearth, listen: "127.0.0.1:%d", routes: [%s] }
mqtt { listen: %q, consumer_memory_storage: true, js_api_timeout: "10s", tls { cert_file: %q, key_file: %q } }
accounts {
  HEARTH { jetstream: enabled, users: [ { user: hub, password: "hub-e2e-pass" } ] }
  SYS { users: [ { user: sys, password: "sys-e2e-pass" } ] }
}
system_account: SYS
authorization {
  timeout: 5
  auth_callout { issuer: %q, account: HEARTH, auth_users: [ hub ], allowed_accounts: [ HEARTH ] }
}
`, n.name, n.client, filepath.Join(dir, n.name), ports[3*i+1], strings.Join(routes, ", "), n.mqtt, certFile, keyFile, pub)
		path := filepath.Join(dir, n.name+".conf")
		write(path, []byte(conf))
		n.cmd = exec.Command(bin, "-c", path)
		n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			n.cmd.Process.Kill()
			n.cmd.Wait()
			if t.Failed() {
				var kept []string // without the reconnection attempts to a killed node
				for _, l := range strings.Split(n.logs.String(), "\n") {
					if !strings.Contains(l, "connect to route") {
						kept = append(kept, l)
					}
				}
				t.Logf("%s log (tail):\n%s", n.name, tailBytes([]byte(strings.Join(kept, "\n")), 6000))
			}
		})
		cl.nodes = append(cl.nodes, n)
	}
	for _, n := range cl.nodes {
		testkit.Eventually(t, 30*time.Second, func() bool {
			c, err := net.Dial("tcp", n.mqtt)
			if err == nil {
				c.Close()
			}
			return err == nil
		}, "%s never listened for MQTT on %s", n.name, n.mqtt)
	}
	return cl
}

// hubConfig writes the hub's configuration file for the cluster.
func (cl *natsCluster) hubConfig(t *testing.T) string {
	t.Helper()
	var urls, mqtt []string
	for _, n := range cl.nodes {
		urls = append(urls, `"nats://`+n.client+`"`)
		mqtt = append(mqtt, `"`+n.mqtt+`"`)
	}
	path := filepath.Join(t.TempDir(), "hub.yaml")
	conf := fmt.Sprintf(`broker:
  mode: nats
  urls: [%s]
  mqtt: [%s]
  user: hub
  password_file: %q
  system_user: sys
  system_password_file: %q
  issuer_seed_file: %q
`, strings.Join(urls, ", "), strings.Join(mqtt, ", "), cl.hubPassFile, cl.sysPassFile, cl.seedFile)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// balancer is the load balancer in front of the cluster: a TCP relay whose target can be
// moved to another node, that records when each relayed connection ended.
type balancer struct {
	ln net.Listener

	mu     sync.Mutex
	target string
	open   map[net.Conn]time.Time // when each was opened
	ended  []time.Time
}

func startBalancer(t *testing.T, target string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, target: target, open: map[net.Conn]time.Time{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.pass(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for c := range b.open {
			c.Close()
		}
		b.mu.Unlock()
	})
	return b
}

func (b *balancer) addr() string { return b.ln.Addr().String() }

func (b *balancer) setTarget(target string) {
	b.mu.Lock()
	b.target = target
	b.mu.Unlock()
}

// openConns returns how many relayed connections are open.
func (b *balancer) openConns() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.open)
}

// openedSince reports whether a connection that is still open was relayed after t.
func (b *balancer) openedSince(t time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, at := range b.open {
		if at.After(t) {
			return true
		}
	}
	return false
}

// lastEnded returns when the last relayed connection ended.
func (b *balancer) lastEnded() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.ended) == 0 {
		return time.Time{}
	}
	return b.ended[len(b.ended)-1]
}

func (b *balancer) pass(c net.Conn) {
	b.mu.Lock()
	target := b.target
	b.mu.Unlock()
	s, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	b.mu.Lock()
	b.open[c] = time.Now()
	b.mu.Unlock()
	done := make(chan struct{})
	go func() { io.Copy(s, c); s.Close(); c.Close(); close(done) }()
	io.Copy(c, s)
	c.Close()
	s.Close()
	<-done
	b.mu.Lock()
	delete(b.open, c)
	b.ended = append(b.ended, time.Now())
	b.mu.Unlock()
}

// TestExternalNATSCluster is issue 17 item 2's proof with real processes: a three-node
// hearth-nats cluster, a hub in broker mode nats (auth callout, queue group, presence
// events) and a real hearth-agent behind a load balancer. The agent enrolls through node 0,
// runs and renews through node 1 (commit by reconnect: the callout sees the new
// certificate), carries on through node 2 after node 1 is killed with SIGKILL (and renews
// again), and is dropped within a second of its revocation.
func TestExternalNATSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a three-node NATS cluster, a hub process and a real agent")
	}
	const pass = "e2e passphrase"
	data := t.TempDir()
	var out, errb bytes.Buffer
	env := func(k string) string {
		if k == ca.PassphraseEnv {
			return pass
		}
		return ""
	}
	if err := run(t.Context(), []string{"ca", "init", "--data", data}, nil, &out, &errb, env); err != nil {
		t.Fatalf("ca init: %v %s", err, errb.String())
	}
	cl := startNATSCluster(t, data, pass)
	lb := startBalancer(t, cl.nodes[0].mqtt)
	hubLogs := &syncBuffer{}
	startHub(t, data, "127.0.0.1:0", hubLogs, "--config", cl.hubConfig(t), "--advertise", lb.addr(), "--log-level", "info")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hub log (tail):\n%s", tailBytes([]byte(hubLogs.String()), 8000))
		}
	})

	testkit.Eventually(t, 60*time.Second, func() bool { return strings.Contains(hubLogs.String(), "connected to the NATS cluster") },
		"the hub never connected to the cluster")

	agent := buildAgent(t)
	e := &agentE2E{t: t, tgt: agentTarget{name: "linux-amd64"}, bin: agent, data: data}
	const id = "hall-thermostat"
	var tok protocol.TokenCreated
	if err := json.Unmarshal(e.cli("token", "create", "--device", id, "--json"), &tok); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Enrollment through node 0 (the token's login goes through the callout).
	if out, err := exec.Command(agent, "enroll", "--hub", "mqtts://"+lb.addr(), "--id", id, "--token", tok.Token,
		"--ca-fingerprint", fingerprintRe.FindString(tok.Command), "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("hearth-agent enroll: %v\n%s", err, out)
	}
	first := e.status(dir).Serial

	// Run and renew through node 1.
	lb.setTarget(cl.nodes[1].mqtt)
	runCmd := exec.Command(agent, "run", "--dir", dir)
	logs := &syncBuffer{}
	runCmd.Stdout, runCmd.Stderr = logs, logs
	if err := runCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		runCmd.Process.Kill()
		runCmd.Wait()
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	testkit.Eventually(t, 60*time.Second, func() bool { return e.summary(id).Online }, "the hub never saw %s online", id)
	// renewTo commands a renewal and waits for it. After a node died the agent's reconnection
	// with its new certificate may be refused while JetStream settles: it rolls back and
	// tries again, so that wait is longer.
	renewTo := func(old string, wait time.Duration) string {
		t.Helper()
		e.cli("renew", id)
		testkit.Eventually(t, wait, func() bool {
			s := e.summary(id)
			return s.Serial != "" && s.Serial != old && s.State == "active"
		}, "the hub never recorded %s's renewal (still serial %s)", id, old)
		renewed := e.summary(id).Serial
		testkit.Eventually(t, 60*time.Second, func() bool { return e.status(dir).Serial == renewed },
			"the agent's status never showed the new serial %s", renewed)
		return renewed
	}
	second := renewTo(first, 120*time.Second)

	// Node 1 dies; the balancer sends the agent to node 2, where it carries on and renews.
	lb.setTarget(cl.nodes[2].mqtt)
	killed := time.Now()
	cl.nodes[1].cmd.Process.Signal(syscall.SIGKILL)
	cl.nodes[1].cmd.Wait()
	// JetStream elects new leaders for the MQTT streams and creates the session's consumers
	// on the two nodes left: tens of seconds (the agent's reconnection backoff on top).
	testkit.Eventually(t, 300*time.Second, func() bool {
		b, _ := exec.Command(agent, "status", "--dir", dir, "--json").Output()
		var st struct {
			Connected bool `json:"connected"`
		}
		return lb.openedSince(killed) && lb.openConns() > 0 && json.Unmarshal(b, &st) == nil && st.Connected && e.summary(id).Online
	}, "the agent never came back through node 2")
	t.Logf("the agent was back online through node 2 %s after node 1's SIGKILL", time.Since(killed).Round(time.Second))
	third := renewTo(second, 300*time.Second)

	// Revocation drops the live session within a second.
	testkit.Eventually(t, 30*time.Second, func() bool { return lb.openConns() > 0 }, "no session open before the revocation")
	before := lb.lastEnded()
	if out := string(e.cli("revoke", id, "--reason", "keyCompromise")); !strings.Contains(out, "1 session(s) dropped") {
		t.Errorf("revoke printed %q, want 1 session dropped", out)
	}
	revoked := time.Now()
	testkit.Eventually(t, 10*time.Second, func() bool { return lb.lastEnded().After(before) }, "the revoked session was never dropped")
	took := lb.lastEnded().Sub(revoked)
	t.Logf("revoked session dropped %s after `hearth-gateway revoke` returned (admin.RevokeGrace is the floor)", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("the revoked session was dropped %s after the revocation, want within 1s", took)
	}
	testkit.Eventually(t, 30*time.Second, func() bool {
		b, _ := exec.Command(agent, "status", "--dir", dir, "--json").Output()
		var st struct {
			Connected    bool   `json:"connected"`
			ConnectError string `json:"connect_error"`
		}
		return json.Unmarshal(b, &st) == nil && !st.Connected && st.ConnectError != ""
	}, "the revoked agent's reconnection was never refused")
	if s := e.summary(id); s.Online || s.State != "quarantined" {
		t.Errorf("hub summary after the revocation: online %v state %q, want offline and quarantined", s.Online, s.State)
	}
	var evs []protocol.AuditEvent
	if err := json.Unmarshal(e.cli("events", "--device", id, "--json"), &evs); err != nil {
		t.Fatal(err)
	}
	activated := map[string]int{}
	for _, ev := range evs {
		if ev.Kind == protocol.EventCertActivated {
			activated[ev.Data["serial"]]++
		}
	}
	for _, serial := range []string{second, third} {
		if activated[serial] != 1 {
			t.Errorf("%d %s events for serial %s, want 1 (each commit handled once): %v", activated[serial], protocol.EventCertActivated, serial, activated)
		}
	}
}
