package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// TestRevokedAgent is issue 12's proof with real processes: a running hearth-agent whose
// device is revoked (hearth-gateway revoke --reason keyCompromise) loses its session, takes
// the hub's new CRL, and `hearth-agent status` says revoked and exits 4; its reconnections
// are refused.
func TestRevokedAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real hub process and a real agent")
	}
	agent := buildAgent(t)
	data := t.TempDir()
	hub := startHubProcess(t, data, "127.0.0.1:0")
	e := &agentE2E{t: t, tgt: agentTarget{name: "linux-amd64"}, bin: agent, data: data}
	const id = "porch-camera"
	var tok protocol.TokenCreated
	if err := json.Unmarshal(e.cli("token", "create", "--device", id, "--json"), &tok); err != nil {
		t.Fatal(err)
	}
	fp := fingerprintRe.FindString(tok.Command)
	dir := t.TempDir()
	if out, err := exec.Command(agent, "enroll", "--hub", "mqtts://"+hub.addr, "--id", id, "--token", tok.Token,
		"--ca-fingerprint", fp, "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("hearth-agent enroll: %v\n%s", err, out)
	}
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
	if out, err := exec.Command(agent, "status", "--dir", dir).CombinedOutput(); err != nil || !strings.Contains(string(out), "verifies") {
		t.Fatalf("status before the revocation: %v\n%s", err, out)
	}

	out := string(e.cli("revoke", id, "--reason", "keyCompromise", "--note", "camera stolen"))
	if !strings.Contains(out, "revoked (keyCompromise)") || !strings.Contains(out, "1 session(s) dropped") || !strings.Contains(out, "quarantined") {
		t.Errorf("revoke printed %q", out)
	}
	var status string
	var code int
	testkit.Eventually(t, 60*time.Second, func() bool {
		b, err := exec.Command(agent, "status", "--dir", dir).CombinedOutput()
		status, code = string(b), 0
		if x, ok := err.(*exec.ExitError); ok {
			code = x.ExitCode()
		}
		return code != 0
	}, "hearth-agent status never failed after the revocation")
	if code != 4 || !strings.Contains(status, "REVOKED") || !strings.Contains(status, "keyCompromise") {
		t.Errorf("status after the revocation: exit %d\n%s\nwant exit 4 saying REVOKED (keyCompromise)", code, status)
	}
	// The agent keeps trying; the hub refuses each reconnection.
	testkit.Eventually(t, 60*time.Second, func() bool {
		b, _ := exec.Command(agent, "status", "--dir", dir, "--json").Output()
		var st struct {
			Connected    bool   `json:"connected"`
			ConnectError string `json:"connect_error"`
		}
		return json.Unmarshal(b, &st) == nil && !st.Connected && st.ConnectError != ""
	}, "the agent's reconnection was never refused")
	if s := e.summary(id); s.Online || s.State != "quarantined" {
		t.Errorf("hub summary after the revocation: online %v state %q, want offline and quarantined", s.Online, s.State)
	}
}
