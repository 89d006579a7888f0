package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

var (
	agentOnce sync.Once
	agentPath string
	agentErr  error
)

// buildAgent builds hearth-agent for this machine from the agent module, once per test run.
func buildAgent(t *testing.T) string {
	t.Helper()
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hearth-agent-bin")
		if err != nil {
			agentErr = err
			return
		}
		agentPath = filepath.Join(dir, "hearth-agent")
		cmd := exec.Command("go", "build", "-o", agentPath, "./cmd/hearth-agent")
		cmd.Dir = filepath.Join("..", "..", "..", "agent")
		cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentErr = fmt.Errorf("build hearth-agent: %v\n%s", err, out)
		}
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentPath
}

// TestBackupRestoreDrill is the restore drill with real processes: a hub process serves a
// running hearth-agent; `backup create` archives it while it runs; the hub is killed and
// its data directory deleted (the disk is lost); `backup restore` unpacks the archive into an
// empty directory and a new hub process starts on it. The agent, never restarted, reconnects
// with the certificate it has, renews on the restored hub's command, and never enrolls again.
func TestBackupRestoreDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two hub processes and an agent process")
	}
	agent := buildAgent(t)
	relay := testkit.StartRelay(t, "")
	dataA := filepath.Join(t.TempDir(), "data")
	hubA := startHubProcess(t, dataA, "127.0.0.1:0", "--advertise", relay.Addr)
	relay.SetTarget(hubA.addr)
	e := &agentE2E{t: t, tgt: agentTarget{name: "linux-native"}, bin: agent, data: dataA, relay: relay}

	const id = "porch-camera"
	var tok protocol.TokenCreated
	if err := json.Unmarshal(e.cli("token", "create", "--device", id, "--json"), &tok); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := strings.Fields(tok.Command)
	if out, err := exec.Command(agent, append(args[1:], "--dir", dir)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", tok.Command, err, out)
	}
	enrolled := e.status(dir).Serial
	runCmd := exec.Command(agent, "run", "--dir", dir)
	logs := &syncBuffer{}
	runCmd.Stdout, runCmd.Stderr = logs, logs
	if err := runCmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- runCmd.Wait() }()
	t.Cleanup(func() {
		runCmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	testkit.Eventually(t, 60*time.Second, func() bool { return e.summary(id).Online }, "hub A never saw %s online", id)

	// Back up while the hub runs, then lose the disk.
	archive := filepath.Join(t.TempDir(), "hearth.tar")
	out := e.cli("backup", "create", "--out", archive)
	if !strings.Contains(string(out), "backup written to "+archive) {
		t.Errorf("backup create printed %q", out)
	}
	hubA.kill()
	if err := os.RemoveAll(dataA); err != nil {
		t.Fatal(err)
	}

	// Restore into an empty directory, checking the keys with the passphrase, and start over.
	dataB := filepath.Join(t.TempDir(), "restored")
	var stdout, stderr strings.Builder
	env := func(k string) string {
		if k == "HEARTH_CA_PASSPHRASE" {
			return "e2e passphrase"
		}
		return ""
	}
	if err := run(t.Context(), []string{"backup", "restore", "--from", archive, "--data", dataB}, nil, &stdout, &stderr, env); err != nil {
		t.Fatalf("backup restore: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stdout.String(), "not checked") {
		t.Errorf("backup restore with the passphrase did not check the keys: %s", stdout.String())
	}
	hubB := startHubProcess(t, dataB, "127.0.0.1:0", "--advertise", relay.Addr)
	relay.SetTarget(hubB.addr)
	e.data = dataB

	// The running agent comes back by itself with the certificate it had.
	testkit.Eventually(t, 90*time.Second, func() bool { return e.summary(id).Online }, "the restored hub never saw %s online", id)
	if s := e.summary(id); s.Serial != enrolled {
		t.Errorf("restored hub holds serial %s for %s, want the enrolled %s", s.Serial, id, enrolled)
	}
	e.cli("renew", id)
	testkit.Eventually(t, 90*time.Second, func() bool {
		s := e.summary(id)
		return s.Serial != "" && s.Serial != enrolled
	}, "the restored hub never recorded %s's renewal", id)
	renewed := e.summary(id).Serial
	testkit.Eventually(t, 60*time.Second, func() bool { return e.status(dir).Serial == renewed },
		"the agent's status never showed the serial %s the restored hub issued", renewed)

	var evs []protocol.AuditEvent
	if err := json.Unmarshal(e.cli("events", "--device", id, "--json"), &evs); err != nil {
		t.Fatal(err)
	}
	tokens := 0
	for _, ev := range evs {
		if ev.Kind == protocol.EventTokenUsed {
			tokens++
		}
	}
	if tokens != 1 {
		t.Errorf("%d token.used events for %s, want the 1 of its enrollment (no re-enrollment after the restore)", tokens, id)
	}
	select {
	case err := <-exited:
		t.Fatalf("the agent exited during the drill: %v", err)
	default:
	}
	runCmd.Process.Signal(syscall.SIGTERM)
}
