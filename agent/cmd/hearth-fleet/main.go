// Command hearth-fleet simulates a fleet of Hearth devices against a hub, each one the real
// agent code with its own MQTT session, to size a hub and to drive its storm benchmarks and
// end-to-end tests. See agent/README.md, "Fleet simulator".
//
//	hearth-fleet run --hub mqtts://HOST:PORT --ca FILE --devices N (--tokens FILE | --admin-password P)
//	                 [--admin-user U] [--id-prefix sim-] [--concurrency K] [--keys-dir DIR]
//	                 [--duration D] [--until-renewed] [--state FILE] [--json]
//	hearth-fleet version
//
// Exit status: 0 success; 1 failure (also: --until-renewed and the duration ended first);
// 2 usage error.
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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
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
			fmt.Fprintln(stderr, "hearth-fleet:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "hearth-fleet:", err)
	return 1
}
