package keystore

import (
	"bufio"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperDirEnv tells the test binary, re-executed as a child, to run the install loop in the
// directory it names.
const helperDirEnv = "HEARTH_KEYSTORE_CRASH_DIR"

// TestHelperInstallLoop is not a test: it is the child of TestCrashDuringInstall. It installs
// generation after generation with increasing serials, printing "start N" before each Install,
// until it is killed.
func TestHelperInstallLoop(t *testing.T) {
	path := os.Getenv(helperDirEnv)
	if path == "" {
		t.Skip("helper process of TestCrashDuringInstall")
	}
	d, err := Open(path, Options{ExportPEM: true})
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(2)
	}
	var serial int64
	switch p, err := d.Current(); {
	case err == nil:
		serial = p.Leaf().SerialNumber.Int64()
	case !errors.Is(err, ErrNoIdentity):
		fmt.Printf("error %v\n", err)
		os.Exit(2)
	}
	ca := newTestCA(t)
	fmt.Println("ready") // os.Stdout is unbuffered: each line is out before the next step.
	for {
		serial++
		next := newPair(t, ca, serial)
		fmt.Printf("start %d\n", serial)
		if err := d.Install(next.Key, next.Chain); err != nil {
			fmt.Printf("error %v\n", err)
			os.Exit(2)
		}
	}
}

// TestCrashDuringInstall SIGKILLs a process that installs generations in a tight loop, at a
// random instant, many times, and checks after each kill that the directory opens on a
// complete, matching pair: the last generation the child started, or the one before it.
func TestCrashDuringInstall(t *testing.T) {
	rounds := 40
	if testing.Short() {
		rounds = 10
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	path := t.TempDir()
	var installed int64 // serial in current.pem after the previous round; 0 for none
	kills := map[string]int{}
	for round := range rounds {
		lastStarted := runAndKill(t, path, time.Duration(rng.IntN(31))*time.Millisecond)
		kills[crashPoint(path)]++

		d, err := Open(path, Options{ExportPEM: true})
		if err != nil {
			t.Fatalf("round %d: Open() = %v", round, err)
		}
		checkNoTemps(t, path)
		p, err := d.Current()
		if err != nil {
			if lastStarted <= 1 && installed == 0 && errors.Is(err, ErrNoIdentity) {
				continue // killed before the very first install completed: there was nothing yet
			}
			t.Fatalf("round %d: Current() = %v, want a pair (last started %d)", round, err, lastStarted)
		}
		if err := p.check(); err != nil {
			t.Fatalf("round %d: Current() returned an invalid pair: %v", round, err)
		}
		got := p.Leaf().SerialNumber.Int64()
		switch {
		case lastStarted == 0 && got != installed:
			t.Fatalf("round %d: Current() serial = %d, want %d (child installed nothing)", round, got, installed)
		case lastStarted != 0 && got != lastStarted && got != lastStarted-1:
			t.Fatalf("round %d: Current() serial = %d, want %d or %d", round, got, lastStarted, lastStarted-1)
		}
		if prev, err := d.Previous(); err == nil {
			// Equal when killed between the rotation of previous.pem and the switch of current.pem.
			if ps := prev.Leaf().SerialNumber.Int64(); ps > got || ps < got-1 {
				t.Fatalf("round %d: Previous() serial = %d, want %d or %d", round, ps, got-1, got)
			}
		} else if !errors.Is(err, ErrNoIdentity) {
			t.Fatalf("round %d: Previous() = %v", round, err)
		}
		// Open repaired whatever export the kill interrupted.
		checkExports(t, path, big.NewInt(got).Text(16))
		installed = got
	}
	t.Logf("%d rounds, %d generations installed; directory state at the kills: %v", rounds, installed, kills)
}

// runAndKill runs TestHelperInstallLoop on path, SIGKILLs it delay after it is ready, and
// returns the last serial it started to install (0 for none).
func runAndKill(t *testing.T, path string, delay time.Duration) int64 {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperInstallLoop$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperDirEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.ENOEXEC) {
			// qemu-user without binfmt_misc runs the test binary but cannot exec it again.
			t.Skipf("cannot re-execute the test binary here: %v", err)
		}
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper did not start: %q, stderr: %s", lines.Text(), stderr.String())
	}
	time.Sleep(delay) // not a timed assertion: the delay only picks the instant of the kill
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var last int64
	for lines.Scan() {
		line := lines.Text()
		if s, ok := strings.CutPrefix(line, "start "); ok {
			if last, err = strconv.ParseInt(s, 10, 64); err != nil {
				t.Fatalf("helper printed %q", line)
			}
		} else if strings.HasPrefix(line, "error ") {
			t.Fatalf("helper failed: %s", line)
		}
	}
	if err := cmd.Wait(); err == nil {
		t.Fatalf("helper exited cleanly, want it killed; stderr: %s", stderr.String())
	}
	return last
}

// crashPoint names the instant of an install the directory was left at, from the temporary
// files present, so the test log shows that the kills landed all over the sequence.
func crashPoint(path string) string {
	tmps, _ := filepath.Glob(filepath.Join(path, "*.tmp"))
	if len(tmps) == 0 {
		return "between files"
	}
	names := make([]string, len(tmps))
	for i, p := range tmps {
		names[i] = filepath.Base(p)
	}
	return strings.Join(names, "+")
}
