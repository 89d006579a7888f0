package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// agentTarget is one of the binaries scripts/build-agents.sh ships, the qemu-user emulator
// that runs it ("" = natively) and the CPU model it emulates: the oldest the target is built
// for (ARMv5 on an ARM926, soft-float MIPS on cores without an FPU), so that an instruction
// the target's CPUs lack would end the test with SIGILL.
type agentTarget struct {
	name, qemu, cpu string
}

// agentTargets are the nine shipped binaries (scripts/build-agents.sh, "targets").
var agentTargets = []agentTarget{
	{"linux-amd64", "qemu-x86_64-static", "qemu64"},
	{"linux-arm64", "qemu-aarch64-static", "cortex-a53"},
	{"linux-armv5", "qemu-arm-static", "arm926"},
	{"linux-armv6", "qemu-arm-static", "arm1176"},
	{"linux-armv7", "qemu-arm-static", "cortex-a7"},
	{"linux-mips", "qemu-mips-static", "24Kc"},
	{"linux-mipsle", "qemu-mipsel-static", "24Kc"},
	{"linux-mips64", "qemu-mips64-static", "5KEc"},
	{"linux-mips64le", "qemu-mips64el-static", "5KEc"},
}

// buildAgents runs scripts/build-agents.sh into a temporary directory and returns it: the
// test runs the very files a release ships. Each is checked against the script's SHA256SUMS.
func buildAgents(t *testing.T) string {
	t.Helper()
	testkit.RequirePeer(t, "xz") // the script reports each binary's xz size
	dist := t.TempDir()
	cmd := exec.Command("bash", filepath.Join("..", "..", "..", "scripts", "build-agents.sh"), "e2e")
	cmd.Env = append(os.Environ(), "DIST="+dist)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/build-agents.sh: %v\n%s", err, out)
	}
	sizes, err := os.ReadFile(filepath.Join(dist, "SIZES.md"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scripts/build-agents.sh built:\n%s", sizes)
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		sum, name, _ := strings.Cut(line, "  ")
		want[name] = sum
	}
	for _, tgt := range agentTargets {
		name := "hearth-agent-" + tgt.name
		b, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != want[name] {
			t.Fatalf("%s does not match the script's SHA256SUMS", name)
		}
	}
	return dist
}

// native reports whether the target is the host's own (amd64 on an amd64 host), run without
// an emulator.
func (tgt agentTarget) native() bool {
	return tgt.name == "linux-amd64" && runtime.GOOS == "linux" && runtime.GOARCH == "amd64"
}

// agentCmd runs the agent binary: natively when it is the host's, else under its emulator.
func agentCmd(tgt agentTarget, bin string, args ...string) *exec.Cmd {
	if tgt.qemu == "" {
		return exec.Command(bin, args...)
	}
	// -cpu: the oldest core the target is built for (agentTarget).
	return exec.Command(tgt.qemu, append([]string{"-cpu", tgt.cpu, bin}, args...)...)
}

var fingerprintRe = regexp.MustCompile(`SHA256:[0-9a-f]{64}`)

// agentRun is what one target's run measured, for the summary. peakRSS is the VmHWM of the
// process running `hearth-agent run`, in KiB, read just before SIGTERM: under qemu-user the
// emulator's, guest included (getrusage cannot tell: a child started by os/exec shares the
// test's memory until exec, and Linux counts that in its maximum).
type agentRun struct {
	peakRSS  int64
	duration time.Duration
}

// TestAgentsEndToEnd runs the nine agent binaries that scripts/build-agents.sh ships, each
// under its qemu-user (amd64 natively on an amd64 host), one after the other against one real
// hub process: each enrolls with the line the hub printed, refuses a wrong CA fingerprint,
// runs, renews to a new serial on the hub's command, reports it in `status`, and rolls back a
// renewal whose reconnection with the new certificate fails. The agents reach the hub through
// a TCP relay, which the hub advertises (so the printed line names it) and which refuses that
// one reconnection. The peak RSS of each `run` is logged at the end (README.md, "Performance").
func TestAgentsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the nine agents and runs them against a real hub process")
	}
	dist := buildAgents(t)
	data := t.TempDir()
	relay := testkit.StartRelay(t, "")
	hub := startHubProcess(t, data, "127.0.0.1:0", "--advertise", relay.Addr)
	relay.SetTarget(hub.addr)

	runs := map[string]agentRun{}
	for _, tgt := range agentTargets {
		t.Run(tgt.name, func(t *testing.T) {
			if tgt.native() {
				tgt.qemu = ""
			} else {
				tgt.qemu = testkit.RequirePeer(t, tgt.qemu)
			}
			start := time.Now()
			e := &agentE2E{t: t, tgt: tgt, bin: filepath.Join(dist, "hearth-agent-"+tgt.name), data: data, relay: relay}
			rss := e.run()
			runs[tgt.name] = agentRun{peakRSS: rss, duration: time.Since(start)}
		})
	}
	var sum strings.Builder
	fmt.Fprintf(&sum, "| target | emulator, CPU | peak RSS of run | test time |\n|---|---|---:|---:|\n")
	for _, tgt := range agentTargets {
		r, ok := runs[tgt.name]
		if !ok {
			continue
		}
		emu := tgt.qemu + " -cpu " + tgt.cpu
		if tgt.native() {
			emu = "native"
		}
		fmt.Fprintf(&sum, "| %s | %s | %.1f MiB | %.1f s |\n", tgt.name, emu, float64(r.peakRSS)/1024, r.duration.Seconds())
	}
	t.Logf("agents end to end:\n%s", sum.String())
}

// agentE2E is one target's run through the scenario of TestAgentsEndToEnd.
type agentE2E struct {
	t     *testing.T
	tgt   agentTarget
	bin   string
	data  string
	relay *testkit.Relay
}

// cli runs a hearth-gateway client command against the hub.
func (e *agentE2E) cli(args ...string) []byte {
	e.t.Helper()
	var out, errb bytes.Buffer
	env := func(string) string { return "" }
	if err := run(e.t.Context(), append(args, "--data", e.data), nil, &out, &errb, env); err != nil {
		e.t.Fatalf("hearth-gateway %v: %v %s", args, err, errb.String())
	}
	return out.Bytes()
}

// run is the scenario; it returns the peak RSS of `hearth-agent run`, in KiB.
func (e *agentE2E) run() int64 {
	t, tgt := e.t, e.tgt
	id := "e2e-" + strings.TrimPrefix(tgt.name, "linux-")
	dir := t.TempDir()

	// Enroll with the line the hub printed, as printed (the hub advertises the relay).
	var tok protocol.TokenCreated
	if err := json.Unmarshal(e.cli("token", "create", "--device", id, "--json"), &tok); err != nil {
		t.Fatal(err)
	}
	args := strings.Fields(tok.Command)
	if len(args) < 2 || args[0] != "hearth-agent" || args[1] != "enroll" || strings.ContainsAny(tok.Command, `'"\$`) ||
		!strings.Contains(tok.Command, "--hub mqtts://"+e.relay.Addr+" ") {
		t.Fatalf("the hub printed %q, want a plain hearth-agent enroll line naming mqtts://%s", tok.Command, e.relay.Addr)
	}
	out, err := agentCmd(tgt, e.bin, append(args[1:], "--dir", dir)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s --dir %s: %v\n%s", tok.Command, dir, err, out)
	}
	if !strings.Contains(string(out), "enrolled "+id) {
		t.Errorf("enroll printed %q, want it to say enrolled %s", out, id)
	}
	first := e.status(dir)
	if first.Serial == "" {
		t.Fatalf("status after enroll has no serial: %+v", first)
	}

	// A wrong fingerprint is refused before anything is sent.
	fp := fingerprintRe.FindString(tok.Command)
	last := "0"
	if strings.HasSuffix(fp, "0") {
		last = "1"
	}
	bad := fp[:len(fp)-1] + last
	out, err = agentCmd(tgt, e.bin, "enroll", "--hub", "mqtts://"+e.relay.Addr, "--id", id+"-x", "--token", "hst_x",
		"--ca-fingerprint", bad, "--dir", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(strings.ToLower(string(out)), "fingerprint") {
		t.Errorf("enroll with a wrong fingerprint: %v\n%s", err, out)
	}

	// run, and a renewal on the hub's command.
	runCmd := agentCmd(tgt, e.bin, "run", "--dir", dir)
	logs := &syncBuffer{}
	runCmd.Stdout, runCmd.Stderr = logs, logs
	if err := runCmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- runCmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			runCmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s agent log:\n%s", tgt.name, logs.String())
		}
	}()
	testkit.Eventually(t, 120*time.Second, func() bool { return e.summary(id).Online }, "the hub never saw %s online", id)
	e.cli("renew", id)
	testkit.Eventually(t, 120*time.Second, func() bool {
		s := e.summary(id)
		return s.Serial != "" && s.Serial != first.Serial
	}, "the hub never recorded %s's renewal (still serial %s)", id, first.Serial)
	renewed := e.summary(id).Serial
	testkit.Eventually(t, 60*time.Second, func() bool { return e.status(dir).Serial == renewed },
		"the agent's status never showed the new serial %s", renewed)

	// A rollback: the relay refuses the next connection, the agent's reconnection with the
	// certificate the hub has just issued. The agent goes back to the previous one, reconnects
	// with it and reports the rollback, which the hub records.
	e.relay.RefuseNext(1)
	refused := e.relay.Refused()
	e.cli("renew", id)
	testkit.Eventually(t, 120*time.Second, func() bool {
		_, ok := e.event(id, protocol.EventRenewalRolledBack)
		return ok
	}, "the hub never recorded %s's rollback", id)
	st := e.status(dir)
	if st.Serial != renewed || !strings.Contains(st.LastError, "rolled back") {
		t.Errorf("status after the rollback: serial %s, last error %q; want serial %s and an error saying it rolled back", st.Serial, st.LastError, renewed)
	}
	if s := e.summary(id); s.Serial != renewed {
		t.Errorf("the hub holds serial %s after the rollback, want %s", s.Serial, renewed)
	}
	if n := e.relay.Refused() - refused; n != 1 {
		t.Errorf("the relay refused %d connections, want 1", n)
	}
	if ev, _ := e.event(id, protocol.EventRenewalRolledBack); ev.Data["cause"] != string(protocol.CauseReconnectRefused) {
		t.Errorf("rollback recorded with cause %q, want %s (the agent's report)", ev.Data["cause"], protocol.CauseReconnectRefused)
	}

	// Peak RSS, then SIGTERM: the agent announces itself offline and exits 0.
	rss := peakRSS(t, runCmd.Process.Pid)
	runCmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("hearth-agent run after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("hearth-agent run did not exit within 60s of SIGTERM")
	}
	return rss
}

// agentStatusJSON is the part of `hearth-agent status --json` the test reads.
type agentStatusJSON struct {
	Serial    string    `json:"serial"`
	NotAfter  time.Time `json:"not_after"`
	LastError string    `json:"last_error"`
}

func (e *agentE2E) status(dir string) agentStatusJSON {
	e.t.Helper()
	out, err := agentCmd(e.tgt, e.bin, "status", "--dir", dir, "--json").Output()
	if err != nil {
		e.t.Fatalf("status: %v\n%s", err, out)
	}
	var s agentStatusJSON
	if err := json.Unmarshal(out, &s); err != nil {
		e.t.Fatalf("status JSON: %v\n%s", err, out)
	}
	return s
}

// summary returns the hub's summary of device id (zero if it has none).
func (e *agentE2E) summary(id string) protocol.DeviceSummary {
	e.t.Helper()
	var list []protocol.DeviceSummary
	if err := json.Unmarshal(e.cli("devices", "--json"), &list); err != nil {
		e.t.Fatal(err)
	}
	for _, d := range list {
		if d.ID == id {
			return d
		}
	}
	return protocol.DeviceSummary{}
}

// event returns an audit event of kind for device id, if the hub recorded one.
func (e *agentE2E) event(id string, kind protocol.EventType) (protocol.AuditEvent, bool) {
	e.t.Helper()
	var evs []protocol.AuditEvent
	if err := json.Unmarshal(e.cli("events", "--device", id, "--json"), &evs); err != nil {
		e.t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Kind == kind {
			return ev, true
		}
	}
	return protocol.AuditEvent{}, false
}

// peakRSS returns the VmHWM of process pid, in KiB.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kib
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// syncBuffer is a bytes.Buffer safe for the process's output and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
