// Command hearth-agent keeps a device's Hearth certificate valid: it enrolls the device with
// the hub, renews its certificate with rollback, and reports its health. See agent/README.md.
//
//	hearth-agent enroll --hub mqtts://HOST:PORT --id ID --token T --ca-fingerprint SHA256:...
//	hearth-agent run [--dir /etc/hearth] [--on-renew 'systemctl reload nginx']
//	hearth-agent status [--dir /etc/hearth] [--json]
//	hearth-agent renew [--dir /etc/hearth]
//	hearth-agent version
//
// Exit status: 0 success; 1 failure; 2 usage error or (status) no certificate; 3 (status)
// certificate expired.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=1.2.3".
var version = "dev"

// buildTime may be set at build time (-X main.buildTime=2026-11-25T12:00:00Z); otherwise
// the VCS commit time stamped by the Go toolchain is used, when present.
var buildTime = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error // printed if not nil
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitCode prints err (if any) and returns the process exit status for it.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "hearth-agent:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "hearth-agent:", err)
	return 1
}
