package fleet

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/agent/device"
)

// maxExamples bounds Summary.FailureExamples.
const maxExamples = 10

// Fleet is a simulated fleet of devices. Create it with New and run it with Run.
type Fleet struct {
	cfg  Config
	fp   string
	sims []*sim

	mu sync.Mutex // guards everything below and the fields of sims marked so
	// counters: see Summary
	phase           string
	started         time.Time
	readyAt         time.Time
	enrolled        int
	reused          int
	enrollFailed    int
	enrollFailures  map[string]int
	online          int
	renewing        int
	commands        int
	committed       int
	devicesRenewed  int
	failed          int
	failures        map[string]int
	examples        []string
	disconnects     int
	connectFailures map[string]int
	samples         []time.Duration
	firstRenewal    time.Time
	lastCommit      time.Time
	allRenewed      chan struct{} // closed once every enrolled device has renewed
	allRenewedOnce  sync.Once
}

// sim is one simulated device.
type sim struct {
	id     string
	token  string         // from Config.Tokens; "" to mint one
	memory *device.Memory // nil with Config.KeysDir
	agent  *device.Agent  // set before its Run starts (under Fleet.mu)

	first     chan struct{} // closed at the first connection, or the first failure to connect
	firstOnce sync.Once

	// Guarded by Fleet.mu.
	enrolled      bool
	online        bool
	renewingSince time.Time
	lastAttempt   time.Time // start of the last renewal, in DeviceState's form
	lastCommit    time.Time // the last commit's ack, likewise
	renewals      int
	failures      int
	err           string
}

// connectedOnce reports the first connection outcome to the worker starting the device.
func (s *sim) connectedOnce() { s.firstOnce.Do(func() { close(s.first) }) }

// New checks cfg and prepares the fleet. It starts nothing and opens nothing.
func New(cfg Config) (*Fleet, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	f := &Fleet{
		cfg: cfg, fp: cfg.fingerprint(), phase: PhaseStarting,
		enrollFailures: map[string]int{}, failures: map[string]int{}, connectFailures: map[string]int{},
		allRenewed: make(chan struct{}),
	}
	for i := range cfg.Devices {
		s := &sim{id: cfg.deviceID(i), first: make(chan struct{})}
		if len(cfg.Tokens) > 0 {
			s.token = cfg.Tokens[i].Token
		}
		if cfg.KeysDir == "" {
			s.memory = new(device.Memory)
		}
		f.sims = append(f.sims, s)
	}
	return f, nil
}

// Run enrolls and starts every device, at most Config.Concurrency at a time, then holds them
// until ctx ends (or, with Config.UntilRenewed, until every enrolled device has renewed). It
// then stops every agent (each announces itself offline) and returns. It returns an error if
// the admin login fails or no device could be enrolled; failures of single devices are
// counted in the Summary.
func (f *Fleet) Run(ctx context.Context) error {
	f.mu.Lock()
	f.started = f.cfg.Now()
	f.mu.Unlock()
	var br *bridge
	if len(f.cfg.Tokens) == 0 && f.cfg.Admin != nil {
		var err error
		if br, err = dialBridge(ctx, f.cfg); err != nil {
			return err
		}
		defer br.close()
	}

	agentCtx, stopAgents := context.WithCancel(ctx)
	defer stopAgents()
	reportDone := make(chan struct{})
	var reporter sync.WaitGroup
	reporter.Go(func() { f.report(reportDone) })

	var agents sync.WaitGroup
	f.startAll(agentCtx, br, &agents)
	var err error
	if agentCtx.Err() == nil {
		f.mu.Lock()
		f.phase, f.readyAt = PhaseHolding, f.cfg.Now()
		f.checkAllRenewed()
		ready := f.summaryLocked()
		f.mu.Unlock()
		f.progress(fmt.Sprintf("hearth-fleet: ready after %s: %d of %d devices enrolled, %d online",
			ready.ReadyAfter, ready.Enrolled, ready.Devices, ready.Online))
		if ready.Enrolled == 0 {
			err = fmt.Errorf("fleet: no device could be enrolled%s", causes(ready.EnrollFailures))
		}
	}
	switch {
	case err != nil || agentCtx.Err() != nil:
	case f.cfg.UntilRenewed:
		select {
		case <-agentCtx.Done():
		case <-f.allRenewed:
		}
	default:
		<-agentCtx.Done()
	}
	stopAgents()
	agents.Wait()
	close(reportDone)
	reporter.Wait()

	f.mu.Lock()
	f.phase = PhaseStopped
	for _, s := range f.sims {
		// Each agent closed its session on the way out (announcing itself offline).
		if s.online {
			s.online = false
			f.online--
		}
	}
	final := f.summaryLocked()
	f.mu.Unlock()
	f.progress(final.ProgressLine())
	if f.cfg.StateFile != "" {
		if werr := writeState(f.cfg.StateFile, final); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// startAll enrolls and starts every device through Config.Concurrency workers, each waiting
// for its device's first connection outcome before taking the next.
func (f *Fleet) startAll(ctx context.Context, br *bridge, agents *sync.WaitGroup) {
	next := make(chan *sim)
	var workers sync.WaitGroup
	for range min(f.cfg.Concurrency, len(f.sims)) {
		workers.Go(func() {
			for s := range next {
				f.start(ctx, br, s, agents)
			}
		})
	}
feed:
	for _, s := range f.sims {
		select {
		case next <- s:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	workers.Wait()
}

// start enrolls s (unless its state directory already holds an identity), runs its agent and
// waits for its first connection outcome.
func (f *Fleet) start(ctx context.Context, br *bridge, s *sim, agents *sync.WaitGroup) {
	cfg := f.deviceConfig(s)
	reused := false
	if f.cfg.KeysDir != "" {
		st, err := device.ReadStatus(device.Config{Dir: cfg.Dir})
		reused = err == nil && st.Enrolled
	}
	if !reused {
		err := f.enroll(ctx, br, s, cfg)
		if errors.Is(err, device.ErrNotCommitted) {
			// The certificate is installed; the agent commits it again when it connects.
			err = nil
		}
		if err != nil {
			if ctx.Err() == nil {
				f.enrollmentFailed(s, err)
			}
			return
		}
	}
	a, err := device.New(cfg)
	if err != nil {
		f.enrollmentFailed(s, err)
		return
	}
	f.mu.Lock()
	s.agent, s.enrolled = a, true
	f.enrolled++
	if reused {
		f.reused++
	}
	f.mu.Unlock()
	agents.Go(func() {
		if err := a.Run(ctx); err != nil {
			f.runFailed(s, err)
		}
		s.connectedOnce()
	})
	select {
	case <-s.first:
	case <-ctx.Done():
	}
}

// enroll gets s a token (its own, or one minted through the bridge) and enrolls it.
func (f *Fleet) enroll(ctx context.Context, br *bridge, s *sim, cfg device.Config) error {
	tok := s.token
	if tok == "" {
		if br == nil {
			return fmt.Errorf("fleet: %s is not enrolled and there is no token for it", s.id)
		}
		var err error
		if tok, err = br.createToken(ctx, s.id); err != nil {
			return err
		}
	}
	return device.Enroll(ctx, cfg, tok, f.fp)
}

// deviceConfig is the agent configuration of s.
func (f *Fleet) deviceConfig(s *sim) device.Config {
	c := device.Config{
		HubURL: f.cfg.HubURL, DeviceID: s.id, Topics: f.cfg.Topics, KeyAlgorithm: f.cfg.KeyAlgorithm,
		Memory: s.memory, Version: f.cfg.Version, Logger: f.cfg.Logger,
		ConnectTimeout: f.cfg.Timeout, RequestTimeout: f.cfg.Timeout, AckTimeout: f.cfg.Timeout, ReconnectMax: f.cfg.ReconnectMax,
		OnEvent: func(ev device.Event) { f.observe(s, ev) },
	}
	if f.cfg.KeysDir != "" {
		c.Dir = filepath.Join(f.cfg.KeysDir, s.id)
	}
	return c
}

// enrollmentFailed counts a device that could not enroll.
func (f *Fleet) enrollmentFailed(s *sim, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enrollFailed++
	f.enrollFailures[cause(err)]++
	s.err = err.Error()
}

// runFailed counts a device whose agent could not start: it no longer counts as enrolled.
func (f *Fleet) runFailed(s *sim, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.enrolled {
		s.enrolled = false
		f.enrolled--
	}
	f.enrollFailed++
	f.enrollFailures[cause(err)]++
	s.err = err.Error()
	f.checkAllRenewed()
}

// observe counts an agent's event. It runs on the agent's goroutine and never blocks for
// long.
func (f *Fleet) observe(s *sim, ev device.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch ev.Kind {
	case device.EventConnected:
		if !s.online {
			s.online = true
			f.online++
		}
		s.connectedOnce()
	case device.EventDisconnected:
		if s.online {
			s.online = false
			f.online--
			f.disconnects++
		}
	case device.EventUnreachable:
		f.connectFailures[cause(ev.Err)]++
		s.connectedOnce()
	case device.EventCommand:
		f.commands++
	case device.EventRenewing:
		if s.renewingSince.IsZero() {
			f.renewing++
		}
		s.renewingSince = ev.Time
		s.lastAttempt = stateTime(ev.Time)
		if f.firstRenewal.IsZero() {
			f.firstRenewal = ev.Time
		}
	case device.EventRenewed:
		if !s.renewingSince.IsZero() {
			f.samples = append(f.samples, ev.Time.Sub(s.renewingSince))
			f.renewing--
			s.renewingSince = time.Time{}
		}
		f.committed++
		s.renewals++
		s.lastCommit = stateTime(ev.Time)
		if s.renewals == 1 {
			f.devicesRenewed++
		}
		f.lastCommit = ev.Time
		s.err = ""
		f.checkAllRenewed()
	case device.EventRolledBack, device.EventRenewFailed:
		if !s.renewingSince.IsZero() {
			f.renewing--
			s.renewingSince = time.Time{}
		}
		f.failed++
		s.failures++
		msg := fmt.Sprint(ev.Err)
		f.failures[cause(ev.Err)]++
		s.err = msg
		if len(f.examples) < maxExamples {
			f.examples = append(f.examples, fmt.Sprintf("%s %s: %s", s.id, ev.Kind, msg))
		}
	}
}

// checkAllRenewed closes allRenewed once the fleet is ready and every enrolled device has
// renewed. f.mu must be held.
func (f *Fleet) checkAllRenewed() {
	if f.phase != PhaseStarting && f.enrolled > 0 && f.devicesRenewed >= f.enrolled {
		f.allRenewedOnce.Do(func() { close(f.allRenewed) })
	}
}

// report prints a progress line and rewrites the state file every Config.ProgressEvery until
// done is closed.
func (f *Fleet) report(done <-chan struct{}) {
	t := time.NewTicker(f.cfg.ProgressEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		s := f.Summary()
		f.progress(s.ProgressLine())
		if f.cfg.StateFile != "" {
			if err := writeState(f.cfg.StateFile, s); err != nil {
				f.progress("hearth-fleet: " + err.Error())
			}
		}
	}
}

// progress writes one line to Config.Progress.
func (f *Fleet) progress(line string) {
	if f.cfg.Progress != nil {
		fmt.Fprintln(f.cfg.Progress, line)
	}
}

// Summary returns the fleet's figures and every device's view as of now.
func (f *Fleet) Summary() Summary {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.summaryLocked()
}

// summaryLocked builds the Summary; f.mu must be held.
func (f *Fleet) summaryLocked() Summary {
	now := f.cfg.Now()
	s := Summary{
		Phase: f.phase, At: now, Devices: len(f.sims),
		Enrolled: f.enrolled, Reused: f.reused, EnrollFailed: f.enrollFailed, EnrollFailures: clone(f.enrollFailures),
		Online: f.online, Renewing: f.renewing, Commands: f.commands,
		Committed: f.committed, DevicesRenewed: f.devicesRenewed,
		AllRenewed: f.enrolled > 0 && f.devicesRenewed >= f.enrolled,
		Failed:     f.failed, Failures: clone(f.failures), FailureExamples: append([]string(nil), f.examples...),
		Disconnects: f.disconnects, ConnectFailures: clone(f.connectFailures),
		Latency:      latency(append([]time.Duration(nil), f.samples...)),
		FirstRenewal: f.firstRenewal, LastCommit: f.lastCommit,
	}
	if !f.started.IsZero() {
		s.Elapsed = Seconds(now.Sub(f.started))
	}
	if !f.readyAt.IsZero() {
		s.ReadyAfter = Seconds(f.readyAt.Sub(f.started))
	}
	if span := f.lastCommit.Sub(f.firstRenewal); f.committed > 0 && span > 0 {
		s.RenewalsPerSecond = float64(f.committed) / span.Seconds()
	}
	s.DeviceList = make([]DeviceState, len(f.sims))
	for i, d := range f.sims {
		ds := DeviceState{ID: d.id, Online: d.online, Renewals: d.renewals, Failures: d.failures, Error: d.err,
			LastAttempt: d.lastAttempt, LastCommit: d.lastCommit}
		if d.agent != nil {
			ds.Serial = d.agent.Serial()
		}
		s.DeviceList[i] = ds
	}
	return s
}

// stateTime is t as a DeviceState holds it: UTC without a monotonic reading, so that a
// DeviceState read back from the state file equals the one written.
func stateTime(t time.Time) time.Time { return t.UTC().Round(0) }

// clone copies a map of counts; nil when empty, so that JSON omits it.
func clone(m map[string]int) map[string]int {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
