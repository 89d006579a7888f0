package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// hearth-fleet (agent/cmd/hearth-fleet) as a process of the end-to-end tests: the devices'
// side, the real agent code with one MQTT session per device.

// fleetView is the part of hearth-fleet's --state file the test reads
// (agent/internal/fleet.Summary; the gateway module does not import the agent's).
type fleetView struct {
	Phase           string         `json:"phase"`
	At              time.Time      `json:"at"`
	Enrolled        int            `json:"enrolled"`
	EnrollFailures  map[string]int `json:"enroll_failures"`
	Online          int            `json:"online"`
	Renewing        int            `json:"renewing"`
	Committed       int            `json:"renewals_committed"`
	DevicesRenewed  int            `json:"devices_renewed"`
	AllRenewed      bool           `json:"all_renewed"`
	Failed          int            `json:"renewals_failed"`
	Failures        map[string]int `json:"failures"`
	FailureExamples []string       `json:"failure_examples"`
	DeviceList      []fleetDevice  `json:"device_list"`
}

// fleetDevice is one device as hearth-fleet sees it.
type fleetDevice struct {
	ID          string    `json:"id"`
	Serial      string    `json:"serial"`
	Online      bool      `json:"online"`
	Renewals    int       `json:"renewals"`
	Failures    int       `json:"failures"`
	Error       string    `json:"error"`
	LastAttempt time.Time `json:"last_attempt"`
	LastCommit  time.Time `json:"last_commit"`
}

// fleetProcess is a running `hearth-fleet run`.
type fleetProcess struct {
	cmd            *exec.Cmd
	state          string
	stdout, stderr bytes.Buffer  // read only once it exited
	done           chan struct{} // closed when it exited, with err
	err            error
}

// fleetStateEvery is the interval at which hearth-fleet rewrites its state file.
const fleetStateEvery = 50 * time.Millisecond

// startFleet builds hearth-fleet and runs it against the hub at addr with n devices, their
// tokens minted with the admin password, and extra flags, until stopped.
func startFleet(t *testing.T, addr, caFile, state string, n int, extra ...string) *fleetProcess {
	t.Helper()
	f := &fleetProcess{state: state, done: make(chan struct{})}
	args := append([]string{"run", "--hub", "mqtts://" + addr, "--ca", caFile, "--devices", strconv.Itoa(n),
		"--concurrency", "32", "--progress", fleetStateEvery.String(), "--state", state, "--json", "--duration", "1h"}, extra...)
	f.cmd = exec.Command(buildFleet(t), args...)
	f.cmd.Env = append(os.Environ(), "HEARTH_ADMIN_PASSWORD="+e2eAdminPassword)
	f.cmd.Stdout, f.cmd.Stderr = &f.stdout, &f.stderr
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { f.err = f.cmd.Wait(); close(f.done) }()
	t.Cleanup(func() {
		select {
		case <-f.done:
		default:
			f.cmd.Process.Kill()
			<-f.done
		}
		if t.Failed() {
			t.Logf("hearth-fleet stderr (end):\n%s", tailBytes(f.stderr.Bytes(), 4<<10))
		}
	})
	return f
}

// view reads the fleet's state file.
func (f *fleetProcess) view(t *testing.T) fleetView {
	t.Helper()
	for {
		b, err := os.ReadFile(f.state)
		var v fleetView
		if err == nil && json.Unmarshal(b, &v) == nil {
			return v
		}
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		select {
		case <-f.done:
			t.Fatalf("hearth-fleet exited: %v\n%s", f.err, tailBytes(f.stderr.Bytes(), 4<<10))
		case <-time.After(fleetStateEvery):
		}
	}
}

// viewAfter reads the fleet's state as of at or later.
func (f *fleetProcess) viewAfter(t *testing.T, at time.Time) fleetView {
	t.Helper()
	var v fleetView
	testkit.Eventually(t, 10*time.Second, func() bool { v = f.view(t); return !v.At.Before(at) },
		"hearth-fleet's state file is not rewritten")
	return v
}

// waitReady waits until every device was started (enrolled and connected, or failed to).
func (f *fleetProcess) waitReady(t *testing.T, limit time.Duration) fleetView {
	t.Helper()
	var v fleetView
	testkit.Eventually(t, limit, func() bool { v = f.view(t); return v.Phase != "starting" },
		"hearth-fleet is not ready: %v", testkit.Lazy(func() string { return fmt.Sprintf("%d enrolled", v.Enrolled) }))
	return v
}

// stop ends the fleet with SIGINT and returns its final summary.
func (f *fleetProcess) stop(t *testing.T) fleetView {
	t.Helper()
	f.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-f.done:
		if f.err != nil {
			t.Fatalf("hearth-fleet: %v\n%s", f.err, tailBytes(f.stderr.Bytes(), 4<<10))
		}
	case <-time.After(time.Minute):
		t.Fatal("hearth-fleet did not stop within a minute of SIGINT")
	}
	var v fleetView
	if err := json.Unmarshal(f.stdout.Bytes(), &v); err != nil {
		t.Fatalf("hearth-fleet summary: %v\n%s", err, tailBytes(f.stdout.Bytes(), 4<<10))
	}
	return v
}

var (
	fleetOnce sync.Once
	fleetPath string
	fleetErr  error
)

// buildFleet builds hearth-fleet from the agent module, once per test run.
func buildFleet(t *testing.T) string {
	t.Helper()
	fleetOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hearth-fleet-bin")
		if err != nil {
			fleetErr = err
			return
		}
		fleetPath = filepath.Join(dir, "hearth-fleet")
		cmd := exec.Command("go", "build", "-o", fleetPath, "./cmd/hearth-fleet")
		cmd.Dir = filepath.Join("..", "..", "..", "agent")
		if out, err := cmd.CombinedOutput(); err != nil {
			fleetErr = fmt.Errorf("build hearth-fleet: %v\n%s", err, out)
		}
	})
	if fleetErr != nil {
		t.Fatal(fleetErr)
	}
	return fleetPath
}

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
