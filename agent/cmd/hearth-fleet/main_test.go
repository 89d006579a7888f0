package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/fleet"
	"github.com/hearth-pki/hearth/agent/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of progress lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestRunUntilRenewed runs the command against a test hub with a tokens file: the state file
// says when the fleet is ready, the hub commands every device, and the JSON summary at exit
// lists each device's new serial.
func TestRunUntilRenewed(t *testing.T) {
	ca := testkit.NewCA(t, "Cmd")
	b := testkit.StartBroker(t, ca, false)
	hub := testkit.StartResponder(t, b)
	hub.PublishCA() // the broker does not present its root: devices read it from the CA topic
	dir := t.TempDir()
	caFile := filepath.Join(dir, "root.pem")
	tokens := filepath.Join(dir, "tokens")
	state := filepath.Join(dir, "state.json")
	os.WriteFile(caFile, testkit.PEM(ca.Root), 0o600)
	os.WriteFile(tokens, []byte("# id token\nlamp-a hst_1\nlamp-b hst_2\nlamp-c hst_3\n"), 0o600)

	var stdout bytes.Buffer
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(t.Context(), []string{"run", "--hub", b.URL, "--ca", caFile, "--devices", "2", "--tokens", tokens,
			"--until-renewed", "--duration", "1m", "--progress", "20ms", "--state", state, "--json", "--timeout", "10s"},
			&stdout, &stderr, func(string) string { return "" })
	}()
	deadline := time.Now().Add(time.Minute)
	for {
		var s fleet.Summary
		if b, err := os.ReadFile(state); err == nil && json.Unmarshal(b, &s) == nil && s.Phase != fleet.PhaseStarting {
			if s.Online != 2 {
				t.Fatalf("ready with %d devices online, want 2: %+v\n%s", s.Online, s, stderr.String())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the state file never said ready:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	hub.Command("lamp-a", "c1", protocol.ActionRenew)
	hub.Command("lamp-b", "c2", protocol.ActionRekey)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run() = %v\n%s", err, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("run did not return:\n%s", stderr.String())
	}
	var s fleet.Summary
	if err := json.Unmarshal(stdout.Bytes(), &s); err != nil {
		t.Fatalf("summary JSON: %v\n%s", err, stdout.String())
	}
	if s.Committed != 2 || !s.AllRenewed || s.Failed != 0 || len(s.DeviceList) != 2 || s.DeviceList[0].ID != "lamp-a" {
		t.Errorf("summary = %+v, want lamp-a and lamp-b renewed once each", s)
	}
	commits := map[string]bool{}
	for len(hub.Commits) > 0 {
		if c := <-hub.Commits; c.Outcome == protocol.OutcomeCommitted {
			commits[c.Serial] = true
		}
	}
	for _, d := range s.DeviceList {
		if !commits[d.Serial] || d.Renewals != 1 {
			t.Errorf("device %+v: want one renewal, its serial committed", d)
		}
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--ca", "x", "--devices", "1", "--tokens", "t"}, "--hub, --ca and --devices are required"},
		{[]string{"run", "--hub", "mqtts://h:1", "--ca", "x", "--devices", "1"}, "--tokens FILE or --admin-password"},
		{[]string{"fly"}, `unknown command "fly"`},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		err := run(t.Context(), tt.args, &out, &errb, func(string) string { return "" })
		if code := exitCode(err, &errb); code != 2 || !strings.Contains(errb.String(), tt.want) {
			t.Errorf("run(%q) exit %d, stderr %q; want 2 and %q", tt.args, code, errb.String(), tt.want)
		}
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"version"}, &out, &out, nil); err != nil || !strings.HasPrefix(out.String(), "hearth-fleet ") {
		t.Errorf("version: %v, %q", err, out.String())
	}
}
