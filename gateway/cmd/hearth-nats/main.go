// Command hearth-nats is the NATS server (github.com/nats-io/nats-server/v2, the version in
// gateway/go.mod) with one change for Hearth's external clustered broker: its MQTT listener
// asks every client for a certificate and accepts a connection without one.
//
// Stock nats-server either requires a client certificate on its MQTT listener (tls.verify)
// or never asks for one. A Hearth device logs in with its certificate, but an agent that
// enrolls has none yet and logs in with its token over the same TLS port, so the listener
// must ask and not require (tls.RequestClientCert). The chain is not verified here: the
// hub verifies it against its own CA when it answers the server's auth callout, which
// carries the certificates the client presented (gateway/README.md, "External clustered
// broker"). TLS still proves that the client holds the key of the certificate it presented.
//
// Everything else — flags, configuration file, clustering, JetStream — is nats-server's.
// A configuration reload (SIGHUP) that rebuilds the MQTT TLS settings is refused: restart
// the node instead.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	const exe = "hearth-nats"
	fs := flag.NewFlagSet(exe, flag.ExitOnError)
	opts, err := server.ConfigureOptions(fs, os.Args[1:], server.PrintServerAndExit, fs.Usage, server.PrintTLSHelpAndDie)
	if err != nil {
		if errors.Is(err, server.ErrConfigReloadNotSupported) {
			fmt.Fprintf(os.Stderr, "%s: %s\n", exe, err)
			os.Exit(3)
		}
		server.PrintAndDie(fmt.Sprintf("%s: %s", exe, err))
	}
	if err := requestClientCerts(opts); err != nil {
		server.PrintAndDie(fmt.Sprintf("%s: %s", exe, err))
	}
	server.RedactArgs(os.Args)
	s, err := server.NewServer(opts)
	if err != nil {
		server.PrintAndDie(fmt.Sprintf("%s: %s", exe, err))
	}
	s.ConfigureLogger()
	if err := server.Run(s); err != nil {
		server.PrintAndDie(err.Error())
	}
	s.WaitForShutdown()
}

// requestClientCerts makes the MQTT listener ask for a client certificate without
// requiring one. It refuses a configuration without MQTT over TLS, or one that sets
// tls.verify (which would lock enrolling agents out).
func requestClientCerts(opts *server.Options) error {
	t := opts.MQTT.TLSConfig
	switch {
	case opts.MQTT.Port == 0:
		return errors.New("the configuration has no mqtt listener")
	case t == nil:
		return errors.New("the mqtt listener has no tls block: devices log in with their certificates")
	case t.ClientAuth != tls.NoClientCert:
		return errors.New("mqtt tls.verify must be off: enrolling agents have no certificate yet (the hub verifies device chains)")
	}
	t.ClientAuth = tls.RequestClientCert
	return nil
}
