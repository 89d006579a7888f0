package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

func TestClientWithoutHub(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"devices", "--data", t.TempDir()}, nil, &out, &errb, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "not running") || !strings.Contains(err.Error(), "hearth-gateway serve") {
		t.Errorf("devices without a hub = %v, want a message that the hub is not running and how to start it", err)
	}
}

// TestServeCLIAndSIGTERM runs the real binary: client commands against it, then SIGTERM must
// stop it with exit status 0 within 10 s.
func TestServeCLIAndSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real hub process")
	}
	data := t.TempDir()
	hub := startHubProcess(t, data, "127.0.0.1:0")
	env := func(string) string { return "" }
	cli := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if err := run(t.Context(), append(args, "--data", data), nil, &out, &errb, env); err != nil {
			t.Fatalf("%v: %v %s", args, err, errb.String())
		}
		return out.String()
	}
	out := cli("token", "create", "--device", "camera-door", "--name", "Front door")
	for _, want := range []string{"hst_", "hearth-agent enroll --hub mqtts://", "--id camera-door", "--ca-fingerprint SHA256:"} {
		if !strings.Contains(out, want) {
			t.Errorf("token create output lacks %q:\n%s", want, out)
		}
	}
	if out := cli("devices"); !strings.Contains(out, "no devices yet") {
		t.Errorf("devices before any enrollment:\n%s", out)
	}
	var list []protocol.DeviceSummary
	if err := json.Unmarshal([]byte(cli("devices", "--json")), &list); err != nil || len(list) != 0 {
		t.Errorf("devices --json = %v, %v; want an empty list", list, err)
	}
	var errb bytes.Buffer
	if err := run(t.Context(), []string{"device", "show", "nope", "--data", data}, nil, &bytes.Buffer{}, &errb, env); err == nil ||
		!strings.Contains(err.Error(), "not in the inventory") {
		t.Errorf("device show of an unknown device = %v, want a clear error", err)
	}
	if out := cli("ca", "show"); !strings.Contains(out, "SHA256:") {
		t.Errorf("ca show:\n%s", out)
	}
	if out := cli("audit", "verify"); !strings.Contains(out, "intact") {
		t.Errorf("audit verify:\n%s", out)
	}

	start := time.Now()
	hub.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- hub.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("hub after SIGTERM: %v, want exit status 0", err)
		}
		t.Logf("stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("hub still running 10 s after SIGTERM")
	}
	if _, err := os.Stat(data + "/hearth.sock"); !os.IsNotExist(err) {
		t.Errorf("control socket left behind after a clean stop: %v", err)
	}
}
