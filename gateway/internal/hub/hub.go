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
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/access"
	"github.com/hearth-pki/hearth/gateway/internal/admin"
	"github.com/hearth-pki/hearth/gateway/internal/alert"
	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/config"
	"github.com/hearth-pki/hearth/gateway/internal/control"
	"github.com/hearth-pki/hearth/gateway/internal/crl"
	"github.com/hearth-pki/hearth/gateway/internal/fleetview"
	"github.com/hearth-pki/hearth/gateway/internal/hass"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/issuer"
	"github.com/hearth-pki/hearth/gateway/internal/lease"
	"github.com/hearth-pki/hearth/gateway/internal/lifecycle"
	"github.com/hearth-pki/hearth/gateway/internal/metrics"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/renewal"
	"github.com/hearth-pki/hearth/gateway/internal/rotation"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/gateway/internal/servercert"
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
	broker  mqttBroker
	issuer  *issuer.Issuer
	machine *lifecycle.Machine
	renewal *renewal.Scheduler
	lease   *lease.Lease // the scheduler's among replicas; nil for a single hub
	admin   *admin.Service
	users   *authz.Authenticator
	control net.Listener
	web     net.Listener // the dashboard's, nil when it is off

	// throttle holds the dashboard's failed logins, kept across restarts with the lockout.
	throttle *authz.Throttle
	// cliRoles gives the control socket's OS users their roles.
	cliRoles control.Roles

	ha   *hass.Publisher // nil without Home Assistant discovery
	view *fleetview.View // bridge/device/<id>, bridge/devices and Home Assistant states

	metrics *metrics.Metrics
	alerts  *alert.Alerter
	serving serving // the Connectivity entity's last check

	crl *crl.Publisher // the CRL: retained on MQTT, DATA/crl.pem, HTTP

	rotation *rotation.Rotator // intermediate rotations

	// serverCert is the broker's TLS certificate, renewed while the hub runs.
	serverCert *servercert.Keeper
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
	pass, src, err := ca.ResolvePassphrase(cfg.DataDir, ca.PassphraseOptions{File: cfg.CAPassphraseFile, Env: cfg.CAPassphrase, Store: cfg.CAPassphraseStore,
		GenerateBeside: cfg.Addon})
	if err != nil {
		return nil, err
	}
	switch src {
	case ca.PassphraseFromDataDir:
		h.log.Warn("CA keys are encrypted with a passphrase kept beside them; set HEARTH_CA_PASSPHRASE, --ca-passphrase-file or ca_passphrase_store to protect backups",
			"file", ca.PassphrasePath(cfg.DataDir))
	case ca.PassphraseGenerated, ca.PassphraseMigrated:
		h.log.Warn("CA passphrase kept outside the data directory: keep a copy of it, the CA cannot be opened without it (backups do not hold it)",
			"store", cfg.CAPassphraseStore, "source", src.String())
	}
	if h.ca, err = ca.Open(cfg.CADir(), pass, h.now()); err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	if err := h.dropGeneratedPassphrase(pass, src); err != nil {
		return nil, err
	}
	pol, err := h.loadPolicy()
	if err != nil {
		return nil, err
	}

	if !cfg.Storage.Replicated() {
		if restored, err := cfg.RestoreSnapshot(); err != nil {
			return nil, err
		} else if restored {
			h.log.Info("inventory restored from the backup snapshot", "from", config.SnapshotPath(cfg.DataDir))
		}
	}
	if h.store, err = openInventory(ctx, cfg); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	closers = append(closers, h.store.Close)
	if h.lease, err = h.newLease(); err != nil {
		return nil, err
	}

	admins, err := h.admins()
	if err != nil {
		return nil, err
	}
	h.users = h.newUsers(admins)
	h.checker = access.New(h.store, h.users, h.now)
	h.checker.SetSupersededOverlap(cfg.SupersededOverlap)
	h.checker.SetLogger(h.log.With("part", "login lockout"))
	h.throttle = authz.NewThrottle(h.now)
	h.checker.Keep("dashboard", h.throttle.Backoff())
	if err := h.checker.Load(ctx); err != nil {
		return nil, err
	}
	if err := h.checkDashboardLogin(ctx); err != nil {
		return nil, err
	}

	h.serverCert, err = servercert.New(servercert.Config{Hosts: cfg.Hostnames, Issue: h.issueServerCert, Now: h.now,
		Changed: h.caChanged, Logger: h.log.With("part", "broker certificate")})
	if err != nil {
		return nil, err
	}
	mc := metrics.Config{Version: h.version, Hub: h.hubCertificates}
	if h.lease != nil {
		mc.Replica, mc.Leader = cfg.ReplicaID, h.isLeader
	}
	h.metrics = metrics.New(mc)
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(h.ca.Root())
	h.broker, err = h.openBroker(broker.Config{
		Addr:      cfg.Listen,
		PlainAddr: cfg.PlainListen,
		TLS:       &tls.Config{GetCertificate: h.serverCert.GetCertificate, ClientCAs: clientCAs, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12},
		Topics:    h.topics,
		Sessions:  sessions{h},
		Limits: broker.Limits{MaxPending: cfg.Limits.MaxPending, MaxPendingPerSource: cfg.Limits.MaxPendingPerSource,
			MaxConns: cfg.Limits.MaxConnections, MaxConnsPerSource: cfg.Limits.MaxConnectionsPerSource,
			MaxSessionsPerDevice: cfg.Limits.SessionsPerDevice},
		Logins: newLoginEvents(h.notify, h.now).login,
		// Devices whose certificate expired while the hub was out of reach renew by
		// themselves within their class's grace (a recovery session).
		AcceptExpired: true,
		// Both roots during a root rotation.
		ClientRoots: h.ca.RootPool,
		Now:         h.now,
	}, countingAuth{brokerAuth{h.checker, h.users, h.brokerLoginFailed}, h.metrics}, clientCAs)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}

	h.view = h.newFleetView()
	h.issuer = issuer.New(issuer.Config{CA: h.ca, Store: h.store, Policy: h.policy.Load, Pub: h.broker, Topics: h.topics,
		Rate: cfg.IssuanceRate, Burst: int(2 * cfg.IssuanceRate), QuotaPerHour: cfg.Limits.CertificatesPerHour,
		Now: h.now, Notify: h.notify, Refused: h.observeRefusal, Logger: h.log.With("part", "issuer")})
	h.machine, err = lifecycle.New(lifecycle.Config{Rules: lifecycle.Rules{InFlight: cfg.Renewal.InFlightTimeout, Issuers: h.ca.Issues}, Store: h.store,
		Shared: cfg.Storage.Replicated(), Publisher: h.broker, Topics: h.topics, Now: h.now, Logger: h.log.With("part", "lifecycle"),
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
		Leader: h.schedulerLeader(), Logger: h.log.With("part", "renewal")})
	h.crl, err = crl.New(crl.Config{Store: h.store, CA: h.ca, Path: filepath.Join(cfg.DataDir, "crl.pem"),
		PreviousPath: filepath.Join(cfg.DataDir, "crl-previous.pem"), RootPath: filepath.Join(cfg.DataDir, "crl-root.pem"), Now: h.now,
		Publish: func(b []byte) error { return h.broker.Publish(h.topics.CRL(), b, true) }, Logger: h.log.With("part", "crl")})
	if err != nil {
		return nil, err
	}
	if h.rotation, err = h.newRotation(); err != nil {
		return nil, err
	}
	h.admin = admin.New(admin.Config{Store: h.store, CA: h.ca, Broker: h.broker, Commands: h.machine, Revoker: h.machine, Topics: h.topics, Advertise: cfg.Advertise,
		TokenTTL: cfg.TokenTTL, Now: h.now, DeviceChanged: h.deviceChanged, Changed: h.summaryChanged, Revoked: h.regenerateCRL, Notify: h.notify,
		Scheduler: h.renewal, Issuer: h.issuer, Policy: h.policy.Load, ReloadPolicy: h.ReloadPolicy, RenewCooldown: cfg.Limits.RenewCooldown,
		RenewCooldownExempt: []string{"cli"}, ApplyPolicy: h.ApplyPolicy,
		ApprovalRequired: cfg.ChangeApproval, ConfiguredAdmins: adminNames(admins), Rotation: h.rotation, Logger: h.log.With("part", "admin")})
	h.alerts = h.newAlerter()

	if pol, err = h.approvedPolicy(ctx, pol); err != nil {
		return nil, err
	}
	if _, err := h.applyPolicy(ctx, pol, "hub start"); err != nil {
		return nil, fmt.Errorf("record policy: %w", err)
	}
	h.cliRoles = h.newCLIRoles()
	if h.control, err = control.Listen(cfg.SocketPath(), h.cliRoles.Shared()); err != nil {
		return nil, err
	}
	closers = append(closers, h.control.Close)
	if cfg.HTTPListen != "" {
		// Bound here, not in Run: serve prints the dashboard's URL once Open returns.
		if h.web, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
			return nil, fmt.Errorf("dashboard: listen: %w", err)
		}
		closers = append(closers, h.web.Close)
	}
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
	// Closed by their servers when those run; closed here too when Run ends before them.
	defer h.control.Close()
	if h.web != nil {
		defer h.web.Close()
	}
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
	run("login lockout", h.checker.Run)
	run("broker certificate", h.serverCert.Run)
	run("control socket", func(ctx context.Context) error { return control.Serve(ctx, h.control, h.admin, h.cliRoles) })
	if h.ha != nil {
		run("home assistant", h.ha.Run)
	}
	run("fleet view", h.view.Run)
	run("CRL publisher", h.crl.Run)
	run("intermediate rotation", h.rotation.Run)
	run("pruning", h.pruneLoop)
	run("renewal", h.renewal.Run)
	if h.lease != nil {
		run("scheduler lease", h.lease.Run)
	}
	run("alerts", h.alerts.Run)
	if h.web != nil {
		handler := h.dashboard()
		run("dashboard", func(ctx context.Context) error { return web.Serve(ctx, h.web, handler) })
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

// issueServerCert mints the broker's certificate. Its chain ends with the root, so an
// enrolling agent can check the fingerprint it pinned before it sends its token.
func (h *Hub) issueServerCert(hosts []string, now time.Time) (tls.Certificate, error) {
	c, err := h.ca.ServerCertificate(hosts, now)
	if err != nil {
		return c, err
	}
	// During a root rotation the cross-certificate comes first: an agent still pinned to the
	// previous root verifies the chain through it.
	if x := h.ca.Cross(); x != nil {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	c.Certificate = append(c.Certificate, h.ca.Root().Raw)
	return c, nil
}

// dashboard is the web handler: dashboard, JSON API, metrics, logins.
func (h *Hub) dashboard() http.Handler {
	wc := web.Config{Admin: h.admin, Store: h.store, Online: h.onlineCount, Version: h.version, Now: h.now,
		CA: h.webCA(), CAState: h.webCA,
		TrustIngress: h.cfg.Addon, AllowedHosts: h.cfg.Hostnames, Logger: h.log.With("part", "web"),
		Policy: h.policy.Load, Notify: h.notify, Metrics: h.metrics.Handler(), CRL: h.crl, Ready: h.ready,
		Throttle: h.throttle, LoginRefused: func() { h.metrics.RefusedLogin(metrics.LoginDashboard) }}
	if h.cfg.HTTPAuth != config.HTTPAuthNone {
		wc.Users = h.users
	}
	wc.IngressRole, wc.IngressUsers = ingressRoles(h.cfg)
	return web.Handler(wc)
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

func (h *Hub) admins() ([]authz.Account, error) {
	var out []authz.Account
	for _, a := range h.cfg.Admins {
		out = append(out, authz.Account{Name: a.Name, Role: authz.Admin, PasswordHash: a.PasswordHash})
	}
	if h.cfg.AdminPassword != "" {
		hash, err := secret.HashPassword(h.cfg.AdminPassword)
		if err != nil {
			return nil, fmt.Errorf("HEARTH_ADMIN_PASSWORD: %w", err)
		}
		out = append(out, authz.Account{Name: "admin", Role: authz.Admin, PasswordHash: hash})
	}
	return out, nil
}

func adminNames(admins []authz.Account) []string {
	var out []string
	for _, a := range admins {
		out = append(out, a.Name)
	}
	return out
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
