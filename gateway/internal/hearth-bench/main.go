// Command hearth-bench is the load side of scripts/bench.sh's peer comparisons (README.md,
// Performance): it drives the hub and its peers (mosquitto, step-ca) with the same work from a
// process of its own, so that /proc of the server under test counts the server alone.
//
//	hearth-bench sessions --addr HOST:PORT --ca FILE --keys DIR --devices N [--concurrency 64] [--waves 1]
//	hearth-bench stepca-init --dir DIR --devices N [--port P]
//	hearth-bench rekey --url https://HOST:PORT --dir DIR --devices N [--concurrency 16]
//
// sessions opens one MQTT session over mutual TLS per device, as hearth-agent does (see
// session), with the identities hearth-fleet --keys-dir enrolled (DIR/<id>/current.pem),
// k at a time, prints each wave's wall time and holds the sessions. Between waves it waits for
// SIGUSR1, drops every session and connects them all again (a reconnection storm). It stops at
// SIGINT or SIGTERM. Against mosquitto the same identities work when mosquitto trusts the
// hub's root.
//
// stepca-init writes a step-ca configuration (root, intermediate, ca.json, no database) and
// one client certificate per device into DIR, without the step CLI; rekey then makes one
// mutual-TLS /rekey call per device (a new key, its CSR, a new certificate).
//
// It is benchmark tooling: nothing in the hub imports it, and it is built by scripts/bench.sh.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hearth-bench:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: hearth-bench sessions|stepca-init|rekey [flags] (see -h)")

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	switch args[0] {
	case "sessions":
		return runSessions(ctx, fs, args[1:], stdout)
	case "stepca-init":
		return runStepCAInit(fs, args[1:], stdout)
	case "rekey":
		return runRekey(ctx, fs, args[1:], stdout)
	}
	return errUsage
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}
