package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/protocol"
)

const caUsageText = `Usage:
  hearth-gateway ca init [--data DIR] [--passphrase-file FILE] [--kdf-iterations N]
  hearth-gateway ca show [--data DIR] [--json]

DIR defaults to $HEARTH_DATA, else ./hearth-data; the CA lives in DIR/ca.

init creates the hub's root and intermediate CA. The private keys are
encrypted with the passphrase from --passphrase-file, else from
$HEARTH_CA_PASSPHRASE, else from DIR/ca/passphrase, generated if missing.
That last fallback keeps the passphrase beside the keys: it does not protect
a copied data directory or backup. Supply the passphrase from elsewhere to
get that protection.

show prints the root and intermediate certificates (no passphrase needed),
including the root fingerprint that agents pin.
`

// runCA runs the ca subcommand. args are the words after "ca"; env reads
// the environment (os.Getenv in production). It returns nil after -h or
// help, and an error wrapping errUsage for bad arguments, after printing
// what was wrong to stderr.
func runCA(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(args) == 0 {
		fmt.Fprintln(stderr, "ca: give a subcommand, init or show")
		return fmt.Errorf("ca: no subcommand: %w", errUsage)
	}
	switch args[0] {
	case "init":
		return runCAInit(args[1:], stdout, stderr, env)
	case "show":
		return runCAShow(args[1:], stdout, stderr, env)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, caUsageText)
		return nil
	default:
		fmt.Fprintf(stderr, "ca: unknown subcommand %q (want init or show)\n", args[0])
		return fmt.Errorf("ca: unknown subcommand %q: %w", args[0], errUsage)
	}
}

// caParse parses a ca subcommand's flags; done reports -h.
func caParse(fs *flag.FlagSet, args []string, stderr io.Writer) (done bool, err error) {
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, caUsageText, "\nFlags of ", fs.Name(), ":\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, fmt.Errorf("%s: %v: %w", fs.Name(), err, errUsage)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return false, fmt.Errorf("%s: unexpected argument %q: %w", fs.Name(), fs.Arg(0), errUsage)
	}
	return false, nil
}

func runCAInit(args []string, stdout, stderr io.Writer, env func(string) string) error {
	fs := flag.NewFlagSet("ca init", flag.ContinueOnError)
	data := fs.String("data", "", "hub data `directory` (default $HEARTH_DATA or ./hearth-data); the CA goes in its ca/ subdirectory")
	passFile := fs.String("passphrase-file", "", "read the CA passphrase from `file` (first line)")
	iterations := fs.Int("kdf-iterations", ca.DefaultIterations,
		"PBKDF2 `count` protecting the keys: fewer opens faster on a slow hub, more resists a stolen backup")
	if done, err := caParse(fs, args, stderr); done || err != nil {
		return err
	}
	*data = config.DataDirFrom(*data, env)
	pass, src, err := ca.ResolvePassphrase(*data, *passFile, env(ca.PassphraseEnv))
	if err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	dir := ca.Dir(*data)
	c, err := ca.InitWithIterations(dir, pass, time.Now(), *iterations)
	if err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	if src.Fallback() {
		fmt.Fprintf(stderr, "warning: the CA keys are encrypted with the passphrase in %s (%s).\n"+
			"It sits beside the keys, so a copy of the data directory or a backup exposes them.\n"+
			"To protect them, move that passphrase out of the data directory and supply it with\n"+
			"%s or --passphrase-file.\n", ca.PassphrasePath(*data), src, ca.PassphraseEnv)
	}
	fmt.Fprintf(stdout, "Created the Hearth CA in %s (passphrase from %s).\n\n", dir, src)
	return writeCATable(stdout, dir, c.Root(), c.Intermediate())
}

func runCAShow(args []string, stdout, stderr io.Writer, env func(string) string) error {
	fs := flag.NewFlagSet("ca show", flag.ContinueOnError)
	data := fs.String("data", "", "hub data `directory` (default $HEARTH_DATA or ./hearth-data)")
	asJSON := fs.Bool("json", false, "print JSON for scripts instead of a table")
	if done, err := caParse(fs, args, stderr); done || err != nil {
		return err
	}
	dir := ca.Dir(config.DataDirFrom(*data, env))
	root, inter, err := ca.ReadCertificates(dir)
	if err != nil {
		return fmt.Errorf("ca show: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(caShowJSON{
			Dir:          dir,
			Fingerprint:  protocol.FingerprintOf(root).String(),
			Root:         caCertInfo(root),
			Intermediate: caCertInfo(inter),
		})
	}
	return writeCATable(stdout, dir, root, inter)
}

// caShowJSON is the output of ca show --json. Field names are stable for
// scripts; fingerprint is the root's, the value agents pin.
type caShowJSON struct {
	Dir          string     `json:"dir"`
	Fingerprint  string     `json:"fingerprint"`
	Root         caCertJSON `json:"root"`
	Intermediate caCertJSON `json:"intermediate"`
}

// caCertJSON describes one CA certificate; serial is lowercase hex, times
// are RFC 3339 UTC.
type caCertJSON struct {
	Subject      string                `json:"subject"`
	Issuer       string                `json:"issuer"`
	NotBefore    time.Time             `json:"not_before"`
	NotAfter     time.Time             `json:"not_after"`
	Serial       string                `json:"serial"`
	KeyAlgorithm protocol.KeyAlgorithm `json:"key_algorithm"`
	Fingerprint  string                `json:"fingerprint"`
}

func caCertInfo(c *x509.Certificate) caCertJSON {
	return caCertJSON{
		Subject:      c.Subject.String(),
		Issuer:       c.Issuer.String(),
		NotBefore:    c.NotBefore.UTC(),
		NotAfter:     c.NotAfter.UTC(),
		Serial:       fmt.Sprintf("%x", c.SerialNumber),
		KeyAlgorithm: protocol.KeyAlgorithmOf(c.PublicKey),
		Fingerprint:  protocol.FingerprintOf(c).String(),
	}
}

// writeCATable prints the CA for people.
func writeCATable(w io.Writer, dir string, root, inter *x509.Certificate) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "CA directory\t%s\n", dir)
	fmt.Fprintf(tw, "Fingerprint\t%s\t(agents pin this)\n", protocol.FingerprintOf(root).String())
	for _, c := range []struct {
		title string
		cert  *x509.Certificate
	}{{"Root", root}, {"Intermediate", inter}} {
		i := caCertInfo(c.cert)
		fmt.Fprintf(tw, "\n%s\n", c.title)
		fmt.Fprintf(tw, "  Subject\t%s\n", i.Subject)
		fmt.Fprintf(tw, "  Issuer\t%s\n", i.Issuer)
		fmt.Fprintf(tw, "  Not before\t%s\n", i.NotBefore.Format(time.RFC3339))
		fmt.Fprintf(tw, "  Not after\t%s\n", i.NotAfter.Format(time.RFC3339))
		fmt.Fprintf(tw, "  Serial\t%s\n", i.Serial)
		fmt.Fprintf(tw, "  Key\t%s\n", i.KeyAlgorithm)
		fmt.Fprintf(tw, "  SHA-256\t%s\n", i.Fingerprint)
	}
	return tw.Flush()
}
