package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// runningAgent is a hearth-agent process enrolled as id, running against the hub.
type runningAgent struct {
	id, dir string
	cmd     *exec.Cmd
	exited  chan error
	logs    *syncBuffer
}

// startAgent enrolls id (name, family) with a fresh token and runs it until the test ends.
func (e *agentE2E) startAgent(id, name, family string) *runningAgent {
	t := e.t
	t.Helper()
	var tok protocol.TokenCreated
	args := []string{"token", "create", "--device", id, "--name", name, "--json"}
	if family != "" {
		args = append(args, "--family", family)
	}
	if err := json.Unmarshal(e.cli(args...), &tok); err != nil {
		t.Fatal(err)
	}
	a := &runningAgent{id: id, dir: t.TempDir(), exited: make(chan error, 1), logs: &syncBuffer{}}
	if out, err := exec.Command(e.bin, append(strings.Fields(tok.Command)[1:], "--dir", a.dir)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", tok.Command, err, out)
	}
	a.cmd = exec.Command(e.bin, "run", "--dir", a.dir)
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.exited <- a.cmd.Wait() }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.exited
		if t.Failed() {
			t.Logf("%s agent log:\n%s", id, a.logs.String())
		}
	})
	testkit.Eventually(t, 60*time.Second, func() bool { return e.summary(id).Online }, "the hub never saw %s online", id)
	return a
}

// detail is `device show ID --json`.
func (e *agentE2E) detail(id string) protocol.DeviceDetail {
	e.t.Helper()
	var d protocol.DeviceDetail
	if err := json.Unmarshal(e.cli("device", "show", id, "--json"), &d); err != nil {
		e.t.Fatal(err)
	}
	return d
}

// certStatus returns the status and revocation reason of one certificate of a device.
func certStatus(d protocol.DeviceDetail, serial string) (string, string) {
	for _, c := range d.Certificates {
		if c.Serial == serial {
			return c.Status, c.RevokeReason
		}
	}
	return "", ""
}

// notices returns the incident.notice audit records.
func (e *agentE2E) notices() []protocol.AuditEvent {
	e.t.Helper()
	var evs []protocol.AuditEvent
	if err := json.Unmarshal(e.cli("events", "--limit", "1000", "--json"), &evs); err != nil {
		e.t.Fatal(err)
	}
	var out []protocol.AuditEvent
	for _, ev := range evs {
		if ev.Kind == protocol.EventIncidentNotice {
			out = append(out, ev)
		}
	}
	return out
}

// TestIncidentRunbooks runs both incident commands against a hub process and real agent
// processes, each first with --dry-run (which must change nothing) and then for real.
func TestIncidentRunbooks(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub process and three agent processes")
	}
	agent := buildAgent(t)
	relay := testkit.StartRelay(t, "")
	data := filepath.Join(t.TempDir(), "data")
	hub := startHubProcess(t, data, "127.0.0.1:0", "--advertise", relay.Addr)
	relay.SetTarget(hub.addr)
	e := &agentE2E{t: t, tgt: agentTarget{name: "linux-native"}, bin: agent, data: data, relay: relay}
	cam1 := e.startAgent("cam-porch", "porch camera", "acme-cam")
	cam2 := e.startAgent("cam-garden", "garden camera", "acme-cam")
	lock := e.startAgent("lock-front", "front door lock", "bolt-lock")
	before := map[string]string{}
	for _, a := range []*runningAgent{cam1, cam2, lock} {
		before[a.id] = e.summary(a.id).Serial
		// The hub records a session's presence just after the agent connects.
		testkit.Eventually(t, 30*time.Second, func() bool { return e.summary(a.id).Online }, "%s never showed online", a.id)
	}

	t.Run("device-lost", func(t *testing.T) {
		e.t = t
		out := string(e.cli("incident", "device-lost", lock.id, "--dry-run"))
		for _, want := range []string{"1 device(s) would be affected (dry run: nothing changed)", lock.id, before[lock.id],
			"Residents would be told: Front door lock was reported lost or stolen"} {
			if !strings.Contains(out, want) {
				t.Errorf("incident device-lost --dry-run printed\n%s\nwant it to contain %q", out, want)
			}
		}
		if s := e.summary(lock.id); !s.Online || s.State != "active" || len(e.notices()) != 0 {
			t.Fatalf("after the dry run: online %v, state %q, %d notices; want the lock untouched", s.Online, s.State, len(e.notices()))
		}

		var plan protocol.IncidentPlan
		if err := json.Unmarshal(e.cli("incident", "device-lost", lock.id, "--json"), &plan); err != nil {
			t.Fatal(err)
		}
		if plan.DryRun || plan.Revoked != 1 || len(plan.Devices) != 1 || plan.Devices[0].Serial != before[lock.id] {
			t.Errorf("incident device-lost = %+v, want 1 certificate revoked, serial %s", plan, before[lock.id])
		}
		testkit.Eventually(t, 30*time.Second, func() bool { return !e.summary(lock.id).Online }, "the lost lock's session is still up")
		d := e.detail(lock.id)
		if st, reason := certStatus(d, before[lock.id]); st != "revoked" || !strings.HasPrefix(reason, "keyCompromise") {
			t.Errorf("lost lock's certificate: status %q reason %q, want revoked with keyCompromise", st, reason)
		}
		if d.Device.State != "quarantined" {
			t.Errorf("lost lock's state %q, want quarantined", d.Device.State)
		}
		ns := e.notices()
		if len(ns) != 1 || ns[0].DeviceID != lock.id || !strings.Contains(ns[0].Message, "Front door lock was reported lost or stolen") {
			t.Errorf("notices = %+v, want one for the lock in plain language", ns)
		}
		// The agents of the other family are untouched.
		for _, a := range []*runningAgent{cam1, cam2} {
			if s := e.summary(a.id); !s.Online || s.Serial != before[a.id] {
				t.Errorf("%s after device-lost of the lock: online %v serial %s, want unchanged", a.id, s.Online, s.Serial)
			}
		}
	})

	t.Run("family-compromised", func(t *testing.T) {
		e.t = t
		var dry protocol.IncidentPlan
		if err := json.Unmarshal(e.cli("incident", "family-compromised", "--family", "acme-cam", "--dry-run", "--json"), &dry); err != nil {
			t.Fatal(err)
		}
		ids := []string{}
		for _, d := range dry.Devices {
			ids = append(ids, d.ID)
		}
		if !dry.DryRun || len(ids) != 2 || !strings.Contains(dry.Notice, "The acme-cam devices (2) are getting new keys") {
			t.Errorf("dry run = %+v, want both cameras and the notice", dry)
		}
		var camps []protocol.CampaignStatus
		if err := json.Unmarshal(e.cli("campaigns", "--json"), &camps); err != nil || len(camps) != 0 {
			t.Fatalf("campaigns after the dry run = %+v, %v; want none", camps, err)
		}

		out := string(e.cli("incident", "family-compromised", "--family", "acme-cam"))
		if !strings.Contains(out, "re-key campaign incident-acme-cam-") || !strings.Contains(out, "Residents are told: The acme-cam devices (2)") {
			t.Errorf("incident family-compromised printed\n%s", out)
		}
		testkit.Eventually(t, 120*time.Second, func() bool {
			var camps []protocol.CampaignStatus
			_ = json.Unmarshal(e.cli("campaigns", "--json"), &camps)
			return len(camps) == 1 && camps[0].State == protocol.CampaignFinished
		}, "the incident's campaign never finished")
		if err := json.Unmarshal(e.cli("campaigns", "--json"), &camps); err != nil || camps[0].Committed != 2 || camps[0].Failed != 0 {
			t.Fatalf("campaign = %+v, want 2 committed, none failed", camps)
		}
		for _, a := range []*runningAgent{cam1, cam2} {
			// The old certificate is revoked right at the commit (Committed runs in the
			// commit's hook, before the campaign's pass sees it).
			testkit.Eventually(t, 30*time.Second, func() bool {
				st, _ := certStatus(e.detail(a.id), before[a.id])
				return st == "revoked"
			}, "%s's old certificate %s was not revoked after its commit", a.id, before[a.id])
			d := e.detail(a.id)
			if _, reason := certStatus(d, before[a.id]); !strings.HasPrefix(reason, "keyCompromise") {
				t.Errorf("%s's old certificate revoked for %q, want keyCompromise", a.id, reason)
			}
			if d.Serial == before[a.id] || d.Device.State != "active" || !d.Online {
				t.Errorf("%s after the re-key: serial %s (was %s), state %s, online %v", a.id, d.Serial, before[a.id], d.Device.State, d.Online)
			}
			if st, _ := certStatus(d, d.Serial); st != "active" {
				t.Errorf("%s's new certificate %s is %q, want active", a.id, d.Serial, st)
			}
			testkit.Eventually(t, 30*time.Second, func() bool { return e.status(a.dir).Serial == d.Serial },
				"%s's agent never showed its new serial %s", a.id, d.Serial)
		}
		if ns := e.notices(); len(ns) != 2 || !strings.Contains(ns[0].Message+ns[1].Message, "acme-cam devices (2)") {
			t.Errorf("notices = %+v, want the family's next to the lock's", ns)
		}
	})
}
