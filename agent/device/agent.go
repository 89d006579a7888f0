package device

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/clock"
	"github.com/hearth-pki/hearth/agent/internal/hub"
	"github.com/hearth-pki/hearth/agent/internal/keystore"
	"github.com/hearth-pki/hearth/agent/internal/log"
	"github.com/hearth-pki/hearth/protocol"
)

// Reconnection and wait bounds (the backoffs are Config.RetryMin/RetryMax and
// Config.ReconnectMax).
const (
	stableSession   = time.Minute // a session that lasted this long resets the reconnect backoff
	minWait         = 50 * time.Millisecond
	maxRequestTries = 3 // submissions of one request across dropped connections
)

// Agent keeps an enrolled device's certificate valid: it holds a mutual-TLS session with the
// hub, renews in the hub's window or on command, and reports health. Create it with New and
// run it with Run.
type Agent struct {
	cfg  Config
	log  *log.Logger
	host string

	// pair is the identity presented at the next TLS handshake (GetClientCertificate).
	pair atomic.Pointer[keystore.Pair]
	// crls are the hub's last verified CRLs, one per issuer (nil before one arrived), read at
	// each handshake.
	crls atomic.Pointer[crlSet]
	// genKey makes each renewal's key: keystore.GenerateKey (a test makes it fail).
	genKey func(protocol.KeyAlgorithm) (crypto.Signer, error)

	// Owned by the goroutine running Run (or Renew).
	clk          *clock.Clock
	ks           keys
	ca           []*x509.Certificate
	st           keystore.State
	savedFloor   time.Time
	sess         *hub.Session
	info         *protocol.RenewalInfo
	jitterKey    string
	jitter       float64
	failures     int
	retryAt      time.Time
	connFailures int
	connRetryAt  time.Time
	connectedAt  time.Time
	lastHealth   time.Time
	healthDue    bool
	unsent       *protocol.Commit
	hook         *protocol.HookRun
	lastAckHub   time.Time
	lastCommand  string
	owed         *protocol.Command // a renew command refused with a retryable code, retried at retryAt
	rt           runtimeState
	lastRuntime  []byte // status.json's content last written, without its time
}

// New checks cfg, filling empty fields from the state directory's config.json and the
// defaults. It starts nothing and opens nothing.
func New(cfg Config) (*Agent, error) {
	cfg, err := cfg.resolve(true)
	if err != nil {
		return nil, err
	}
	u, _ := hub.ParseURL(cfg.HubURL)
	return &Agent{
		cfg:    cfg,
		log:    cfg.Logger.With("device", cfg.DeviceID),
		host:   u.Hostname(),
		genKey: keystore.GenerateKey,
	}, nil
}

// Run keeps the device's certificate valid until ctx ends, then announces the device offline
// and returns nil. It returns an error only if it cannot start: the state directory is
// locked (ErrLocked), or holds no identity or no pinned CA (ErrNotEnrolled). While the hub is
// unreachable it keeps its certificate and keeps trying.
func (a *Agent) Run(ctx context.Context) error {
	ks, release, err := openDir(a.cfg)
	if err != nil {
		return err
	}
	defer release()
	if err := a.load(ks); err != nil {
		return err
	}
	defer a.shutdown()
	a.log.Info("agent running", "pair", a.current(), "hub", a.cfg.HubURL, "version", a.cfg.Version)
	for ctx.Err() == nil {
		if a.sess == nil && !a.now().Before(a.connRetryAt) {
			a.connect(ctx)
		}
		if a.sess != nil {
			a.work(ctx)
		}
		a.wait(ctx)
	}
	return nil
}

// load reads the identity, the pinned CA and the state.
func (a *Agent) load(ks keys) error {
	a.ks = ks
	ca, err := ks.CA()
	if errors.Is(err, keystore.ErrNoCA) {
		return fmt.Errorf("%w: no pinned CA in %s", ErrNotEnrolled, a.cfg.where())
	}
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	a.ca = ca
	pair, err := ks.Current()
	var fb *keystore.FallbackError
	switch {
	case errors.As(err, &fb):
		a.log.Warn("current identity unusable, going back to the previous one", "err", err)
		if err := ks.Rollback(); err != nil {
			return fmt.Errorf("device: %w", err)
		}
	case errors.Is(err, keystore.ErrNoIdentity):
		return fmt.Errorf("%w: no certificate in %s", ErrNotEnrolled, a.cfg.where())
	case err != nil:
		return fmt.Errorf("device: %w", err)
	}
	st, err := ks.LoadState()
	if err != nil {
		a.log.Warn("state unreadable, starting afresh", "err", err)
	}
	a.st, a.savedFloor = st, st.LastKnownGood
	a.clk = clock.New(a.cfg.Now, a.cfg.floor(st.LastKnownGood))
	// The hub backdates not-before by a minute: the true time is later than it.
	a.clk.AtLeast(pair.Leaf().NotBefore)
	a.pair.Store(&pair)
	a.loadCRL()
	a.healthDue = true
	return nil
}

// shutdown closes the session, announcing the device offline, and records the state.
func (a *Agent) shutdown() {
	if a.sess != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		a.sess.Close(ctx)
		cancel()
		a.sess = nil
		a.rt.Connected, a.rt.Since = false, a.now()
	}
	a.saveState()
	a.saveRuntime()
}

// current returns the identity in use.
func (a *Agent) current() keystore.Pair { return *a.pair.Load() }

// Serial returns the serial number (lowercase hex) of the certificate the agent presents to
// the hub, or "" before Run (or Renew) has loaded it. Unlike the rest of an Agent, it may be
// called from any goroutine, during and after Run.
func (a *Agent) Serial() string {
	if p := a.pair.Load(); p != nil {
		return p.Serial()
	}
	return ""
}

// now is the device clock, for intervals (with its monotonic reading when real).
func (a *Agent) now() time.Time { return a.cfg.Now() }

// dial opens a mutual-TLS device session presenting the current pair.
func (a *Agent) dial(ctx context.Context) (*hub.Session, error) {
	getCert := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		c := a.pair.Load().TLSCertificate()
		return &c, nil
	}
	return hub.Dial(ctx, hub.Config{
		URL: a.cfg.HubURL, DeviceID: a.cfg.DeviceID, Topics: a.cfg.Topics, Mode: hub.ModeDevice,
		Version: a.cfg.Version, TLS: serverTLS(a.ca, a.host, a.clk, getCert, a.hubRevoked),
		ConnectTimeout: a.cfg.ConnectTimeout, Logger: a.cfg.Logger,
	})
}

// connect dials the hub and does what a new session needs: report a rollback not yet
// reported, finish a renewal interrupted by a restart, report health.
func (a *Agent) connect(ctx context.Context) {
	sess, err := a.dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		a.connFailures++
		d := backoff(a.connFailures, a.reconnectMin(), a.cfg.ReconnectMax, a.cfg.Rand.Float64())
		a.connRetryAt = a.now().Add(d)
		a.log.Warn("cannot reach the hub", "err", err, "retry_in", d.Round(time.Second))
		if msg := protocol.ClipText(err.Error()); msg != a.rt.ConnectError {
			a.rt.ConnectError = msg
			a.saveRuntime()
		}
		a.emit(Event{Kind: EventUnreachable, Err: err})
		return
	}
	a.attach(sess)
	if a.unsent != nil {
		if err := a.sess.Report(ctx, a.unsent); err == nil {
			a.unsent = nil
		}
	}
	if a.st.Pending != nil {
		a.resume(ctx)
	}
}

// attach makes sess the agent's session.
func (a *Agent) attach(sess *hub.Session) {
	a.sess = sess
	a.rt.ConnectError = ""
	a.connectedAt = a.now()
	a.healthDue = true
	a.rt.Connected, a.rt.Since, a.rt.LastConnected = true, a.connectedAt, a.connectedAt
	a.saveRuntime()
	a.emit(Event{Kind: EventConnected})
	a.log.Info("connected to the hub", "serial", a.current().Serial())
}

// detach forgets a lost session and schedules the reconnection.
func (a *Agent) detach() {
	if a.sess == nil {
		return
	}
	err := a.sess.Err()
	a.sess.Drop()
	a.sess = nil
	if a.now().Sub(a.connectedAt) >= stableSession {
		a.connFailures = 0
	}
	a.connFailures++
	a.connRetryAt = a.now().Add(backoff(a.connFailures, a.reconnectMin(), a.cfg.ReconnectMax, a.cfg.Rand.Float64()))
	a.rt.Connected, a.rt.Since = false, a.now()
	a.saveRuntime()
	a.emit(Event{Kind: EventDisconnected, Err: err})
	a.log.Info("connection to the hub lost", "err", err)
}

// reconnectMin is the first reconnection delay: a second, or less if renewals retry sooner.
func (a *Agent) reconnectMin() time.Duration { return min(a.cfg.RetryMin, time.Second) }

// work does what is due: a renewal, a health report.
func (a *Agent) work(ctx context.Context) {
	if c := a.owed; c != nil && a.sess != nil && !a.now().Before(a.retryAt) {
		if r := a.clk.Read(); r.Known && r.Best().After(c.Deadline) {
			a.log.Info("giving up a command past its deadline", "command_id", c.CommandID)
			a.owed = nil
		} else {
			a.log.Info("retrying the command the hub asked to retry", "command_id", c.CommandID)
			a.obey(ctx, c)
		}
	}
	pair := a.current()
	r := a.clk.Read()
	if p := a.plan(pair); !r.Now.Before(p.At) && !a.now().Before(a.retryAt) {
		reason := protocol.ReasonWindow
		if r.Now.After(pair.Leaf().NotAfter) {
			reason = protocol.ReasonRecovery
		}
		a.log.Info("renewal due", "why", p.Reason, "at", p.At)
		a.attempt(ctx, reason, "")
	}
	if a.sess != nil && (a.healthDue || a.now().Sub(a.lastHealth) >= a.cfg.HealthEvery || a.now().Before(a.lastHealth)) {
		a.sendHealth(ctx)
	}
}

// plan returns the current renewal plan, drawing the jitter once per certificate and window.
func (a *Agent) plan(pair keystore.Pair) plan {
	key := pair.Serial()
	if a.info != nil {
		key += "|" + a.info.WindowStart.String() + "|" + a.info.WindowEnd.String()
	}
	if key != a.jitterKey {
		a.jitterKey, a.jitter = key, a.cfg.Rand.Float64()
	}
	return renewalPlan(pair.Leaf(), pair.Serial(), a.info, a.jitter)
}

// nextRenewal is the plan as people should see it: its instant, or the end of the backoff
// after a failure when that is later.
func (a *Agent) nextRenewal() plan {
	p := a.plan(a.current())
	if wait := a.retryAt.Sub(a.now()); wait > 0 {
		if at := a.clk.Read().Now.Add(wait); at.After(p.At) {
			p = plan{At: at, Reason: "retry after a failed renewal (" + p.Reason + ")"}
		}
	}
	return p
}

// wait sleeps until something is due, a message arrives or the connection is lost, at most
// Config.Step so that the wall clock is looked at again (timers stall across suspend).
func (a *Agent) wait(ctx context.Context) {
	d := a.cfg.Step
	now := a.now()
	if a.sess == nil {
		d = min(d, a.connRetryAt.Sub(now))
	} else {
		r := a.clk.Read()
		next := max(a.plan(a.current()).At.Sub(r.Now), a.retryAt.Sub(now))
		if a.owed != nil {
			next = a.retryAt.Sub(now) // an owed command is retried at retryAt, window or not
		}
		d = min(d, next, a.lastHealth.Add(a.cfg.HealthEvery).Sub(now))
	}
	d = max(d, minWait)
	timer := time.NewTimer(d)
	defer timer.Stop()
	var inbox <-chan hub.Inbound
	var lost <-chan struct{}
	if a.sess != nil {
		inbox, lost = a.sess.Inbox(), a.sess.Lost()
	}
	select {
	case <-ctx.Done():
	case <-timer.C:
	case in := <-inbox:
		a.handle(ctx, in)
	case <-lost:
		a.detach()
	}
}

// emit reports an event to Config.OnEvent.
func (a *Agent) emit(e Event) {
	if a.cfg.OnEvent == nil {
		return
	}
	if e.Serial == "" {
		e.Serial = a.current().Serial()
	}
	e.Time = a.now()
	a.cfg.OnEvent(e)
}
