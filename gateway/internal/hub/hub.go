// Package hub assembles the hub's parts — CA, inventory, policy, broker, issuer, admin
// service, control socket, dashboard — and runs them for the lifetime of a context. It holds
// the wiring only: every decision lives in the packages it connects.
//
// Open prepares everything that can fail early (CA, database, listeners) and starts nothing;
// Run serves until its context ends, then stops within the shutdown deadline and closes the
// inventory.
package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/access"
	"github.com/hearth-pki/hearth/gateway/internal/admin"
	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/control"
	"github.com/hearth-pki/hearth/gateway/internal/fleetview"
	"github.com/hearth-pki/hearth/gateway/internal/hass"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/issuer"
	"github.com/hearth-pki/hearth/gateway/internal/lifecycle"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/renewal"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/gateway/internal/web"
	"github.com/hearth-pki/hearth/protocol"
)

// Hub is an opened hub, ready to Run.
type Hub struct {
	cfg     config.Config
	version string
	log     *slog.Logger
	now     func() time.Time
	started time.Time
	topics  protocol.Topics

	ca      *ca.CA
	store   *inventory.Store
	policy  atomic.Pointer[policy.Policy]
	checker *access.Checker
	broker  *broker.Broker
	issuer  *issuer.Issuer
	machine *lifecycle.Machine
	renewal *renewal.Scheduler
	admin   *admin.Service
	control net.Listener

	ha   *hass.Publisher // nil without Home Assistant discovery
	view *fleetview.View // bridge/device/<id>, bridge/devices and Home Assistant states

	crlMu sync.Mutex
}

// Options are what main passes besides the configuration.
type Options struct {
	Version string
	Logger  *slog.Logger
	// Now is the hub clock. Default time.Now.
	Now func() time.Time
}

// Open creates or loads the data directory, the CA and the inventory, binds the broker's
// listeners and the control socket, and returns a Hub ready to Run. It starts no goroutine.
func Open(ctx context.Context, cfg config.Config, opts Options) (_ *Hub, err error) {
	h := &Hub{cfg: cfg, version: opts.Version, log: opts.Logger, now: opts.Now, topics: cfg.Topics()}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	h.started = h.now().UTC().Truncate(time.Second)
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]()
			}
		}
	}()

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	pass, src, err := ca.ResolvePassphrase(cfg.DataDir, cfg.CAPassphraseFile, cfg.CAPassphrase)
	if err != nil {
		return nil, err
	}
	if src == ca.PassphraseGenerated || src == ca.PassphraseFromDataDir {
		h.log.Warn("CA keys are encrypted with a passphrase kept beside them; set HEARTH_CA_PASSPHRASE or --ca-passphrase-file to protect backups",
			"file", ca.PassphrasePath(cfg.DataDir))
	}
	if h.ca, err = ca.Open(cfg.CADir(), pass, h.now()); err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	pol, err := h.loadPolicy()
	if err != nil {
		return nil, err
	}

	if restored, err := cfg.RestoreSnapshot(); err != nil {
		return nil, err
	} else if restored {
		h.log.Info("inventory restored from the backup snapshot", "from", config.SnapshotPath(cfg.DataDir))
	}
	if h.store, err = inventory.Open(ctx, cfg.DatabasePath()); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	closers = append(closers, h.store.Close)

	admins, err := h.admins()
	if err != nil {
		return nil, err
	}
	h.checker = access.New(h.store, admins, h.now)

	serverCert, err := h.ca.ServerCertificate(cfg.Hostnames, h.now())
	if err != nil {
		return nil, fmt.Errorf("broker certificate: %w", err)
	}
	// The chain ends with the root, so an enrolling agent can check the fingerprint it pinned
	// before it sends its token.
	serverCert.Certificate = append(serverCert.Certificate, h.ca.Root().Raw)
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(h.ca.Root())
	h.broker, err = broker.New(broker.Config{
		Addr:      cfg.Listen,
		PlainAddr: cfg.PlainListen,
		TLS:       &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: clientCAs, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12},
		Topics:    h.topics,
		Sessions:  sessions{h},
	}, h.checker, h.handle, h.log.With("part", "broker"))
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}

	h.view = h.newFleetView()
	h.issuer = issuer.New(issuer.Config{CA: h.ca, Store: h.store, Policy: h.policy.Load, Pub: h.broker, Topics: h.topics,
		Rate: cfg.IssuanceRate, Burst: int(2 * cfg.IssuanceRate),
		Now: h.now, Notify: h.notify, Logger: h.log.With("part", "issuer")})
	h.machine, err = lifecycle.New(lifecycle.Config{Rules: lifecycle.Rules{InFlight: cfg.Renewal.InFlightTimeout, Issuer: h.ca.Intermediate().Subject.String()}, Store: h.store,
		Publisher: h.broker, Topics: h.topics, Now: h.now, Logger: h.log.With("part", "lifecycle"),
		Hooks: lifecycle.Hooks{Committed: h.committed, Ended: h.ended, Finding: h.finding,
			Presence: func(id string, online bool) {
				if online {
					h.renewal.DeviceOnline(id)
				}
			},
			Changed: h.deviceChanged}})
	if err != nil {
		return nil, err
	}
	h.renewal = renewal.New(renewal.Config{Store: h.store, Policy: h.policy.Load, Commander: commander{h.machine},
		Online: h.broker.Online, PublishWindow: h.issuer.PublishWindow, Now: h.now, Notify: h.notify,
		DeviceChanged: h.view.DeviceChanged, Changed: h.summaryChanged,
		Rate: cfg.Renewal.Rate, MaxInFlight: cfg.Renewal.MaxInFlight, AttemptDeadline: cfg.Renewal.InFlightTimeout,
		Logger: h.log.With("part", "renewal")})
	h.admin = admin.New(admin.Config{Store: h.store, CA: h.ca, Broker: h.broker, Commands: h.machine, Topics: h.topics, Advertise: cfg.Advertise,
		TokenTTL: cfg.TokenTTL, Now: h.now, DeviceChanged: h.deviceChanged, Changed: h.summaryChanged, Revoked: h.publishCRL, Notify: h.notify,
		Scheduler: h.renewal, Issuer: h.issuer, Policy: h.policy.Load, ReloadPolicy: h.ReloadPolicy, Logger: h.log.With("part", "admin")})

	if _, err := h.applyPolicy(ctx, pol, "hub start"); err != nil {
		return nil, fmt.Errorf("record policy: %w", err)
	}
	if h.control, err = control.Listen(cfg.SocketPath()); err != nil {
		return nil, err
	}
	closers = append(closers, h.control.Close)
	return h, nil
}

// BrokerAddr is the bound address of the MQTT-over-TLS listener.
func (h *Hub) BrokerAddr() net.Addr { return h.broker.Addr() }

// Fingerprint is the CA fingerprint agents pin.
func (h *Hub) Fingerprint() string { return h.ca.Fingerprint() }

// Admin returns the admin service (the CLI's and the dashboard's operations).
func (h *Hub) Admin() *admin.Service { return h.admin }

// Store returns the inventory.
func (h *Hub) Store() *inventory.Store { return h.store }

// Run serves until ctx ends, then shuts down: it announces the hub offline, closes the
// listeners and sessions, and closes the inventory.
func (h *Hub) Run(ctx context.Context) error {
	defer h.store.Close()
	defer os.Remove(h.cfg.SocketPath())
	if err := h.exportCA(); err != nil {
		h.log.Warn("CA bundle not exported", "err", err)
	}
	if err := h.machine.Recover(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return fmt.Errorf("recover device states: %w", err)
	}
	if h.ha = h.homeAssistant(ctx); h.ha != nil {
		h.view.SetHomeAssistant(h.ha)
	}
	h.publishStatic(ctx)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 8)
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	run("lifecycle", h.machine.Run)
	run("broker", h.broker.Run)
	run("control socket", func(ctx context.Context) error { return control.Serve(ctx, h.control, h.admin) })
	if h.ha != nil {
		run("home assistant", h.ha.Run)
	}
	run("fleet view", h.view.Run)
	run("CRL publisher", h.publishLoop)
	run("renewal", h.renewal.Run)
	if h.cfg.HTTPListen != "" {
		handler := web.Handler(web.Config{Admin: h.admin, Store: h.store, Online: h.onlineCount, Version: h.version, Now: h.now,
			CA:           web.CAInfo{RootNotAfter: h.ca.Root().NotAfter, IntermediateNotAfter: h.ca.Intermediate().NotAfter, Fingerprint: h.ca.Fingerprint()},
			TrustIngress: h.cfg.Addon, AllowedHosts: h.cfg.Hostnames, Logger: h.log.With("part", "web")})
		run("dashboard", func(ctx context.Context) error { return web.Serve(ctx, h.cfg.HTTPListen, handler) })
	}
	h.log.Info("hub running", "broker", h.broker.Addr().String(), "advertise", h.cfg.Advertise,
		"ca_fingerprint", h.ca.Fingerprint(), "data", h.cfg.DataDir, "control", h.cfg.SocketPath())

	<-ctx.Done()
	h.publish(h.topics.Bridge(protocol.KindBridgeState), []byte(protocol.Offline), true)
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// commander hands the commands the renewal scheduler stored (with their renewal state,
// campaign entry and event, in one transaction) to the device state machine, which sends
// them once the device subscribes.
type commander struct{ m *lifecycle.Machine }

func (c commander) Queue(ctx context.Context, id string, cmd inventory.Command) error {
	return c.m.Queue(ctx, id, lifecycle.Command{ID: cmd.ID, Action: cmd.Action, Reason: cmd.Reason, Deadline: cmd.Deadline})
}

// onlineCount is the number of devices with a live session: one aggregate query, not a
// read of every device.
func (h *Hub) onlineCount() int {
	c, err := h.store.CountDevicesBy(context.Background())
	if err != nil {
		return 0
	}
	return c.Online
}

// policyPath is the policy file in force: the configured one, or DataDir/policy.yaml when it
// exists.
func (h *Hub) policyPath() string {
	if h.cfg.PolicyFile != "" {
		return h.cfg.PolicyFile
	}
	p := filepath.Join(h.cfg.DataDir, "policy.yaml")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

func (h *Hub) admins() ([]access.Admin, error) {
	var out []access.Admin
	for _, a := range h.cfg.Admins {
		out = append(out, access.Admin{Name: a.Name, PasswordHash: a.PasswordHash})
	}
	if h.cfg.AdminPassword != "" {
		hash, err := secret.HashPassword(h.cfg.AdminPassword)
		if err != nil {
			return nil, fmt.Errorf("HEARTH_ADMIN_PASSWORD: %w", err)
		}
		out = append(out, access.Admin{Name: "admin", PasswordHash: hash})
	}
	return out, nil
}

// setDefaultLifetime applies the leaf_lifetime setting to the policy's default class.
func setDefaultLifetime(p *policy.Policy, d time.Duration) error {
	for i := range p.Classes {
		if p.Classes[i].Name == policy.DefaultClass {
			p.Classes[i].Lifetime = d
		}
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("leaf_lifetime %s: %w", d, err)
	}
	return nil
}
