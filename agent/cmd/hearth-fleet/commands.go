package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/fleet"
	"github.com/hearth-pki/hearth/agent/internal/log"
	"github.com/hearth-pki/hearth/protocol"
)

const usage = `usage: hearth-fleet <command> [flags]

commands:
  run      --hub mqtts://HOST:PORT --ca FILE --devices N (--tokens FILE | --admin-password P [--admin-user U])
           [--id-prefix sim-] [--concurrency K] [--keys-dir DIR] [--duration D | --until-renewed] [--state FILE] [--json]
  version

Run "hearth-fleet run -h" for every flag.
`

// run parses args and runs one command.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitError{code: 2}
	}
	switch cmd, args := args[0], args[1:]; cmd {
	case "run":
		return runFleet(ctx, args, stdout, stderr, getenv)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "hearth-fleet %s (protocol v%d, %s, %s/%s)\n", version, protocol.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return &exitError{code: 2, err: fmt.Errorf("unknown command %q", cmd)}
	}
}

// options are the flags of run.
type options struct {
	hub, caFile, tokens, adminUser, adminPassword string
	idPrefix, keysDir, key, topicPrefix, state    string
	logLevel, logFormat                           string
	devices, concurrency                          int
	timeout, duration, progress, reconnectMax     time.Duration
	untilRenewed, asJSON                          bool
}

func parseRun(args []string, stderr io.Writer, getenv func(string) string) (options, error) {
	var o options
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.hub, "hub", "", "hub address, mqtts://HOST:PORT (required)")
	fs.StringVar(&o.caFile, "ca", "", "the hub's root CA, PEM (DATA/ca/root.pem on the hub; required): its fingerprint is pinned")
	fs.IntVar(&o.devices, "devices", 0, "number of devices (required)")
	fs.StringVar(&o.tokens, "tokens", "", "file of \"id token\" lines, one enrollment token per device")
	fs.StringVar(&o.adminUser, "admin-user", fleet.DefaultAdminUser, "hub admin name, to mint tokens through the bridge API")
	fs.StringVar(&o.adminPassword, "admin-password", "", "hub admin password (or $HEARTH_ADMIN_PASSWORD), to mint tokens through the bridge API")
	fs.StringVar(&o.idPrefix, "id-prefix", fleet.DefaultIDPrefix, "prefix of the generated device ids (without --tokens)")
	fs.IntVar(&o.concurrency, "concurrency", fleet.DefaultConcurrency, "devices enrolling or making their first connection at once")
	fs.StringVar(&o.keysDir, "keys-dir", "", "keep each device's keys in DIR/<id>, as hearth-agent does, and reuse the devices enrolled there (default: in memory)")
	fs.StringVar(&o.key, "key", "p256", "key algorithm: p256, p384, ed25519 or rsa2048")
	fs.StringVar(&o.topicPrefix, "prefix", protocol.DefaultPrefix, "topic prefix of the hub")
	fs.DurationVar(&o.timeout, "timeout", fleet.DefaultTimeout, "each device's connect, CSR reply and commit ack timeout")
	fs.DurationVar(&o.reconnectMax, "reconnect-max", 0, "cap each device's wait between connection attempts (default the agent's, 5m)")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (default: at SIGINT or SIGTERM)")
	fs.BoolVar(&o.untilRenewed, "until-renewed", false, "stop once every device has committed a renewal (exit status 1 if --duration ends first)")
	fs.DurationVar(&o.progress, "progress", fleet.DefaultProgressEvery, "interval between progress lines (stderr) and --state rewrites")
	fs.StringVar(&o.state, "state", "", "rewrite FILE with the summary as JSON (every device's serial included) at each progress line and at exit")
	fs.BoolVar(&o.asJSON, "json", false, "print the summary at exit as JSON")
	fs.StringVar(&o.logLevel, "log-level", "error", "level of the agents' logs (stderr): debug, info, warn, error or off")
	fs.StringVar(&o.logFormat, "log-format", "text", "format of the agents' logs: text or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, &exitError{code: 0}
		}
		return o, &exitError{code: 2}
	}
	if fs.NArg() > 0 {
		return o, &exitError{code: 2, err: fmt.Errorf("run: unexpected argument %q", fs.Arg(0))}
	}
	if o.adminPassword == "" {
		o.adminPassword = getenv("HEARTH_ADMIN_PASSWORD")
	}
	if o.hub == "" || o.caFile == "" || o.devices <= 0 {
		return o, &exitError{code: 2, err: errors.New("run: --hub, --ca and --devices are required")}
	}
	if o.tokens == "" && o.adminPassword == "" && o.keysDir == "" {
		return o, &exitError{code: 2, err: errors.New("run: give --tokens FILE or --admin-password (or $HEARTH_ADMIN_PASSWORD) to enroll the devices")}
	}
	return o, nil
}

// config turns the options into the fleet's configuration.
func (o options) config(stderr io.Writer) (fleet.Config, error) {
	ca, err := readCerts(o.caFile)
	if err != nil {
		return fleet.Config{}, err
	}
	topics, err := protocol.NewTopics(o.topicPrefix)
	if err != nil {
		return fleet.Config{}, &exitError{code: 2, err: fmt.Errorf("--prefix: %w", err)}
	}
	logger, err := newLogger(stderr, o.logLevel, o.logFormat)
	if err != nil {
		return fleet.Config{}, &exitError{code: 2, err: err}
	}
	cfg := fleet.Config{
		HubURL: o.hub, CA: ca, Devices: o.devices, IDPrefix: o.idPrefix, Concurrency: o.concurrency,
		KeysDir: o.keysDir, KeyAlgorithm: o.key, Topics: topics, Timeout: o.timeout, ReconnectMax: o.reconnectMax,
		UntilRenewed: o.untilRenewed, ProgressEvery: o.progress, Progress: stderr, StateFile: o.state,
		Logger: logger, Version: "fleet-" + version,
	}
	switch {
	case o.tokens != "":
		f, err := os.Open(o.tokens)
		if err != nil {
			return cfg, err
		}
		defer f.Close()
		if cfg.Tokens, err = fleet.ParseTokens(f); err != nil {
			return cfg, err
		}
	case o.adminPassword != "":
		cfg.Admin = &fleet.AdminLogin{User: o.adminUser, Password: o.adminPassword}
	}
	return cfg, nil
}

func runFleet(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o, err := parseRun(args, stderr, getenv)
	if err != nil {
		return err
	}
	cfg, err := o.config(stderr)
	if err != nil {
		return err
	}
	// One descriptor per device (its TLS socket), one more with --keys-dir (its lock), and a
	// margin for enrollments in flight and the process itself.
	perDevice := uint64(1)
	if o.keysDir != "" {
		perDevice = 2
	}
	need := uint64(o.devices)*perDevice + uint64(4*cfg.Concurrency) + 64
	if limit, err := raiseFileLimit(); err != nil {
		fmt.Fprintf(stderr, "hearth-fleet: cannot raise the open-file limit: %v\n", err)
	} else if limit < need {
		fmt.Fprintf(stderr, "hearth-fleet: warning: the open-file limit is %d, and %d devices need about %d (ulimit -Hn)\n", limit, o.devices, need)
	}
	f, err := fleet.New(cfg)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	runErr := f.Run(ctx)
	s := f.Summary()
	if o.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			return err
		}
	} else if err := s.WriteText(stdout); err != nil {
		return err
	}
	switch {
	case runErr != nil:
		return runErr
	case o.untilRenewed && !s.AllRenewed:
		return fmt.Errorf("%d of %d enrolled devices renewed before the end", s.DevicesRenewed, s.Enrolled)
	}
	return nil
}

// raiseFileLimit raises the soft limit of open files to the hard limit (each simulated device
// holds a socket) and returns it.
func raiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, err
		}
	}
	return uint64(l.Cur), nil
}

// readCerts reads the PEM certificates of a file.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("--ca %s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--ca %s: no PEM certificate", path)
	}
	return out, nil
}

// newLogger returns the agents' logger.
func newLogger(w io.Writer, level, format string) (*log.Logger, error) {
	if level == "off" {
		return log.Discard(), nil
	}
	var l log.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	switch format {
	case "text":
		return log.New(w, log.Text, l), nil
	case "json":
		return log.New(w, log.JSON, l), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
