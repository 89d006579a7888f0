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
// Everything else — flags, configuration file, clustering, JetStream — is nats-server's,
// except reloading: a reload would parse the MQTT TLS block again without this change and
// lock every device out, so SIGHUP is ignored (with a warning) and a change needs a restart.
// SIGINT and SIGTERM stop the node; so do not send it the system account's reload request.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

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
	opts.NoSigs = true // signals are handled below: no reload
	s, err := server.NewServer(opts)
	if err != nil {
		server.PrintAndDie(fmt.Sprintf("%s: %s", exe, err))
	}
	s.ConfigureLogger()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		for sig := range sigs {
			if sig == syscall.SIGHUP {
				s.Warnf("%s does not reload its configuration (the MQTT listener would stop asking for client certificates): restart it", exe)
				continue
			}
			s.Noticef("%s: %v, shutting down", exe, sig)
			s.Shutdown()
			return
		}
	}()
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
