package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/agent/device"
	"github.com/hearth-pki/hearth/agent/internal/hub"
	"github.com/hearth-pki/hearth/agent/internal/log"
	"github.com/hearth-pki/hearth/protocol"
	"github.com/hearth-pki/hearth/protocol/jsoncodec"
)

const usage = `usage: hearth-agent <command> [flags]

commands:
  enroll   --hub mqtts://HOST:PORT --id ID --token T|--token-file FILE|- --ca-fingerprint SHA256:... [--dir DIR] [--key p256|p384|ed25519|rsa2048] [--force]
  run      [--dir DIR] [--on-renew 'CMD'] [--model M] [--manufacturer M] [--request-timeout 1m] [--log-format text|json]
  status   [--dir DIR] [--json]
  renew    [--dir DIR] [--request-timeout 1m]
  version

Run "hearth-agent <command> -h" for a command's flags.
`

// run parses args and runs one command.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitError{code: 2}
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "enroll":
		return enroll(ctx, args, stderr)
	case "run":
		return runAgent(ctx, args, stderr)
	case "status":
		return status(args, stdout, stderr)
	case "renew":
		return renew(ctx, args, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "hearth-agent %s (protocol v%d, %s, %s/%s)\n", version, protocol.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return &exitError{code: 2, err: fmt.Errorf("unknown command %q", cmd)}
}

// common are the flags every command shares.
type common struct {
	dir       string
	logFormat string
	logLevel  string
}

func newFlagSet(name string, stderr io.Writer, c *common) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.dir, "dir", device.DefaultDir, "state directory")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return fs
}

// requestTimeoutFlag defines --request-timeout: how long to wait for the hub's answer to a
// certificate request before giving it up (cause timeout).
func requestTimeoutFlag(fs *flag.FlagSet) *time.Duration {
	d := device.DefaultRequestTimeout
	fs.Var((*timeout)(&d), "request-timeout", "how long to wait for the hub's answer to a request (90s, 2m, 1h)")
	return &d
}

// timeout is a flag.Value of a whole number of seconds, minutes or hours ("90s", "2m",
// "1h"). flag.Duration's time.ParseDuration would take the mipsle agent over its size budget.
type timeout time.Duration

func (t *timeout) String() string { return time.Duration(*t).String() }

func (t *timeout) Set(s string) error {
	unit := time.Second
	switch {
	case strings.HasSuffix(s, "s"):
	case strings.HasSuffix(s, "m"):
		unit = time.Minute
	case strings.HasSuffix(s, "h"):
		unit = time.Hour
	default:
		return errTimeout
	}
	n, err := strconv.ParseUint(s[:len(s)-1], 10, 16)
	if err != nil || n == 0 {
		return errTimeout
	}
	*t = timeout(time.Duration(n) * unit)
	return nil
}

var errTimeout = errors.New("want whole seconds, minutes or hours, such as 90s or 2m")

// parse parses args, mapping usage errors to exit status 2.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &exitError{code: 0}
		}
		return &exitError{code: 2}
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

// config returns the device.Config for the common flags.
func (c common) config(stderr io.Writer) (device.Config, error) {
	var level log.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return device.Config{}, &exitError{code: 2, err: fmt.Errorf("--log-level %q: %w", c.logLevel, err)}
	}
	var format log.Format
	switch c.logFormat {
	case "text":
		format = log.Text
	case "json":
		format = log.JSON
	default:
		return device.Config{}, &exitError{code: 2, err: fmt.Errorf("--log-format %q: want text or json", c.logFormat)}
	}
	return device.Config{Dir: c.dir, Version: version, BuildTime: builtAt(), Logger: log.New(stderr, format, level)}, nil
}

// builtAt returns the build time: -X main.buildTime, else the VCS commit time, else zero.
func builtAt() time.Time {
	if t, err := time.Parse(time.RFC3339, buildTime); err == nil {
		return t
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" {
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
					return t
				}
			}
		}
	}
	return time.Time{}
}

func enroll(ctx context.Context, args []string, stderr io.Writer) error {
	var c common
	fs := newFlagSet("enroll", stderr, &c)
	hubURL := fs.String("hub", "", "hub address, mqtts://HOST:PORT (required)")
	id := fs.String("id", "", "device id (required)")
	token := fs.String("token", "", "one-time enrollment token (or --token-file, or $HEARTH_TOKEN)")
	tokenFile := fs.String("token-file", "", "read the enrollment token from this file; - reads standard input")
	fp := fs.String("ca-fingerprint", "", "hub root CA fingerprint, SHA256:... (required)")
	key := fs.String("key", string(protocol.KeyP256), "key algorithm: p256, p384, ed25519 or rsa2048")
	prefix := fs.String("prefix", protocol.DefaultPrefix, "topic prefix of the hub")
	export := fs.Bool("export-pem", false, "also keep cert.pem and key.pem in the state directory for local services")
	force := fs.Bool("force", false, "enroll even if the state directory holds another device's identity (it is replaced)")
	if err := parse(fs, args); err != nil {
		return err
	}
	tok := *token
	if *tokenFile != "" {
		t, err := readToken(*tokenFile)
		if err != nil {
			return fmt.Errorf("enroll: --token-file: %w", err)
		}
		tok = t
	}
	if tok == "" {
		tok = os.Getenv("HEARTH_TOKEN")
	}
	if *hubURL == "" || *id == "" || tok == "" || *fp == "" {
		return &exitError{code: 2, err: errors.New("enroll: --hub, --id, --token (or --token-file) and --ca-fingerprint are required")}
	}
	if st, err := device.ReadStatus(device.Config{Dir: c.dir}); err == nil && st.Enrolled && !*force &&
		(st.DeviceID != *id || (st.Hub != "" && st.Hub != *hubURL)) {
		return &exitError{code: 1, err: fmt.Errorf("enroll: %s already holds the identity of %s (hub %s); "+
			"enrolling as %s would replace it: add --force to do so, or give another --dir", c.dir, st.DeviceID, orDash(st.Hub), *id)}
	}
	topics, err := protocol.NewTopics(*prefix)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	cfg, err := c.config(stderr)
	if err != nil {
		return err
	}
	cfg.HubURL, cfg.DeviceID, cfg.KeyAlgorithm, cfg.Topics, cfg.ExportPEM = *hubURL, *id, *key, topics, *export
	if err := device.Enroll(ctx, cfg, tok, *fp); err != nil {
		if errors.Is(err, device.ErrNotCommitted) {
			return fmt.Errorf("%w\nthe certificate is installed; `hearth-agent run` will commit it", err)
		}
		if hint := enrollHint(err, *id); hint != "" {
			return fmt.Errorf("%w\n%s", err, hint)
		}
		return err
	}
	fmt.Fprintf(stderr, "enrolled %s; start the agent with: hearth-agent run --dir %s\n", *id, c.dir)
	return nil
}

// enrollHint says how to fix a refused enrollment of id (protocol/README.md, "Why an
// enrollment login was refused"), or "" when err is no refusal of the token.
func enrollHint(err error, id string) string {
	var he *device.HubError
	var refused *hub.RefusedError
	var why, replace string
	switch {
	case errors.As(err, &he):
		switch protocol.Code(he.Code) {
		case protocol.CodeTokenUnknown:
			why = "the hub issued no such token for " + id + ": check --id and the token, or create one"
		case protocol.CodeTokenUsed:
			why, replace = "this token already enrolled "+id+": create a new one", " --replace"
		case protocol.CodeTokenExpired:
			why = "this token expired before it was used: create a new one"
		case protocol.CodeLockedOut:
			return fmt.Sprintf("too many failed logins came from this address: wait %s, then run the same command again", max(he.RetryAfter, time.Second))
		case protocol.CodeUnauthorized:
			why = "the hub refused the token: create a new one"
		}
	case errors.As(err, &refused) && refused.Code == 5:
		// A hub that gives no reason (before protocol/README.md's refusal codes).
		why = "the hub refused the login without saying why: check --id and the token, or create a new one"
	}
	if why == "" {
		return ""
	}
	return why + " on the hub:\n  hearth-gateway token create --device " + id + replace
}

// stdin is where --token-file - reads the token.
var stdin io.Reader = os.Stdin

// readToken reads a token from path ("-": standard input): the first line, trimmed.
func readToken(path string) (string, error) {
	var r io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if line = strings.TrimSpace(line); line == "" {
		return "", fmt.Errorf("%s holds no token", path)
	}
	return line, nil
}

func runAgent(ctx context.Context, args []string, stderr io.Writer) error {
	var c common
	fs := newFlagSet("run", stderr, &c)
	onRenew := fs.String("on-renew", "", "shell command run after each acknowledged renewal (sh -c)")
	model := fs.String("model", "", "the device's model, shown in Home Assistant")
	manufacturer := fs.String("manufacturer", "", "the device's manufacturer, shown in Home Assistant")
	timeout := requestTimeoutFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := c.config(stderr)
	if err != nil {
		return err
	}
	cfg.Model, cfg.Manufacturer, cfg.RequestTimeout = *model, *manufacturer, *timeout
	if *onRenew != "" {
		cfg.OnRenew = []string{"/bin/sh", "-c", *onRenew}
	}
	a, err := device.New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func renew(ctx context.Context, args []string, stderr io.Writer) error {
	var c common
	fs := newFlagSet("renew", stderr, &c)
	timeout := requestTimeoutFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := c.config(stderr)
	if err != nil {
		return err
	}
	cfg.RequestTimeout = *timeout
	if err := device.Renew(ctx, cfg); err != nil {
		if errors.Is(err, device.ErrLocked) {
			id := "DEVICE-ID"
			if st, serr := device.ReadStatus(device.Config{Dir: c.dir}); serr == nil && st.DeviceID != "" {
				id = st.DeviceID
			}
			return fmt.Errorf("%w\nthe agent is running: ask the hub for a renewal instead: hearth-gateway renew %s", err, id)
		}
		return err
	}
	st, err := device.ReadStatus(cfg)
	if err == nil {
		fmt.Fprintf(stderr, "renewed: serial %s, valid until %s\n", st.Serial, st.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func status(args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("status", stderr, &c)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	st, err := device.ReadStatus(device.Config{Dir: c.dir, BuildTime: builtAt()})
	if err != nil {
		return err
	}
	if *asJSON {
		b, err := jsoncodec.MarshalIndent(st, "", "  ")
		if err != nil {
			return err
		}
		if _, err := stdout.Write(append(b, '\n')); err != nil {
			return err
		}
	} else {
		printStatus(stdout, st)
	}
	switch {
	case !st.Enrolled:
		return &exitError{code: 2, err: fmt.Errorf("no certificate in %s: run hearth-agent enroll", st.Dir)}
	case st.Revoked:
		return &exitError{code: 4, err: fmt.Errorf("certificate %s is revoked by the hub (%s) since %s: enroll again with a new token",
			st.Serial, orDash(string(st.RevocationReason)), st.RevokedAt.UTC().Format(time.RFC3339))}
	case st.IssuerRevoked != "":
		return &exitError{code: 4, err: errors.New("this certificate's issuer is revoked: renew, or enroll again with a new token")}
	case st.Expired:
		return &exitError{code: 3, err: fmt.Errorf("certificate %s expired at %s", st.Serial, st.NotAfter.UTC().Format(time.RFC3339))}
	}
	return nil
}

// printStatus prints st for people.
func printStatus(w io.Writer, st device.Status) {
	// Two columns, the keys padded to the longest plus two spaces (what text/tabwriter would
	// print; written out here, as tabwriter costs the mipsle binary 9 KiB of its budget).
	var rows [][2]string
	defer func() {
		width := 0
		for _, r := range rows {
			width = max(width, len(r[0]))
		}
		for _, r := range rows {
			fmt.Fprintf(w, "%-*s%s\n", width+2, r[0], r[1])
		}
	}()
	row := func(k, format string, args ...any) { rows = append(rows, [2]string{k, fmt.Sprintf(format, args...)}) }
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	row("device", "%s", orDash(st.DeviceID))
	row("hub", "%s", orDash(st.Hub))
	row("state dir", "%s", st.Dir)
	if !st.Enrolled {
		row("certificate", "none (not enrolled)")
		return
	}
	row("serial", "%s", st.Serial)
	row("issuer", "%s", st.Issuer)
	row("key", "%s", st.KeyAlgorithm)
	left := time.Duration(st.TimeLeft)
	switch {
	case st.Expired:
		row("expires", "%s (EXPIRED %s ago)", ts(st.NotAfter), human(-left))
	case left < 0:
		row("expires", "%s (past by the device clock, which is not trusted)", ts(st.NotAfter))
	default:
		row("expires", "%s (in %s)", ts(st.NotAfter), human(left))
	}
	switch {
	case st.Revoked:
		row("chain", "REVOKED by the hub since %s (%s): enroll again with a new token", ts(st.RevokedAt), orDash(string(st.RevocationReason)))
	case st.IssuerRevoked != "":
		row("chain", "ISSUER REVOKED since %s: %s", ts(st.IssuerRevokedAt), st.IssuerRevoked)
	case st.ChainOK:
		row("chain", "verifies against the pinned CA")
	default:
		row("chain", "DOES NOT VERIFY: %s", st.ChainError)
	}
	row("next renewal", "%s (%s)", ts(st.NextRenewal), orDash(st.NextRenewalReason))
	row("last renewal", "%s", ts(st.LastRenewal))
	row("last error", "%s", orDash(st.LastError))
	if st.LastCause != "" {
		cause := protocol.Cause(st.LastCause)
		row("last cause", "%s (%s)", cause, cause.Class())
	}
	if st.LastRequestID != "" {
		row("failed request", "%s", st.LastRequestID)
	}
	if st.PendingRequest != "" {
		row("pending request", "%s", st.PendingRequest)
	}
	conn := "unknown (no agent has run)"
	if !st.StatusUpdated.IsZero() {
		state := "disconnected"
		if st.Connected {
			state = "connected"
		}
		conn = fmt.Sprintf("%s since %s (as recorded at %s by pid %d)", state, ts(st.ConnectionSince), ts(st.StatusUpdated), st.AgentPID)
	}
	row("hub connection", "%s", conn)
	if st.ConnectError != "" {
		row("connect error", "%s", st.ConnectError)
	}
	clk := "trusted"
	if !st.ClockTrusted {
		clk = "NOT trusted (before the build or last known good time)"
	}
	row("clock", "%s, skew vs hub %+ds at last report", clk, st.SkewSeconds)
	if st.Hook != nil {
		row("on-renew", "exit %d", st.Hook.ExitCode)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// human formats a duration as days and hours.
func human(d time.Duration) string {
	days := int(d / (24 * time.Hour))
	hours := int(d % (24 * time.Hour) / time.Hour)
	if days > 0 {
		return fmt.Sprintf("%dd %dh", days, hours)
	}
	return d.Round(time.Second).String()
}
