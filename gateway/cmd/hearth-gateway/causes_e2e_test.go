package main

import (
	"bufio"
	"cmp"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	_ "gorm.io/driver/sqlite" // the sqlite3 driver lockStore opens hearth.db with

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// forcedCausesGolden lists the causes TestCausesForced forces, one a line: the cause, where it
// is forced and how. TestForcedCausesCoverTaxonomy checks it against the table and against
// protocol.Causes, so that a new cause needs a forcing test (or a stated reason in notForced);
// -update rewrites it from the table.
const forcedCausesGolden = "testdata/forced_causes.txt"

// Where a row forces its cause.
const (
	// layerProcesses: a real `hearth-gateway serve` and a real `hearth-agent` process; the
	// failure is provoked from outside them (a file in the way, a relay, a hook, a config).
	layerProcesses = "processes"
	// layerHubProcess: a real `hearth-gateway serve`; the device is the test's own MQTT client
	// with the device's real certificate, because no real agent sends such a request.
	layerHubProcess = "hub-process"
	// layerAgentDevice: no real condition makes the failure happen to a real process; the
	// agent's own package forces it (the row's how names the test) and the hub's handling of
	// the report is the one every processes row checks.
	layerAgentDevice = "agent-device"
)

// causeRow is one row of TestCausesForced: a cause, how it is forced for real, and what the
// hub and the agent must say about it.
type causeRow struct {
	cause protocol.Cause
	layer string
	// how says how the failure is provoked, for the golden list and the docs.
	how string
	// config is the hub's configuration file, if the row needs one.
	config string
	// policy is the hub's policy file (--policy), if the row needs one.
	policy string
	// force provokes the failure on an enrolled device and returns what the agent said (its
	// status's last_cause), "" when the row has no agent that fails.
	force func(r *causeRig) protocol.Cause
	// stored is the outcome of the attempt the hub must store with the cause; "" when the hub
	// stores none by design (see notStored).
	stored string
	// detail, when set, must appear in the stored attempt's detail (a policy refusal's rule).
	detail string
}

// notStored says, for the rows whose cause the hub stores no attempt for, why.
var notStored = map[protocol.Cause]string{
	protocol.CauseHubBusy:       "a busy refusal is a resubmission while the device's request is in flight, not a failure of the renewal (issuer.recordFailure); the hub's attempt is the one in flight",
	protocol.CauseCommitRefused: "a refused commit ends nothing: the request stays in flight (the ack says why, with a retry-after), and the agent's rollback report, which the hub stores, carries the cause",
	protocol.CauseHookFailed:    "the hook runs after the acknowledged commit: the hub stores a committed attempt, the hook's failure is the agent's alone (status, health report)",
}

// causeRows are the causes forced end to end.
var causeRows = []causeRow{
	{
		cause: protocol.CauseRateLimited, layer: layerProcesses,
		how:    "hub config issuance_rate 0.001 (a burst of 1, spent by the enrollment); hearth-agent renew",
		config: "issuance_rate: 0.001\n",
		force:  func(r *causeRig) protocol.Cause { r.renewOnce(false); return r.agentCause() },
		stored: "failed",
	},
	{
		cause: protocol.CausePolicyRefused, layer: layerHubProcess,
		how: "a rekey CSR for the current certificate's own key, sent on the device's certificate session (rule request.rekey); hearth-agent always generates a new key",
		force: func(r *causeRig) protocol.Cause {
			if reply := r.sendCSR(protocol.ReasonRekey, true); reply.Error == nil || reply.Error.Code != protocol.CodePolicyDenied {
				r.t.Fatalf("reply to a same-key rekey: %+v, want a %s refusal", reply.Error, protocol.CodePolicyDenied)
			}
			return ""
		},
		stored: "failed", detail: "rule request.rekey",
	},
	{
		cause: protocol.CauseHubBusy, layer: layerProcesses,
		how: "a request of the device held in flight (issued, never committed, by the test's client on the device's certificate); hearth-agent renew",
		force: func(r *causeRig) protocol.Cause {
			if reply := r.sendCSR(protocol.ReasonCommand, false); reply.Error != nil || reply.Serial == "" {
				r.t.Fatalf("the held request was not issued: %+v", reply.Error)
			}
			r.renewOnce(false)
			return r.agentCause()
		},
	},
	{
		cause: protocol.CauseStorage, layer: layerProcesses,
		how:    "a non-empty directory where the agent writes new.tmp in its state directory; hearth-agent renew",
		force:  func(r *causeRig) protocol.Cause { r.blockInstall(); r.renewOnce(false); return r.agentCause() },
		stored: "rolled_back",
	},
	{
		cause: protocol.CauseReconnectRefused, layer: layerProcesses,
		how:    "hearth-agent run behind a relay that refuses its reconnection with the new certificate (a TLS bad_certificate alert); hearth-gateway renew",
		force:  func(r *causeRig) protocol.Cause { return r.renewRunning(func() { r.relay.RefuseNext(1) }) },
		stored: "rolled_back",
	},
	{
		cause: protocol.CauseBadRequest, layer: layerProcesses,
		how:    "policy reloaded (hearth-gateway policy reload) with the device's class allowing p384 keys only; hearth-agent renew with its p256 key (weak_key)",
		policy: "classes:\n  - name: strict\n    match: {devices: [someone-else]}\n    keys: [p384]\n",
		force: func(r *causeRig) protocol.Cause {
			r.setPolicy("classes:\n  - name: strict\n    match: {devices: [" + r.id + "]}\n    keys: [p384]\n")
			r.renewOnce(false)
			return r.agentCause()
		},
		stored: "failed", detail: "rule classes.strict.keys",
	},
	{
		cause: protocol.CauseUnauthorized, layer: layerHubProcess,
		how: "a renewal CSR (reason command) sent on a session logged in with a fresh enrollment token of the enrolled device: a token session may only enroll",
		force: func(r *causeRig) protocol.Cause {
			var tok protocol.TokenCreated
			if err := json.Unmarshal(r.e.cli("token", "create", "--device", r.id, "--replace", "--json"), &tok); err != nil {
				r.t.Fatal(err)
			}
			r.token = tok.Token
			if reply := r.sendCSR(protocol.ReasonCommand, false); reply.Error == nil || reply.Error.Code != protocol.CodeUnauthorized {
				r.t.Fatalf("reply to a renewal on a token session: %+v, want a %s refusal", reply.Error, protocol.CodeUnauthorized)
			}
			return ""
		},
		stored: "failed",
	},
	{
		cause: protocol.CauseRevoked, layer: layerHubProcess,
		how: "hearth-agent renew, then hearth-gateway revoke --serial of the superseded certificate, then a CSR replacing it on the device's session: a revoked device's own session is refused at CONNECT, before any request",
		force: func(r *causeRig) protocol.Cause {
			old := r.detail().Serial
			r.renewOnce(true)
			r.e.cli("revoke", r.id, "--serial", old)
			if reply := r.sendCSRReplacing(protocol.ReasonCommand, false, old); reply.Error == nil || reply.Error.Code != protocol.CodeRevoked {
				r.t.Fatalf("reply to a CSR replacing revoked %s: %+v, want a %s refusal", old, reply.Error, protocol.CodeRevoked)
			}
			return ""
		},
		stored: "failed", detail: "is revoked",
	},
	{
		cause: protocol.CauseExpired, layer: layerProcesses,
		how: "the device's certificate replaced, while the hub is stopped, by one of its CA that expired an hour ago (no grace by default); hearth-agent renew sends a recovery CSR",
		force: func(r *causeRig) protocol.Cause {
			r.restartHub(func() { expireWhileDown(r.t, r.e.data, r.dir, r.id) })
			r.renewOnce(false)
			return r.agentCause()
		},
		stored: "failed",
	},
	{
		cause: protocol.CauseCommitTimeout, layer: layerHubProcess,
		how:    "hub config renewal.in_flight_timeout 10s; a request issued on the device's certificate session and never committed",
		config: "renewal:\n  in_flight_timeout: 10s\n",
		force: func(r *causeRig) protocol.Cause {
			if reply := r.sendCSR(protocol.ReasonCommand, false); reply.Error != nil || reply.Serial == "" {
				r.t.Fatalf("the request was not issued: %+v", reply.Error)
			}
			return ""
		},
		stored: "expired",
	},
	{
		cause: protocol.CauseCommitRefused, layer: layerHubProcess,
		how: "a request issued on the device's certificate session, then its commit sent on a session presenting the previous certificate: the ack refuses it (not_presented); a real agent commits only on the new certificate's session",
		force: func(r *causeRig) protocol.Cause {
			reply := r.sendCSR(protocol.ReasonCommand, false)
			if reply.Error != nil || reply.Serial == "" {
				r.t.Fatalf("the request was not issued: %+v", reply.Error)
			}
			ack := r.sendCommit("held-1", reply.Serial)
			if ack.Error == nil {
				r.t.Fatalf("commit of %s on the previous certificate's session acknowledged: %+v", reply.Serial, ack)
			}
			if c := protocol.CauseOf(protocol.Code(ack.Error.Code)); c != protocol.CauseCommitRefused {
				r.t.Fatalf("ack refused with %s (cause %s), want cause %s", ack.Error.Code, c, protocol.CauseCommitRefused)
			}
			return ""
		},
	},
	{
		cause: protocol.CauseHookFailed, layer: layerProcesses,
		how: "hearth-agent run --on-renew 'exit 3'; hearth-gateway renew",
		force: func(r *causeRig) protocol.Cause {
			return r.renewRunning(nil, "--on-renew", "echo hook failing >&2; exit 3")
		},
	},
}

// moreCauseRows are the failures only the agent sees, which reach the hub in its next health
// report (last_cause, last_request_id), and the cause of a peer too old to say.
var moreCauseRows = []causeRow{
	{
		cause: protocol.CauseNetwork, layer: layerProcesses,
		how: "the relay pointed at a closed port; hearth-agent renew fails to dial and records it; the relay back on the hub, hearth-agent run's health report carries it",
		force: func(r *causeRig) protocol.Cause {
			r.relay.SetTarget(closedPort(r.t))
			r.renewOnce(false)
			r.relay.SetTarget(r.hub.addr)
			return r.reportRunning()
		},
		stored: "failed",
	},
	{
		cause: protocol.CauseTimeout, layer: layerProcesses,
		how: "the hub's database write-locked by another process (the hub waits out its 5 s busy timeout before answering); hearth-agent renew --request-timeout 2s gives the request up",
		force: func(r *causeRig) protocol.Cause {
			release := r.lockStore()
			r.renewOnce(false, "--request-timeout", "2s")
			release()
			return r.reportRunning()
		},
		stored: "rolled_back",
	},
	{
		cause: protocol.CauseHubInternal, layer: layerProcesses,
		how: "the hub's database write-locked by another process for longer than its busy timeout: recording the issuance fails (internal), and so does recording the refusal; hearth-agent renew, then hearth-agent run's health report once the lock is gone",
		force: func(r *causeRig) protocol.Cause {
			release := r.lockStore()
			r.renewOnce(false)
			release()
			return r.reportRunning()
		},
		stored: "failed",
	},
	{
		cause: protocol.CauseChainVerification, layer: layerProcesses,
		how: "the relay pointed at a second hub with a CA of its own (a hub started afresh on a new data directory); hearth-agent renew refuses its certificate against the pinned root; the relay back on the first hub, hearth-agent run's health report carries it",
		force: func(r *causeRig) protocol.Cause {
			other := startHubProcess(r.t, r.t.TempDir(), "127.0.0.1:0", "--advertise", r.relay.Addr)
			r.relay.SetTarget(other.addr)
			r.renewOnce(false)
			r.relay.SetTarget(r.hub.addr)
			return r.reportRunning()
		},
		stored: "failed",
	},
	{
		cause: protocol.CauseClockSkew, layer: layerProcesses,
		how: "the agent's last known good time (state.json) 400 days ahead, as a device whose clock once ran ahead saves it: the hub's broker certificate (365 days) is expired at the device's time; hearth-agent renew; the time put right, hearth-agent run's health report carries it",
		force: func(r *causeRig) protocol.Cause {
			r.setLastKnownGood(time.Now().Add(400 * 24 * time.Hour))
			r.renewOnce(false)
			r.setLastKnownGood(time.Now())
			return r.reportRunning()
		},
		stored: "failed",
	},
	{
		cause: protocol.CauseInterrupted, layer: layerProcesses,
		how: "the hub's database write-locked so that the CSR waits; hearth-agent renew SIGKILLed once its status shows the request pending; the lock released, hearth-agent run resumes and gives the request up",
		force: func(r *causeRig) protocol.Cause {
			release := r.lockStore()
			cmd := exec.Command(r.agent, "renew", "--dir", r.dir)
			if err := cmd.Start(); err != nil {
				r.t.Fatal(err)
			}
			testkit.Eventually(r.t, 30*time.Second, func() bool { return r.agentStatus().PendingRequest != "" },
				"hearth-agent renew never recorded its request pending")
			cmd.Process.Kill()
			cmd.Wait()
			release()
			return r.reportRunning()
		},
		stored: "rolled_back",
	},
	{
		cause: protocol.CauseKeyGeneration, layer: layerAgentDevice,
		how: "TestKeyGenerationCause (agent/device): Go's key generation cannot fail on a real system (crypto/rand never fails on Linux, every key type the agent's configuration accepts is generated, and nothing the hub sends chooses the key), so the agent's generator is made to fail; the agent records the cause with the attempt's request id and its health report carries both",
	},
	{
		cause: protocol.CauseUnknown, layer: layerHubProcess,
		how: "a request issued on the device's certificate session, then a rolled_back commit without a cause, as an agent older than the causes sends it",
		force: func(r *causeRig) protocol.Cause {
			reply := r.sendCSR(protocol.ReasonCommand, false)
			if reply.Error != nil || reply.Serial == "" {
				r.t.Fatalf("the request was not issued: %+v", reply.Error)
			}
			current := r.detail().Serial
			ack := r.sendReport(&protocol.Commit{V: protocol.Version, RequestID: "held-1", Serial: current, Outcome: protocol.OutcomeRolledBack,
				Failed: reply.Serial, Detail: "rolled back", Time: time.Now()})
			if ack.Error != nil {
				r.t.Fatalf("rolled_back report refused: %+v", ack.Error)
			}
			return ""
		},
		stored: "rolled_back",
	},
}

// notForced says, for each cause no row forces, why; TestForcedCausesCoverTaxonomy fails
// for a cause in neither. Every cause has a row today.
var notForced = map[protocol.Cause]string{}

// allCauseRows returns every row, in the golden file's order.
func allCauseRows() []causeRow { return append(slices.Clip(causeRows), moreCauseRows...) }

// TestCausesForced forces each cause of causeRows for real and checks that the attempt the
// hub stores (device show --json) carries it and that the agent's status says it.
func TestCausesForced(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real hub and agent processes")
	}
	agent := buildAgent(t)
	for _, row := range allCauseRows() {
		if row.layer == layerAgentDevice {
			continue
		}
		t.Run(string(row.cause), func(t *testing.T) {
			t.Parallel() // each row has its own hub, relay and agent
			r := newCauseRig(t, agent, row.config, row.policy)
			got := row.force(r)
			var st agentStatus
			if row.layer == layerProcesses {
				st = r.agentStatus()
				if got != row.cause || protocol.Cause(st.LastCause) != row.cause {
					t.Errorf("agent's last_cause = %q (status now %q), want %q", got, st.LastCause, row.cause)
				}
			}
			if row.stored == "" {
				if _, ok := notStored[row.cause]; !ok {
					t.Fatalf("row %s stores no attempt and notStored does not say why", row.cause)
				}
				return
			}
			var a protocol.AttemptRecord
			testkit.Eventually(t, 30*time.Second, func() bool {
				var ok bool
				a, ok = r.attempt(row.cause)
				return ok
			}, "the hub stored no attempt of %s with cause %s: %+v", r.id, row.cause, r.detail().Attempts)
			if a.Outcome != row.stored || a.CauseClass != row.cause.Class() {
				t.Errorf("attempt %s: outcome %q class %q, want %q %q", a.RequestID, a.Outcome, a.CauseClass, row.stored, row.cause.Class())
			}
			if !strings.Contains(a.Detail, row.detail) {
				t.Errorf("attempt %s detail %q, want it to name %q", a.RequestID, a.Detail, row.detail)
			}
			if row.layer == layerProcesses && a.RequestID != st.LastRequestID {
				t.Errorf("the hub's attempt of %s is request %s, the agent's status names %q", row.cause, a.RequestID, st.LastRequestID)
			}
		})
	}
}

// TestForcedCausesCoverTaxonomy checks the golden list of forced causes against the table,
// and that every cause of the protocol is forced or says why it is not.
func TestForcedCausesCoverTaxonomy(t *testing.T) {
	var want strings.Builder
	forced := map[protocol.Cause]bool{}
	for _, row := range allCauseRows() {
		if (row.force == nil) != (row.layer == layerAgentDevice) {
			t.Errorf("row %s: layer %s, force set %v: only an agent-device row forces nothing here", row.cause, row.layer, row.force != nil)
		}
		if forced[row.cause] {
			t.Errorf("cause %s has two rows", row.cause)
		}
		forced[row.cause] = true
		fmt.Fprintf(&want, "%s\t%s\t%s\n", row.cause, row.layer, row.how)
	}
	if *update {
		if err := os.WriteFile(forcedCausesGolden, []byte(want.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(forcedCausesGolden)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want.String() {
		t.Errorf("%s =\n%s\nwant\n%s(go test -run TestForcedCausesCoverTaxonomy -update)", forcedCausesGolden, b, want.String())
	}
	var golden []protocol.Cause
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		c, _, _ := strings.Cut(sc.Text(), "\t")
		golden = append(golden, protocol.Cause(c))
	}
	for _, c := range protocol.Causes() {
		why, excused := notForced[c.Cause]
		switch in := slices.Contains(golden, c.Cause); {
		case in && excused:
			t.Errorf("cause %s is forced by TestCausesForced but notForced says %q: drop it there", c.Cause, why)
		case !in && !excused:
			t.Errorf("cause %s is in protocol.Causes but not in %s: add a row to TestCausesForced that forces it (or say in notForced why it cannot be)", c.Cause, forcedCausesGolden)
		}
	}
	for c := range notForced {
		if _, known := c.Info(); !known {
			t.Errorf("notForced names %q, which is not a cause", c)
		}
	}
}

// causeRig is one enrolled hearth-agent against its own hub process, reached through a relay.
type causeRig struct {
	t     *testing.T
	e     *agentE2E
	agent string
	relay *testkit.Relay
	hub   *hubProcess
	id    string
	dir   string
	// extra are the hub's flags beyond startHubProcess's.
	extra []string
	// policy is the hub's policy file, if it has one.
	policy string
	// token, when set, is the password sendCSR logs in with instead of the device's certificate.
	token string
}

// setPolicy rewrites the hub's policy file and has the running hub reload it.
func (r *causeRig) setPolicy(pol string) {
	r.t.Helper()
	if err := os.WriteFile(r.policy, []byte(pol), 0o600); err != nil {
		r.t.Fatal(err)
	}
	r.e.cli("policy", "reload")
}

// restartHub stops the hub (SIGTERM), calls while (the hub is down), and starts it again on
// the same data directory and address.
func (r *causeRig) restartHub(while func()) {
	r.t.Helper()
	r.hub.cmd.Process.Signal(syscall.SIGTERM)
	r.hub.cmd.Wait()
	while()
	r.hub = startHubProcess(r.t, r.e.data, r.hub.addr, append([]string{"--advertise", r.relay.Addr}, r.extra...)...)
	r.relay.SetTarget(r.hub.addr)
}

// newCauseRig starts a hub (with config, if not empty) behind a relay and enrolls a device.
func newCauseRig(t *testing.T, agent, config, pol string) (r *causeRig) {
	t.Helper()
	data := t.TempDir()
	var extra []string
	defer func() { r.extra = extra }()
	if config != "" {
		conf := filepath.Join(t.TempDir(), "hearth.yaml")
		if err := os.WriteFile(conf, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		extra = append(extra, "--config", conf)
	}
	polFile := ""
	if pol != "" {
		polFile = filepath.Join(t.TempDir(), "policy.yaml")
		if err := os.WriteFile(polFile, []byte(pol), 0o600); err != nil {
			t.Fatal(err)
		}
		extra = append(extra, "--policy", polFile)
	}
	relay := testkit.StartRelay(t, "")
	hub := startHubProcess(t, data, "127.0.0.1:0", append([]string{"--advertise", relay.Addr}, extra...)...)
	relay.SetTarget(hub.addr)
	r = &causeRig{t: t, policy: polFile, agent: agent, relay: relay, hub: hub, id: "cause-dev", dir: t.TempDir(),
		e: &agentE2E{t: t, tgt: agentTarget{name: "linux-amd64"}, bin: agent, data: data, relay: relay}}
	var tok protocol.TokenCreated
	if err := json.Unmarshal(r.e.cli("token", "create", "--device", r.id, "--json"), &tok); err != nil {
		t.Fatal(err)
	}
	args := strings.Fields(tok.Command)
	if out, err := exec.Command(agent, append(args[1:], "--dir", r.dir)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", tok.Command, err, out)
	}
	return r
}

// renewOnce runs `hearth-agent renew` with extra flags and checks that it fails (or
// succeeds, with ok).
func (r *causeRig) renewOnce(ok bool, extra ...string) string {
	r.t.Helper()
	out, err := exec.Command(r.agent, append([]string{"renew", "--dir", r.dir}, extra...)...).CombinedOutput()
	if (err == nil) != ok {
		r.t.Fatalf("hearth-agent renew: %v, want success %v\n%s", err, ok, out)
	}
	return string(out)
}

// renewRunning runs `hearth-agent run` with extra flags and, once the hub sees the device
// online, calls before (if not nil), asks the hub to renew the device and returns the cause
// the agent's status reports once it reports one.
func (r *causeRig) renewRunning(before func(), extra ...string) protocol.Cause {
	r.t.Helper()
	r.startRun(extra...)
	if before != nil {
		before()
	}
	r.e.cli("renew", r.id)
	return r.waitCause()
}

// waitCause waits until the agent's status reports a cause and returns it.
func (r *causeRig) waitCause() protocol.Cause {
	r.t.Helper()
	var cause protocol.Cause
	testkit.Eventually(r.t, 60*time.Second, func() bool {
		cause = r.agentCause()
		return cause != ""
	}, "the agent's status never reported a cause")
	return cause
}

// startRun starts `hearth-agent run` with extra flags and waits until it has connected and
// the hub sees the device online.
func (r *causeRig) startRun(extra ...string) {
	r.t.Helper()
	cmd := exec.Command(r.agent, append([]string{"run", "--dir", r.dir}, extra...)...)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if r.t.Failed() {
			r.t.Logf("agent log:\n%s", logs.String())
		}
	})
	// The agent's own word that this process is connected: the hub may still show the device
	// online from its enrollment's session.
	testkit.Eventually(r.t, 30*time.Second, func() bool { return strings.Contains(logs.String(), "connected to the hub") },
		"hearth-agent run never connected")
	testkit.Eventually(r.t, 30*time.Second, func() bool { return r.e.summary(r.id).Online }, "the hub never saw %s online", r.id)
}

// agentStatus is what the rows read of `hearth-agent status --json`.
type agentStatus struct {
	LastError      string `json:"last_error"`
	LastCause      string `json:"last_cause"`
	LastRequestID  string `json:"last_request_id"`
	PendingRequest string `json:"pending_request"`
}

// agentStatus returns `hearth-agent status --json`.
func (r *causeRig) agentStatus() agentStatus {
	r.t.Helper()
	// status exits non-zero for an expired or revoked certificate; its JSON is still printed.
	out, _ := exec.Command(r.agent, "status", "--dir", r.dir, "--json").Output()
	var st agentStatus
	if err := json.Unmarshal(out, &st); err != nil {
		r.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// agentCause returns the last_cause of `hearth-agent status --json`.
func (r *causeRig) agentCause() protocol.Cause {
	r.t.Helper()
	return protocol.Cause(r.agentStatus().LastCause)
}

// reportRunning starts `hearth-agent run`, whose first session sends a health report with
// the last failure the agent recorded (or settles the request a kill interrupted, recording
// that), and returns that failure's cause from its status.
func (r *causeRig) reportRunning() protocol.Cause {
	r.t.Helper()
	r.startRun()
	return r.waitCause()
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// lockStore opens the hub's hearth.db from this process, as a backup tool or an sqlite3
// shell would, and holds its write lock (BEGIN IMMEDIATE) until release: the hub's writes
// wait out its busy timeout and fail, its reads go on (WAL).
func (r *causeRig) lockStore() (release func()) {
	r.t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(r.e.data, "hearth.db")+"?_busy_timeout=10000&_txlock=immediate")
	if err != nil {
		r.t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		db.Close()
		r.t.Fatalf("lock hearth.db: %v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			tx.Rollback()
			db.Close()
		})
	}
	r.t.Cleanup(release)
	return release
}

// setLastKnownGood rewrites the agent's state.json with last_known_good at, keeping the rest.
func (r *causeRig) setLastKnownGood(at time.Time) {
	r.t.Helper()
	path := filepath.Join(r.dir, "state.json")
	b, err := os.ReadFile(path)
	if err != nil {
		r.t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		r.t.Fatalf("state.json: %v", err)
	}
	st["last_known_good"] = at.UTC().Format(time.RFC3339)
	if b, err = json.Marshal(st); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// detail returns `hearth-gateway device show ID --json`.
func (r *causeRig) detail() protocol.DeviceDetail {
	r.t.Helper()
	var d protocol.DeviceDetail
	if err := json.Unmarshal(r.e.cli("device", "show", r.id, "--json"), &d); err != nil {
		r.t.Fatal(err)
	}
	return d
}

// attempt returns the device's stored attempt with cause, if there is one.
func (r *causeRig) attempt(cause protocol.Cause) (protocol.AttemptRecord, bool) {
	for _, a := range r.detail().Attempts {
		if a.Cause == cause {
			return a, true
		}
	}
	return protocol.AttemptRecord{}, false
}

// blockInstall puts a non-empty directory where the agent writes the pair it installs
// (keystore's new.tmp): writing it fails as it would on a read-only or broken flash, even for
// root, and the agent's clean-up of temporary files (regular files only) leaves it alone.
func (r *causeRig) blockInstall() {
	r.t.Helper()
	if err := os.MkdirAll(filepath.Join(r.dir, "new.tmp", "in-the-way"), 0o700); err != nil {
		r.t.Fatal(err)
	}
}

// sendCSR connects with the device's own certificate and key (the agent's current.pem),
// sends a CSR of reason replacing the current certificate (for its current key when sameKey,
// else a new one), waits for the hub's reply and disconnects without committing.
func (r *causeRig) sendCSR(reason protocol.Reason, sameKey bool) *protocol.Cert {
	return r.sendCSRReplacing(reason, sameKey, "")
}

// sendCSRReplacing is sendCSR for a CSR that names replaces (when not empty) as the
// certificate it replaces.
func (r *causeRig) sendCSRReplacing(reason protocol.Reason, sameKey bool, replaces string) *protocol.Cert {
	t := r.t
	t.Helper()
	bundle, err := os.ReadFile(filepath.Join(r.dir, "current.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(bundle, bundle)
	if err != nil {
		t.Fatalf("current.pem: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	var csr string
	if sameKey {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: r.id}}, pair.PrivateKey.(crypto.Signer))
		if err != nil {
			t.Fatal(err)
		}
		csr = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	} else {
		_, csr = testkit.KeyAndCSR(t, r.id)
	}
	msg := &protocol.CSR{V: protocol.Version, RequestID: "held-1", Reason: reason, Time: time.Now(), CSR: csr,
		Replaces: cmp.Or(replaces, leaf.SerialNumber.Text(16))}
	var reply protocol.Cert
	r.exchange(pair, msg, protocol.KindCSR, &reply, protocol.KindCert)
	return &reply
}

// sendCommit connects with the device's current certificate and key, sends a commit of
// serial for request id and returns the hub's ack.
func (r *causeRig) sendCommit(id, serial string) *protocol.Ack {
	r.t.Helper()
	return r.sendReport(&protocol.Commit{V: protocol.Version, RequestID: id, Serial: serial, Outcome: protocol.OutcomeCommitted, Time: time.Now()})
}

// sendReport connects with the device's current certificate and key, sends the commit
// report c and returns the hub's ack.
func (r *causeRig) sendReport(c *protocol.Commit) *protocol.Ack {
	r.t.Helper()
	bundle, err := os.ReadFile(filepath.Join(r.dir, "current.pem"))
	if err != nil {
		r.t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(bundle, bundle)
	if err != nil {
		r.t.Fatalf("current.pem: %v", err)
	}
	var ack protocol.Ack
	r.exchange(pair, c, protocol.KindCommit, &ack, protocol.KindAck)
	return &ack
}

// exchange connects as the device (with pair, or with r.token when set), publishes msg on
// the device's topic of kind out and decodes the first message on its topic of kind in into
// reply.
func (r *causeRig) exchange(pair tls.Certificate, msg protocol.Message, out protocol.Kind, reply protocol.Message, in protocol.Kind) {
	t := r.t
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(readRoot(t, r.e.data))
	conf := &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{pair}}
	opts := mqtt.NewClientOptions().AddBroker("tls://" + r.hub.addr).SetClientID(r.id).SetUsername(r.id).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second)
	if r.token != "" {
		conf.Certificates = nil
		opts.SetPassword(r.token)
	}
	opts.SetTLSConfig(conf)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		t.Fatalf("connect as %s: %v", r.id, tok.Error())
	}
	defer c.Disconnect(0)
	var topics protocol.Topics
	got := make(chan []byte, 1)
	if tok := c.Subscribe(topics.Device(r.id, in), 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	b, err := protocol.Encode(msg)
	if err != nil {
		t.Fatal(err)
	}
	c.Publish(topics.Device(r.id, out), 1, false, b)
	select {
	case p := <-got:
		if err := protocol.Decode(p, reply); err != nil {
			t.Fatalf("reply on %s: %v", in, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no reply on %s", in)
	}
}
