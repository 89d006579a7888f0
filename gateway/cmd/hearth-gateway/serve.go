package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/debughttp"
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
	if cfg.DebugListen != "" {
		d, err := debughttp.Listen(cfg.DebugListen, log)
		if err != nil {
			return err
		}
		go func() {
			if err := d.Run(ctx); err != nil {
				log.Error("profile server stopped", "error", err)
			}
		}()
	}
	h, err := hub.Open(ctx, cfg, hub.Options{Version: version, Logger: log})
	if err != nil {
		return err
	}
	printBanner(stdout, banner{Version: version, Advertise: cfg.Advertise, Listening: h.BrokerAddr().String(),
		Hostnames: cfg.Hostnames, HTTPListen: cfg.HTTPListen, Fingerprint: h.Fingerprint(), DataDir: cfg.DataDir,
		NoLogin: cfg.HTTPListen != "" && !cfg.Addon && cfg.HTTPAuth == config.HTTPAuthLogin && !h.CanLogIn(ctx)})

	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	go reloadHostnames(ctx, h, args, env, log)
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

// reloadHostnames re-reads the configuration on each SIGHUP and puts a broker certificate for
// its hostnames in service, without a restart. Other settings still take effect at the next
// start.
func reloadHostnames(ctx context.Context, h *hub.Hub, args []string, env func(string) string, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		cfg, err := config.Load(args, env)
		if err == nil {
			err = h.SetHostnames(cfg.Hostnames)
		}
		if err != nil {
			log.Error("SIGHUP: host names not changed", "err", err)
		}
	}
}

// banner is what serve prints on start: how to reach the hub and the first step.
type banner struct {
	Version, Advertise, Listening string
	Hostnames                     []string
	HTTPListen                    string // "" when the dashboard is off
	Fingerprint, DataDir          string
	NoLogin                       bool // the dashboard needs a login and no one has one yet
}

// printBanner prints b for the person who just ran serve.
func printBanner(w io.Writer, b banner) {
	host, port, _ := net.SplitHostPort(b.Advertise)
	var others []string
	for _, n := range b.Hostnames {
		if n != host {
			others = append(others, n)
		}
	}
	fmt.Fprintf(w, "Hearth hub %s\n", b.Version)
	fmt.Fprintf(w, "  agents dial:     mqtts://%s (listening on %s)\n", b.Advertise, b.Listening)
	if len(others) > 0 {
		fmt.Fprintf(w, "  or by:           %s (port %s; the broker certificate's names: set them with --hostnames)\n", strings.Join(others, ", "), port)
	}
	fmt.Fprintf(w, "  dashboard:       %s\n", dashboardURL(b.HTTPListen, host))
	if b.NoLogin {
		fmt.Fprintf(w, "  dashboard login: no user yet: printf '%%s' 'PASSWORD' | hearth-gateway user add NAME --role admin\n")
	}
	fmt.Fprintf(w, "  CA fingerprint:  %s\n", b.Fingerprint)
	fmt.Fprintf(w, "  data:            %s\n", b.DataDir)
	data := ""
	if b.DataDir != config.DefaultDataDir {
		data = " --data " + shellQuote(b.DataDir)
	}
	fmt.Fprintf(w, `
Enroll a first device:
  hearth-gateway token create --device my-thermostat%s
and run the hearth-agent command it prints on the device. Then watch it with:
  hearth-gateway devices%s
`, data, data)
}

// dashboardURL is where the dashboard listening on listen is opened; host names the machine
// when listen binds every address.
func dashboardURL(listen, host string) string {
	if listen == "" {
		return "off (--http ADDR turns it on)"
	}
	h, p, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	local := ""
	switch ip := net.ParseIP(h); {
	case h == "" || (ip != nil && ip.IsUnspecified()):
		h = host
	case h == "localhost" || (ip != nil && ip.IsLoopback()):
		local = " (this machine only: --http :" + p + " opens it to the LAN)"
	}
	return "http://" + net.JoinHostPort(h, p) + "/" + local
}

func shellQuote(s string) string {
	if strings.ContainsAny(s, " '\"$`\\") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return s
}
