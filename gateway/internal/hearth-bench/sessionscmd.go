package main

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

func runSessions(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	addr := fs.String("addr", "", "the broker, HOST:PORT (required)")
	caFile := fs.String("ca", "", "PEM roots that verify the broker's certificate (required)")
	keys := fs.String("keys", "", "directory of device state directories, DIR/<id>/current.pem (required)")
	n := fs.Int("devices", 0, "sessions to open (required)")
	k := fs.Int("concurrency", 64, "connections in progress at once")
	waves := fs.Int("waves", 1, "connection waves: after each but the last, wait for SIGUSR1, drop every session and connect again")
	prefix := fs.String("prefix", protocol.DefaultPrefix, "topic prefix")
	timeout := fs.Duration("timeout", 30*time.Second, "each session's dial, handshake, CONNECT, SUBSCRIBE and state publish")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *addr == "" || *caFile == "" || *keys == "" || *n <= 0 || *k <= 0 || *waves <= 0 {
		return fmt.Errorf("%w: sessions needs --addr, --ca, --keys and --devices", errUsage)
	}
	topics, err := protocol.NewTopics(*prefix)
	if err != nil {
		return err
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("--ca %s: no certificate", *caFile)
	}
	devs, err := loadIdentities(*keys, *n)
	if err != nil {
		return err
	}
	next := make(chan os.Signal, 1)
	signal.Notify(next, syscall.SIGUSR1)
	defer signal.Stop(next)

	var held []*session
	var wg sync.WaitGroup
	// Sessions that end while held, before drop closes them: the broker closed them (or the
	// network failed). ended counts them by the first read error's text (for the report only).
	var mu sync.Mutex
	var dropping bool
	ended := map[string]int{}
	drop := func() {
		mu.Lock()
		dropping = true
		mu.Unlock()
		for _, s := range held {
			if s != nil {
				_ = s.conn.Close()
			}
		}
		wg.Wait()
		mu.Lock()
		dropping = false
		mu.Unlock()
	}
	report := func(w int) {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range ended {
			n += c
		}
		// One line per wave, parsed by scripts/bench.sh.
		fmt.Fprintf(stdout, "held after wave %d: %d sessions ended by the broker while held %v\n", w, n, ended)
		clear(ended)
	}
	defer drop()
	failures := 0
	for w := 1; w <= *waves; w++ {
		if w > 1 {
			select {
			case <-next:
			case <-ctx.Done():
				return nil
			}
			report(w - 1)
			drop()
		}
		var d time.Duration
		var failed int
		var errs []error
		held, d, failed, errs = wave(ctx, *addr, roots, topics, devs, *k, *timeout, func(s *session) {
			wg.Go(func() {
				err := s.hold()
				mu.Lock()
				if !dropping {
					ended[err.Error()]++
				}
				mu.Unlock()
			})
		})
		failures += failed
		// One line per wave, parsed by scripts/bench.sh.
		fmt.Fprintf(stdout, "wave %d: %d sessions connected in %.2f s, %d at a time, %d failed\n", w, len(devs)-failed, d.Seconds(), *k, failed)
		for _, err := range errs {
			fmt.Fprintf(stdout, "  %v\n", err)
		}
	}
	<-ctx.Done()
	if failures > 0 {
		return fmt.Errorf("%d connections failed", failures)
	}
	return nil
}
