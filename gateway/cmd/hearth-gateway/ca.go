package main

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/protocol"
)

const caInitAbout = `The CA lives in DIR/ca. Its private keys are encrypted with the passphrase
from --passphrase-file, else $HEARTH_CA_PASSPHRASE, else the systemd
credential hearth-ca-passphrase, else the passphrase store outside the data
directory ($HEARTH_CA_PASSPHRASE_STORE, /etc/hearth/ca-passphrase under the
shipped unit, else ~/.config/hearth/ca-passphrase), generated there if
missing. It is never kept beside the keys: a copy of the data directory or a
backup does not open them. Keep a copy of the passphrase somewhere safe.
` + "`serve`" + ` creates the CA on its first start if it does not exist.`

func setupCAInit(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	data := fs.String("data", "", "hub data `DIR` ($HEARTH_DATA, else ./hearth-data); the CA goes in its ca/ subdirectory")
	passFile := fs.String("passphrase-file", "", "read the CA passphrase from `FILE` (first line)")
	iterations := fs.Int("kdf-iterations", ca.DefaultIterations,
		"PBKDF2 `COUNT` protecting the keys: fewer opens faster on a slow hub, more resists a stolen backup")
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("ca init", args); err != nil {
			return err
		}
		dataDir := config.DataDirFrom(*data, s.env)
		file := *passFile
		if file == "" {
			file = config.CredentialPassphraseFrom(s.env)
		}
		pass, src, err := ca.ResolvePassphrase(dataDir, ca.PassphraseOptions{File: file, Env: s.env(ca.PassphraseEnv),
			Store: config.PassphraseStoreFrom(s.env)})
		if err != nil {
			return fmt.Errorf("ca init: %w", err)
		}
		dir := ca.Dir(dataDir)
		c, err := ca.InitWithIterations(dir, pass, time.Now(), *iterations)
		if err != nil {
			return fmt.Errorf("ca init: %w", err)
		}
		if src == ca.PassphraseGenerated {
			fmt.Fprintf(s.stderr, "The CA passphrase was generated into %s, outside the data directory.\n"+
				"Keep a copy of it somewhere safe: backups do not hold it, and the CA cannot be opened without it.\n",
				config.PassphraseStoreFrom(s.env))
		}
		fmt.Fprintf(s.stdout, "Created the Hearth CA in %s (passphrase from %s).\n\n", dir, src)
		return writeCATable(s.stdout, dir, c.Root(), c.Intermediate())
	}
}

func setupCAShow(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	data := fs.String("data", "", "hub data `DIR` ($HEARTH_DATA, else ./hearth-data)")
	asJSON := fs.Bool("json", false, "print JSON for scripts instead of a table")
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("ca show", args); err != nil {
			return err
		}
		dir := ca.Dir(config.DataDirFrom(*data, s.env))
		root, inter, err := ca.ReadCertificates(dir)
		if err != nil {
			return fmt.Errorf("ca show: %w", err)
		}
		if *asJSON {
			return writeJSON(s.stdout, caShowJSON{
				Dir:          dir,
				Fingerprint:  protocol.FingerprintOf(root).String(),
				Root:         caCertInfo(root),
				Intermediate: caCertInfo(inter),
			})
		}
		return writeCATable(s.stdout, dir, root, inter)
	}
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
