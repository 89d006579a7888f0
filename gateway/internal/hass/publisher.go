package hass

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Defaults of Config.
const (
	DefaultDiscoveryPrefix = "homeassistant"
	DefaultTopicPrefix     = "hearth"
	DefaultClientID        = "hearth-hass"
	// DefaultBirthTopic is where Home Assistant announces itself by default, whatever the
	// discovery prefix: its MQTT integration's birth message.
	DefaultBirthTopic = "homeassistant/status"
)

const (
	publishTimeout = 30 * time.Second // a batch of publications must be acknowledged within it
	retryDelay     = 10 * time.Second // after a failed batch or subscription
	shutdownWait   = 2 * time.Second  // for the "offline" state at shutdown
	maxStale       = 4096             // stale discovery configs remembered before the first Update
)

// Config configures a Publisher. The zero value of every field but Broker means its default.
type Config struct {
	Broker Broker // Home Assistant's broker, from DiscoverBroker
	// Discover, when set, finds the broker instead (DiscoverBroker through the Supervisor):
	// Run asks it, retrying from DiscoverBackoff doubling to a minute, until it answers — a
	// Mosquitto add-on that starts after Hearth, or a Supervisor that answers 401 at first,
	// still gets discovery started.
	Discover        func(context.Context) (Broker, error)
	DiscoverBackoff time.Duration // default 1 s
	DiscoveryPrefix string        // Home Assistant's discovery prefix; default "homeassistant"
	TopicPrefix     string        // Hearth's topic prefix; default "hearth"
	ClientID        string        // MQTT client id, without '/', '+' or '#', unique per hub (two hubs on one broker); default "hearth-hass"
	BirthTopic      string        // Home Assistant's birth topic; default DefaultBirthTopic
	// DashboardURL is the hub's dashboard (in the add-on its ingress panel,
	// homeassistant://hassio/ingress/<slug>): the hub's configuration_url, and with
	// /devices/<id> each device's. Empty: none.
	DashboardURL string
	Bridge       Bridge      // answers bridge requests; nil answers each with an error
	TLSConfig    *tls.Config // for Broker.SSL; nil verifies against the system roots
}

// Publisher keeps Home Assistant's view of the hub and its devices current. Create it with
// New, feed it with UpdateHub, UpdateDevice, RemoveDevice and Complete, and run it with Run.
type Publisher struct {
	cfg Config
	t   topics
	log *slog.Logger

	mu       sync.Mutex
	hub      *Hub                // the last UpdateHub; nil before the first
	devices  map[string]Device   // by object id: the devices that should have entities
	dirty    map[string]struct{} // object ids changed since Run's loop last looked
	complete bool                // every device has been given (Complete)
	stale    map[string]struct{} // Hearth discovery configs seen on the broker, not yet handled
	events   []Event             // for the event entity, not yet published

	connects atomic.Uint64 // OnConnect calls so far

	wake     chan struct{} // an update, or a stale config, arrived
	conn     chan struct{} // the connection went up or down
	birth    chan struct{} // Home Assistant announced itself online
	requests chan request  // bridge requests for the worker
}

// New returns a Publisher for cfg that logs to logger (nil discards). It starts nothing and
// checks nothing: Run reports a bad Config.
func New(cfg Config, logger *slog.Logger) *Publisher {
	if cfg.DiscoveryPrefix == "" {
		cfg.DiscoveryPrefix = DefaultDiscoveryPrefix
	}
	if cfg.TopicPrefix == "" {
		cfg.TopicPrefix = DefaultTopicPrefix
	}
	if cfg.ClientID == "" {
		cfg.ClientID = DefaultClientID
	}
	if cfg.BirthTopic == "" {
		cfg.BirthTopic = DefaultBirthTopic
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Publisher{
		cfg:      cfg,
		t:        topics{discovery: cfg.DiscoveryPrefix, prefix: cfg.TopicPrefix, birthTopic: cfg.BirthTopic, dashboard: cfg.DashboardURL},
		log:      logger,
		devices:  map[string]Device{},
		dirty:    map[string]struct{}{},
		stale:    map[string]struct{}{},
		wake:     make(chan struct{}, 1),
		conn:     make(chan struct{}, 1),
		birth:    make(chan struct{}, 1),
		requests: make(chan request, requestQueue),
	}
}

// The update methods below may be called from any goroutine, before or during Run. None
// blocks on the network: each records the change, and Run's loop publishes what changed since
// it last looked, so updates in quick succession coalesce and the work of one is independent
// of the number of devices.

// UpdateHub sets the hub's own state. Nothing is published before the first UpdateHub: the
// hub's discovery config comes first, so that the devices' via_device resolves.
func (p *Publisher) UpdateHub(h Hub) {
	p.mu.Lock()
	p.hub = &h
	p.dirty[hubObjectID] = struct{}{}
	p.mu.Unlock()
	notify(p.wake)
}

// UpdateDevice sets the state of one device, creating its entities if it is new. A device
// without an ID is ignored. d is copied.
func (p *Publisher) UpdateDevice(d Device) {
	if d.ID == "" {
		return
	}
	d.Problems = slices.Clone(d.Problems)
	oid := objectID(d.ID)
	p.mu.Lock()
	p.devices[oid] = d
	p.dirty[oid] = struct{}{}
	p.mu.Unlock()
	notify(p.wake)
}

// RemoveDevice removes the entities of device id from Home Assistant.
func (p *Publisher) RemoveDevice(id string) {
	oid := objectID(id)
	p.mu.Lock()
	delete(p.devices, oid)
	p.dirty[oid] = struct{}{}
	p.mu.Unlock()
	notify(p.wake)
}

// Complete tells the Publisher that every device has been given with UpdateDevice since New.
// From then on, retained Hearth configs found on the broker for other devices (removed while
// the hub was down) are cleared; before it, none is, so a restart never removes entities.
func (p *Publisher) Complete() {
	p.mu.Lock()
	p.complete = true
	p.mu.Unlock()
	notify(p.wake)
}

// Run connects to Home Assistant's broker, keeps the connection (reconnecting as needed),
// publishes and maintains the discovery configs and states, and serves bridge requests, until
// ctx ends. It then marks the hub offline, disconnects and returns nil. It returns an error at
// once if the Config is invalid. Run must not be called twice.
func (p *Publisher) Run(ctx context.Context) error {
	if p.cfg.Discover != nil {
		b, ok := p.discover(ctx)
		if !ok {
			return nil // ctx ended first
		}
		p.cfg.Broker = b
	}
	if err := p.check(); err != nil {
		return err
	}
	client := mqtt.NewClient(p.clientOptions())

	workCtx, stopWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { p.connect(workCtx, client) })
	wg.Go(func() { p.serveRequests(workCtx, client) })

	l := loop{p: p, client: client, published: ledger{}, retry: map[string]struct{}{}}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		ok := true
		select {
		case <-ctx.Done():
			stopWork()
			wg.Wait()
			l.shutdown()
			return nil
		case <-p.conn:
			ok = l.connectionChanged(ctx) && l.flushEvents(ctx)
		case <-p.birth:
			p.log.Info("home assistant is online: publishing discovery again")
			ok = l.sync(ctx, true)
		case <-p.wake:
			ok = l.sync(ctx, false) && l.flushEvents(ctx)
		case <-retry.C:
			if l.online && !l.ready() {
				ok = l.connectionChanged(ctx)
			} else {
				ok = l.sync(ctx, false) && l.flushEvents(ctx)
			}
		}
		if !ok {
			retry.Reset(retryDelay)
		}
	}
}

// discover asks Config.Discover for the broker until it answers or ctx ends.
func (p *Publisher) discover(ctx context.Context) (Broker, bool) {
	backoff := p.cfg.DiscoverBackoff
	if backoff <= 0 {
		backoff = time.Second
	}
	for attempt := 0; ; attempt++ {
		b, err := p.cfg.Discover(ctx)
		if err == nil {
			if attempt > 0 {
				p.log.Info("found home assistant's broker through the supervisor", "attempts", attempt+1)
			}
			return b, true
		}
		level := slog.LevelWarn
		if attempt > 0 {
			level = slog.LevelDebug
		}
		p.log.Log(ctx, level, "cannot find home assistant's broker through the supervisor yet (install or start the Mosquitto add-on); retrying",
			"err", err, "retry_in", backoff)
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return Broker{}, false
		case <-timer.C:
		}
		backoff = min(2*backoff, time.Minute)
	}
}

// check validates the Config.
func (p *Publisher) check() error {
	if err := checkPrefix(p.cfg.DiscoveryPrefix); err != nil {
		return fmt.Errorf("hass: discovery prefix: %w", err)
	}
	if err := checkPrefix(p.cfg.TopicPrefix); err != nil {
		return fmt.Errorf("hass: topic prefix: %w", err)
	}
	if err := checkPrefix(p.cfg.BirthTopic); err != nil {
		return fmt.Errorf("hass: birth topic: %w", err)
	}
	if id := p.cfg.ClientID; strings.ContainsAny(id, "/+#") || len(id) > 64 {
		return fmt.Errorf("hass: client id %q: at most 64 characters, without '/', '+' or '#'", id)
	}
	if p.cfg.Broker.Host == "" || p.cfg.Broker.Port < 1 || p.cfg.Broker.Port > 65535 {
		return fmt.Errorf("hass: broker %q port %d is not an address", p.cfg.Broker.Host, p.cfg.Broker.Port)
	}
	return nil
}

// checkPrefix checks a topic prefix: levels of [a-zA-Z0-9_-] separated by '/'.
func checkPrefix(s string) error {
	if len(s) > 255 {
		return fmt.Errorf("%q is longer than 255 characters", s)
	}
	for level := range strings.SplitSeq(s, "/") {
		if level == "" {
			return fmt.Errorf("%q has an empty level", s)
		}
		for _, r := range level {
			if !isTopicSafe(r) {
				return fmt.Errorf("%q contains %q", s, r)
			}
		}
	}
	return nil
}

// clientOptions configures paho as the design requires: MQTT 3.1.1, unordered handlers that
// never block, a clean session re-subscribed on every connect, and a retained "offline" Will
// on the availability topic.
func (p *Publisher) clientOptions() *mqtt.ClientOptions {
	b := p.cfg.Broker
	opts := mqtt.NewClientOptions().
		AddBroker(b.URL()).
		SetClientID(p.cfg.ClientID).
		SetUsername(b.Username).
		SetPassword(b.Password).
		SetProtocolVersion(4).
		SetOrderMatters(false).
		SetCleanSession(true).
		SetResumeSubs(false).
		SetAutoReconnect(true).
		SetConnectRetry(false).
		SetMaxReconnectInterval(time.Minute).
		SetConnectTimeout(5*time.Second).
		SetWriteTimeout(10*time.Second).
		SetKeepAlive(30*time.Second).
		SetBinaryWill(p.t.availability(), []byte("offline"), 1, true).
		SetOnConnectHandler(func(mqtt.Client) {
			p.connects.Add(1)
			notify(p.conn)
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			p.log.Warn("lost the connection to home assistant's broker", "err", err)
			notify(p.conn)
		})
	if b.SSL {
		tc := p.cfg.TLSConfig
		if tc == nil {
			tc = &tls.Config{ServerName: b.Host, MinVersion: tls.VersionTLS12}
		}
		opts.SetTLSConfig(tc)
	}
	return opts
}

// connect makes the first connection, retrying with backoff; paho's auto-reconnect keeps it
// afterwards.
func (p *Publisher) connect(ctx context.Context, client mqtt.Client) {
	backoff := time.Second
	for attempt := 0; ; attempt++ {
		tok := client.Connect()
		select {
		case <-ctx.Done():
			return
		case <-tok.Done():
		}
		err := tok.Error()
		if err == nil {
			p.log.Info("connected to home assistant's broker", "broker", p.cfg.Broker)
			return
		}
		level := slog.LevelWarn
		if attempt > 0 {
			level = slog.LevelDebug // said once; the retries go on quietly
		}
		p.log.Log(ctx, level, "cannot connect to home assistant's broker; retrying", "broker", p.cfg.Broker, "err", err)
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		backoff = min(2*backoff, time.Minute)
	}
}

// serveRequests hands bridge requests to the Bridge one at a time and publishes the replies.
func (p *Publisher) serveRequests(ctx context.Context, client mqtt.Client) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-p.requests:
			reply := answer(ctx, p.cfg.Bridge, r)
			if len(reply) == 0 {
				continue
			}
			if r.op == "device/renew" {
				p.renewFailed(r.payload, reply)
			}
			tok := client.Publish(p.t.response(r.op), 1, false, reply)
			if err := waitTokens(ctx, time.Now().Add(publishTimeout), tok); err != nil {
				p.log.Warn("cannot publish a bridge response", "op", r.op, "err", err)
			}
		}
	}
}

// onRequest takes a bridge request off the broker. Retained requests are ignored: a stale
// request must never run again at every reconnect. (MQTT 3.1.1 clears the retain flag of a
// message forwarded live, so a request published with it runs once, when it is sent, and
// never again.) An empty payload — clearing a retained request — is ignored without a reply.
func (p *Publisher) onRequest(_ mqtt.Client, m mqtt.Message) {
	op := strings.TrimPrefix(m.Topic(), p.t.requestPrefix())
	if m.Retained() {
		p.log.Warn("ignoring a retained bridge request; send requests without the retain flag", "op", op)
		return
	}
	if len(m.Payload()) == 0 {
		return
	}
	select {
	case p.requests <- request{op: op, payload: slices.Clone(m.Payload())}:
	default:
		p.log.Warn("too many bridge requests waiting; dropped one", "op", op)
	}
}

// onBirth takes Home Assistant's status messages; a live "online" asks for the configs again.
func (p *Publisher) onBirth(_ mqtt.Client, m mqtt.Message) {
	if !m.Retained() && string(m.Payload()) == "online" {
		notify(p.birth)
	}
}

// onConfig notes Hearth discovery configs retained on the broker, to clear those of devices
// that no longer exist.
func (p *Publisher) onConfig(_ mqtt.Client, m mqtt.Message) {
	oid := configObjectID(p.t, m.Topic())
	if oid == "" || oid == hubObjectID || len(m.Payload()) == 0 {
		return
	}
	p.mu.Lock()
	if len(p.stale) < maxStale {
		p.stale[oid] = struct{}{}
	}
	p.mu.Unlock()
	notify(p.wake)
}

// notify signals c without blocking; a signal already pending covers this one.
func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// errPublishTimeout reports a publication the broker did not acknowledge in time.
var errPublishTimeout = errors.New("the broker did not acknowledge in time")

// waitTokens waits for every token until deadline or ctx ends; it returns the first error.
func waitTokens(ctx context.Context, deadline time.Time, toks ...mqtt.Token) error {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var first error
	for _, tok := range toks {
		var err error
		select {
		case <-tok.Done():
			err = tok.Error()
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return errPublishTimeout
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}
