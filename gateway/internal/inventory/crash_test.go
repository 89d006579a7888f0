package inventory

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

const helperEnv = "HEARTH_INVENTORY_CRASH_DB"

// TestHelperProcess is not a test: run by TestCrashConsistency as a child process, it
// records issuances in a loop and prints each serial once RecordIssuance has returned.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process for TestCrashConsistency")
	}
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := s.CreateToken(ctx, Token{Hash: "h", DeviceID: "dev-0", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := range 1_000_000 { // bounded in case the parent never kills it
		serial := fmt.Sprintf("%08x", i)
		in := issuance(fmt.Sprintf("dev-%d", i%50), serial, serial, t0.Add(time.Duration(i)*time.Second))
		if i == 0 {
			in.TokenHash = "h"
		}
		if err := s.RecordIssuance(ctx, in); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if i%7 == 0 {
			if _, _, err := s.Activate(ctx, in.Device.ID, serial, in.Attempt.FinishedAt); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
		}
		fmt.Println(serial) // os.Stdout is unbuffered: the line leaves once the commit returned
	}
	os.Exit(0)
}

// TestCrashConsistency SIGKILLs a process in the middle of writing and checks that every
// issuance it saw committed is in the database and that the audit chain still verifies.
func TestCrashConsistency(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var committed []string
	sc := bufio.NewScanner(out)
	for len(committed) < 200 && sc.Scan() {
		committed = append(committed, sc.Text())
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no deferred code, no Close
		t.Fatal(err)
	}
	for sc.Scan() { // lines already in the pipe were committed too
		committed = append(committed, sc.Text())
	}
	cmd.Wait()
	if len(committed) < 200 {
		t.Fatalf("child printed %d serials before ending, want at least 200", len(committed))
	}

	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(after crash) = %v", err)
	}
	defer s.Close()
	for _, serial := range committed {
		if _, err := s.Certificate(t.Context(), serial); err != nil {
			t.Errorf("Certificate(%s) printed as committed = %v", serial, err)
		}
	}
	for _, dev := range []string{"dev-0", "dev-7"} {
		if _, err := s.ActiveCertificate(t.Context(), dev); err != nil {
			t.Errorf("ActiveCertificate(%s) = %v", dev, err)
		}
	}
	if err := s.VerifyAudit(t.Context()); err != nil {
		t.Errorf("VerifyAudit(after crash) = %v", err)
	}
	t.Logf("%d committed issuances survived SIGKILL", len(committed))
}
