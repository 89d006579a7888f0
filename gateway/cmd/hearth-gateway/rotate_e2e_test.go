package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// caStatus is `ca status --json`.
func (e *agentE2E) caStatus() protocol.CAInfo {
	e.t.Helper()
	var info protocol.CAInfo
	if err := json.Unmarshal(e.cli("ca", "status", "--json"), &info); err != nil {
		e.t.Fatal(err)
	}
	return info
}

// rotationSteps returns the steps of the ca.rotation audit records, in the order events lists them (oldest first).
func (e *agentE2E) rotationSteps() []string {
	e.t.Helper()
	var evs []protocol.AuditEvent
	if err := json.Unmarshal(e.cli("events", "--limit", "1000", "--json"), &evs); err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		if ev.Kind == protocol.EventCARotation {
			out = append(out, ev.Data["step"])
		}
	}
	return out
}

// pinnedSubjects lists the subjects of the CA certificates an agent pinned (its ca.pem).
func pinnedSubjects(t *testing.T, dir string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		var b *pem.Block
		if b, raw = pem.Decode(raw); b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c.Subject.String())
	}
}

func readCRL(t *testing.T, path string) *x509.RevocationList {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	l, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// rotateAndWait waits until the campaign of the rotation in progress finished, every
// device's active certificate is the new intermediate's, and ca status says retired.
func (e *agentE2E) rotateAndWait(agents []*runningAgent, rot protocol.CARotation) protocol.CAInfo {
	t := e.t
	t.Helper()
	testkit.Eventually(t, 180*time.Second, func() bool {
		var camps []protocol.CampaignStatus
		_ = json.Unmarshal(e.cli("campaigns", "--json"), &camps)
		for _, c := range camps {
			if c.ID == rot.Campaign {
				return c.State != protocol.CampaignRunning
			}
		}
		return false
	}, "campaign %s never ended", rot.Campaign)
	var camps []protocol.CampaignStatus
	if err := json.Unmarshal(e.cli("campaigns", "--json"), &camps); err != nil {
		t.Fatal(err)
	}
	for _, c := range camps {
		if c.ID == rot.Campaign && (c.State != protocol.CampaignFinished || c.Committed != len(agents) || c.Failed != 0) {
			t.Fatalf("campaign %s = %+v; want finished, %d committed, none failed", c.ID, c, len(agents))
		}
	}
	for _, a := range agents {
		d := e.detail(a.id)
		var issuer string
		for _, c := range d.Certificates {
			if c.Serial == d.Serial {
				issuer = c.Issuer
			}
		}
		if issuer != rot.Intermediate.Subject || d.Device.State != "active" {
			t.Errorf("%s: active certificate %s issued by %q (state %s); want the new intermediate %q", a.id, d.Serial, issuer,
				d.Device.State, rot.Intermediate.Subject)
		}
	}
	var info protocol.CAInfo
	testkit.Eventually(t, 60*time.Second, func() bool {
		info = e.caStatus()
		return info.Rotation != nil && info.Rotation.State == protocol.RotationRetired
	}, "the previous intermediate was never retired")
	if info.Previous != nil || info.Intermediate.Serial != rot.Intermediate.Serial || info.Rotation.Remaining != 0 {
		t.Fatalf("ca status after retirement = %+v; want the new intermediate alone", info)
	}
	return info
}

// TestIntermediateRotationAgents rotates the intermediate of a hub process with three real
// agent processes: --dry-run changes nothing; for real, the agents pin the bundle with both
// intermediates, the campaign moves every device onto the new one without a failure, the
// old one is retired (its last CRL kept), agents pin the new one alone, and an agent
// restarted afterwards trusts the hub's new broker certificate. Then incident
// intermediate-compromised, dry run and real: a second rotation whose retired intermediate
// is on the root's CRL, the residents' notice, and an agent refusing a broker whose chain
// runs through the revoked intermediate.
func TestIntermediateRotationAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub process and three agent processes")
	}
	agent := buildAgent(t)
	relay := testkit.StartRelay(t, "")
	data := filepath.Join(t.TempDir(), "data")
	hub := startHubProcess(t, data, "127.0.0.1:0", "--advertise", relay.Addr)
	relay.SetTarget(hub.addr)
	e := &agentE2E{t: t, tgt: agentTarget{name: "linux-native"}, bin: agent, data: data, relay: relay}
	agents := []*runningAgent{
		e.startAgent("cam-porch", "porch camera", "acme-cam"),
		e.startAgent("plug-tv", "tv plug", "plugco"),
		e.startAgent("lock-front", "front door lock", "bolt-lock"),
	}
	first := e.caStatus().Intermediate

	t.Run("rotate-intermediate", func(t *testing.T) {
		e.t = t
		if out := string(e.cli("ca", "status")); !strings.Contains(out, "No intermediate rotation yet.") {
			t.Errorf("ca status before any rotation printed\n%s", out)
		}
		var dry protocol.CARotation
		if err := json.Unmarshal(e.cli("ca", "rotate-intermediate", "--dry-run", "--json"), &dry); err != nil {
			t.Fatal(err)
		}
		if !dry.DryRun || dry.Devices != 3 || dry.Intermediate != nil || dry.Previous.Serial != first.Serial {
			t.Fatalf("ca rotate-intermediate --dry-run = %+v; want 3 devices and nothing new", dry)
		}
		if info := e.caStatus(); info.Rotation != nil || info.Previous != nil || info.Intermediate.Serial != first.Serial {
			t.Fatalf("ca status after the dry run = %+v; want nothing changed", info)
		}

		var rot protocol.CARotation
		if err := json.Unmarshal(e.cli("ca", "rotate-intermediate", "--json"), &rot); err != nil {
			t.Fatal(err)
		}
		if rot.State != protocol.RotationMoving || rot.Intermediate == nil || rot.Intermediate.Serial == first.Serial ||
			rot.Previous.Serial != first.Serial || rot.Devices != 3 {
			t.Fatalf("ca rotate-intermediate = %+v; want moving from %s, 3 devices", rot, first.Serial)
		}
		// Agents pin the bundle with both intermediates (new first) while devices move.
		for _, a := range agents {
			testkit.Eventually(t, 60*time.Second, func() bool {
				s := pinnedSubjects(t, a.dir)
				return len(s) == 3 && s[0] == rot.Intermediate.Subject && s[1] == first.Subject
			}, "%s never pinned the bundle with both intermediates: %v", a.id, pinnedSubjects(t, a.dir))
		}
		info := e.rotateAndWait(agents, rot)
		for _, a := range agents {
			testkit.Eventually(t, 60*time.Second, func() bool {
				s := pinnedSubjects(t, a.dir)
				return len(s) == 2 && s[0] == rot.Intermediate.Subject
			}, "%s still pins the retired intermediate: %v", a.id, pinnedSubjects(t, a.dir))
		}
		if got := e.rotationSteps(); strings.Join(got, ",") != "rotated,moving,retired" {
			t.Errorf("ca.rotation events = %v, want rotated, moving, retired", got)
		}
		last := readCRL(t, filepath.Join(data, "crl-previous.pem"))
		if last.Issuer.String() != first.Subject || !last.NextUpdate.Equal(first.NotAfter.UTC().Truncate(time.Second)) {
			t.Errorf("the retired intermediate's last CRL: issuer %q, next update %v; want %q until %v", last.Issuer, last.NextUpdate,
				first.Subject, first.NotAfter)
		}
		if cur := readCRL(t, filepath.Join(data, "crl.pem")); cur.Issuer.String() != rot.Intermediate.Subject {
			t.Errorf("crl.pem is signed by %q, want the new intermediate", cur.Issuer)
		}
		if out := string(e.cli("ca", "status")); !strings.Contains(out, "retired") || !strings.Contains(out, info.Intermediate.Subject) {
			t.Errorf("ca status after the rotation printed\n%s", out)
		}

		// An agent restarted now verifies the hub's broker certificate, issued by the new
		// intermediate, with what it pinned.
		a := agents[0]
		a.cmd.Process.Kill()
		<-a.exited
		testkit.Eventually(t, 30*time.Second, func() bool { return !e.summary(a.id).Online }, "%s still online after its kill", a.id)
		a.cmd = exec.Command(e.bin, "run", "--dir", a.dir)
		a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
		if err := a.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		a.exited = make(chan error, 1)
		go func() { a.exited <- a.cmd.Wait() }()
		testkit.Eventually(t, 60*time.Second, func() bool { return e.summary(a.id).Online }, "%s never came back after the rotation", a.id)
	})

	t.Run("intermediate-compromised", func(t *testing.T) {
		e.t = t
		before := e.caStatus()
		thief := stealIntermediate(t, data)
		var dry protocol.IncidentPlan
		if err := json.Unmarshal(e.cli("incident", "intermediate-compromised", "--dry-run", "--json"), &dry); err != nil {
			t.Fatal(err)
		}
		if !dry.DryRun || len(dry.Devices) != 3 || dry.Campaign != "" || !strings.Contains(dry.Notice, "Each of the 3 devices gets a new certificate") {
			t.Fatalf("incident intermediate-compromised --dry-run = %+v; want 3 devices and the notice", dry)
		}
		if info := e.caStatus(); info.Intermediate.Serial != before.Intermediate.Serial || info.Previous != nil || len(e.notices()) != 0 {
			t.Fatalf("after the dry run: %+v, %d notices; want nothing changed", info, len(e.notices()))
		}
		out := string(e.cli("incident", "intermediate-compromised"))
		if !strings.Contains(out, "re-key campaign incident-intermediate-") || !strings.Contains(out, "Residents are told: The hub is replacing the authority") {
			t.Errorf("incident intermediate-compromised printed\n%s", out)
		}
		info := e.caStatus()
		if info.Rotation == nil || !info.Rotation.Incident || info.Previous == nil || info.Previous.Serial != before.Intermediate.Serial {
			t.Fatalf("ca status after the incident started = %+v", info)
		}
		info = e.rotateAndWait(agents, *info.Rotation)
		if !info.Rotation.Revoked {
			t.Errorf("rotation after the incident = %+v; want the old intermediate revoked", info.Rotation)
		}
		root := readCRL(t, filepath.Join(data, "crl-root.pem"))
		if root.Issuer.String() != info.Root.Subject || len(root.RevokedCertificateEntries) != 1 ||
			root.RevokedCertificateEntries[0].SerialNumber.Text(16) != before.Intermediate.Serial ||
			root.RevokedCertificateEntries[0].ReasonCode != 1 {
			t.Errorf("root CRL = issuer %q, entries %+v; want the compromised intermediate %s with keyCompromise", root.Issuer,
				root.RevokedCertificateEntries, before.Intermediate.Serial)
		}
		if ns := e.notices(); len(ns) != 1 || !strings.Contains(ns[0].Message, "its key may have leaked") {
			t.Errorf("notices = %+v, want the residents' one", ns)
		}
		for _, a := range agents {
			if s := e.summary(a.id); !s.Online {
				t.Errorf("%s is offline after the incident", a.id)
			}
		}
		// Whoever holds the compromised intermediate's key cannot pose as the hub: the agents
		// took the root's CRL from the crl topic.
		e.refusesImpostor(agents[1], thief, hub.addr)
	})
}

// TestRootRotationAgent rotates the root of a hub process with two real agent processes: the
// agents pin the new root next to the old one (the cross-certificate verifies under the root
// they pinned), the campaign moves both onto the new root's intermediate, the old root and
// intermediate retire and the agents pin the new root alone; an agent restarted afterwards
// connects, and a new agent enrolls with the new root's fingerprint. (A forged
// cross-certificate is refused: agent/device TestAcceptCA and FuzzAcceptCA.)
func TestRootRotationAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub process and three agent processes")
	}
	agent := buildAgent(t)
	relay := testkit.StartRelay(t, "")
	data := filepath.Join(t.TempDir(), "data")
	hub := startHubProcess(t, data, "127.0.0.1:0", "--advertise", relay.Addr)
	relay.SetTarget(hub.addr)
	e := &agentE2E{t: t, tgt: agentTarget{name: "linux-native"}, bin: agent, data: data, relay: relay}
	agents := []*runningAgent{
		e.startAgent("cam-porch", "porch camera", "acme-cam"),
		e.startAgent("lock-front", "front door lock", "bolt-lock"),
	}
	before := e.caStatus()

	var dry protocol.CARotation
	if err := json.Unmarshal(e.cli("ca", "rotate-root", "--dry-run", "--json"), &dry); err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || !dry.Root || dry.Devices != 2 {
		t.Fatalf("ca rotate-root --dry-run = %+v; want a root rotation of 2 devices planned", dry)
	}
	if info := e.caStatus(); info.Root.Serial != before.Root.Serial || info.Rotation != nil {
		t.Fatalf("ca status after the dry run = %+v; want nothing changed", info)
	}
	var rot protocol.CARotation
	if err := json.Unmarshal(e.cli("ca", "rotate-root", "--json"), &rot); err != nil {
		t.Fatal(err)
	}
	info := e.caStatus()
	if !rot.Root || rot.State != protocol.RotationMoving || info.Root.Serial == before.Root.Serial || info.PreviousRoot == nil ||
		info.PreviousRoot.Serial != before.Root.Serial || info.Cross == nil {
		t.Fatalf("ca rotate-root = %+v, ca status %+v; want a new root with the old one still trusted", rot, info)
	}
	for _, a := range agents {
		testkit.Eventually(t, 60*time.Second, func() bool {
			s := pinnedSubjects(t, a.dir)
			return len(s) == 5 && s[3] == info.Root.Subject && s[4] == before.Root.Subject
		}, "%s never pinned the new root next to the old one: %v", a.id, pinnedSubjects(t, a.dir))
	}
	e.rotateAndWait(agents, rot)
	info = e.caStatus()
	if info.PreviousRoot != nil || info.Cross != nil {
		t.Fatalf("ca status after retirement = %+v; want the new root alone", info)
	}
	for _, a := range agents {
		testkit.Eventually(t, 60*time.Second, func() bool {
			s := pinnedSubjects(t, a.dir)
			return len(s) == 2 && s[0] == rot.Intermediate.Subject && s[1] == info.Root.Subject
		}, "%s does not pin the new root alone: %v", a.id, pinnedSubjects(t, a.dir))
	}
	if got := e.rotationSteps(); strings.Join(got, ",") != "rooted,moving,retired" {
		t.Errorf("ca.rotation events = %v, want rooted, moving, retired", got)
	}
	// An agent restarted now trusts the hub only through the new root it pinned.
	a := agents[1]
	a.cmd.Process.Kill()
	<-a.exited
	testkit.Eventually(t, 30*time.Second, func() bool { return !e.summary(a.id).Online }, "%s still online after its kill", a.id)
	a.cmd = exec.Command(e.bin, "run", "--dir", a.dir)
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.exited = make(chan error, 1)
	go func() { a.exited <- a.cmd.Wait() }()
	testkit.Eventually(t, 60*time.Second, func() bool { return e.summary(a.id).Online }, "%s never came back after the root rotation", a.id)
	// A new device enrolls with the new root's fingerprint, as token create prints it.
	n := e.startAgent("plug-new", "new plug", "plugco")
	if s := pinnedSubjects(t, n.dir); len(s) != 2 || s[1] != info.Root.Subject {
		t.Errorf("a device enrolled after the root rotation pins %v, want the new root", s)
	}
}
