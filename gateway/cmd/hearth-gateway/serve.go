package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/hub"
)

// shutdownGrace bounds the whole stop: Home Assistant kills an add-on 10 s after SIGTERM.
const shutdownGrace = 8 * time.Second

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) error {
	cfg, err := config.Load(args, env)
	if err != nil {
		return err
	}
	log := cfg.Logger(stderr)
	h, err := hub.Open(ctx, cfg, hub.Options{Version: version, Logger: log})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `Hearth hub %s
  broker:          mqtts://%s (listening on %s)
  CA fingerprint:  %s
  data:            %s

Enroll a first device:
  hearth-gateway token create --device my-thermostat --data %s
and run the hearth-agent command it prints on the device.
`, version, cfg.Advertise, h.BrokerAddr(), h.Fingerprint(), cfg.DataDir, shellQuote(cfg.DataDir))

	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	select {
	case err := <-done:
		log.Info("hub stopped")
		return err
	case <-time.After(shutdownGrace):
		return fmt.Errorf("hub did not stop within %s", shutdownGrace)
	}
}

func shellQuote(s string) string {
	if strings.ContainsAny(s, " '\"$`\\") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return s
}
