package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/atomicfile"
	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/config"
)

const caBrokerCertAbout = `Issues the TLS certificate of an external broker's MQTT listener (broker.mode
nats: each hearth-nats node) from the hub's CA, which agents pin: OUT/mqtt.pem
holds the chain (leaf, intermediate, root) and OUT/mqtt-key.pem its new key
(0600). --hosts are the names and addresses agents dial. It is valid for a year:
issue it again and restart the node before then. The CA passphrase comes as for
ca init.`

func setupCABrokerCert(fs *flag.FlagSet, s *stdio) func(context.Context, []string) error {
	data := fs.String("data", "", "hub data `DIR` ($HEARTH_DATA, else ./hearth-data)")
	passFile := fs.String("passphrase-file", "", "read the CA passphrase from `FILE` (first line)")
	hosts := fs.String("hosts", "", "comma-separated `NAMES` and IP addresses agents dial (required)")
	out := fs.String("out", ".", "write mqtt.pem and mqtt-key.pem into `DIR`")
	return func(ctx context.Context, args []string) error {
		if err := exactArgs("ca broker-cert", args); err != nil {
			return err
		}
		var names []string
		for _, h := range strings.Split(*hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				names = append(names, h)
			}
		}
		if len(names) == 0 {
			return fmt.Errorf("ca broker-cert: --hosts is required: the names agents dial")
		}
		dataDir := config.DataDirFrom(*data, s.env)
		file := *passFile
		if file == "" {
			file = config.CredentialPassphraseFrom(s.env)
		}
		pass, _, err := ca.ResolvePassphrase(dataDir, ca.PassphraseOptions{File: file, Env: s.env(ca.PassphraseEnv),
			Store: config.PassphraseStoreFrom(s.env)})
		if err != nil {
			return fmt.Errorf("ca broker-cert: %w", err)
		}
		c, err := ca.Open(ca.Dir(dataDir), pass, time.Now())
		if err != nil {
			return fmt.Errorf("ca broker-cert: %w", err)
		}
		cert, err := c.ServerCertificate(names, time.Now())
		if err != nil {
			return fmt.Errorf("ca broker-cert: %w", err)
		}
		var chain bytes.Buffer
		for _, der := range append(cert.Certificate, c.Root().Raw) {
			_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
		key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
		if err != nil {
			return fmt.Errorf("ca broker-cert: %w", err)
		}
		if err := os.MkdirAll(*out, 0o700); err != nil {
			return fmt.Errorf("ca broker-cert: %w", err)
		}
		certPath, keyPath := filepath.Join(*out, "mqtt.pem"), filepath.Join(*out, "mqtt-key.pem")
		// The key first: a certificate file never names a key that is not there.
		if err := atomicfile.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
			return fmt.Errorf("ca broker-cert: %w", err)
		}
		if err := atomicfile.WriteFile(certPath, chain.Bytes(), 0o644); err != nil {
			return fmt.Errorf("ca broker-cert: %w", err)
		}
		fmt.Fprintf(s.stdout, "Wrote %s and %s for %s, valid until %s.\n", certPath, keyPath, strings.Join(names, ", "),
			cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
		return nil
	}
}
