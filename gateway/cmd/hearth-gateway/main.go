// Command hearth-gateway is the Hearth hub: an MQTT broker, a certificate authority and a
// renewal orchestrator that keep a smart home's device certificates valid. `serve` runs it;
// the other subcommands manage the CA and talk to a running hub through its control socket.
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

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const usage = `usage: hearth-gateway <command> [flags]

Run the hub:
  serve [--config FILE] [--addon] [--data DIR] [--listen ADDR] ...   run the hub (see serve --help)

Certificate authority:
  ca init [--data DIR]             create the CA without starting the hub
  ca show [--data DIR] [--json]    show the root and intermediate

Talk to the running hub (control socket in the data directory):
  token create --device ID [--ttl 24h] [--name NAME] [--family F] [--json]
  devices [--json]                 list devices and their certificates
  device show ID [--json]          one device: certificates, attempts, events
  device import --device ID [--name N] [--family F] FILE
                                   track a device without an agent by its certificate (PEM)
  device sign --device ID [--name N] [--family F] [--out FILE] FILE
                                   sign a CSR (PEM) for a device without an agent
  renew ID                         renew a device now (commanded at once, or when it reconnects)
  renew --family F | --class C | --all [--rate 100/min] [--canary 5] [--abort-after 10%] [--rekey]
                                   a renewal campaign: canaries first, stops at the abort threshold
  campaigns [--json]               campaigns and their progress
  revoke ID [--reason TEXT]        revoke every certificate of a device
  remove ID                        revoke and delete a device
  events [--device ID] [--limit N] [--json]
  audit verify                     check the audit log's hash chain

Policy:
  policy check FILE                validate a policy file without applying it
  policy reload [--data DIR]       apply the policy file to the running hub (recorded with its diff)

Other:
  backup prepare|finish [--data DIR]  consistent inventory snapshot for backups (add-on hooks)
  admin hash                       read a password on stdin, print its hash for the config file
  version                          print the version

Every client command takes --data DIR (default ./hearth-data, or $HEARTH_DATA).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "hearth-gateway:", err)
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		os.Exit(1)
	}
}

// errUsage asks main to print the usage.
var errUsage = errors.New("usage")

// exitCode is an error carrying a specific exit status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// run dispatches a command line. It is main without the process: tests call it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) error {
	if len(args) == 0 {
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, stdout, stderr, env)
	case "ca":
		return runCA(ctx, rest, stdout, stderr, env)
	case "token", "devices", "device", "renew", "revoke", "remove", "campaigns", "events", "audit":
		return runClient(ctx, cmd, rest, stdout, stderr, env)
	case "policy":
		return runPolicy(ctx, rest, stdout, env)
	case "backup":
		return runBackup(ctx, rest, stdout, stderr, env)
	case "admin":
		return runAdmin(rest, stdin, stdout)
	case "version", "--version":
		fmt.Fprintln(stdout, "hearth-gateway", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "unknown command %q\n", cmd)
	return errUsage
}
