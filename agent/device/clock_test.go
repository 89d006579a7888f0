package device

import (
	"testing"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

// reportAfterCommand asks the agent for a report (a live message carrying the hub's time) and
// returns the first health report that follows it with the clock untrusted or a skew.
func reportAfterCommand(t *testing.T, e *env, id, serial string) protocol.Health {
	t.Helper()
	e.hub.Command(id, "report-1", protocol.ActionReport)
	for {
		h := healthWith(t, e, serial)
		if h.SkewSeconds != 0 {
			return h
		}
	}
}

func TestClock1970BootNotExpired(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("cam-1")
	e.enroll(cfg)
	serial := onDisk(t, cfg.Dir).Serial()

	boot := time.Now()
	cfg.Now = func() time.Time { return time.Unix(0, 0).Add(time.Since(boot)) }
	st, err := ReadStatus(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Expired || st.ClockTrusted || st.TimeLeft <= 0 || !st.ChainOK {
		t.Errorf("ReadStatus(1970 clock) = expired %t trusted %t time left %s chain ok %t (%s); want not expired, untrusted, time left, chain ok",
			st.Expired, st.ClockTrusted, time.Duration(st.TimeLeft), st.ChainOK, st.ChainError)
	}

	r := e.start(cfg) // the TLS handshake must not call the hub's certificate "not yet valid" either
	r.waitFor(t, EventConnected)
	h := healthWith(t, e, serial)
	if h.ClockTrusted || !h.ChainOK || h.DeviceTime.Year() != 1970 {
		t.Errorf("health with a 1970 clock = trusted %t chain ok %t (%s) device time %s; want untrusted, chain ok, 1970",
			h.ClockTrusted, h.ChainOK, h.ChainError, h.DeviceTime)
	}
	h = reportAfterCommand(t, e, "cam-1", serial)
	if h.SkewSeconds > -50*365*24*3600 {
		t.Errorf("skew after a hub time = %d s, want about -56 years", h.SkewSeconds)
	}
	r.stop(t)
	if lkg := loadState(t, cfg.Dir).LastKnownGood; lkg.Year() < 2025 {
		t.Errorf("last known good time = %s, want the hub's time, not the device's", lkg)
	}
}

func TestClockDeviceAheadOfHub(t *testing.T) {
	e := newEnv(t, true)
	e.hub.SetLifetime(24 * time.Hour)
	cfg := e.config("cam-1")
	e.enroll(cfg)
	serial := onDisk(t, cfg.Dir).Serial()
	cfg.Now = func() time.Time { return time.Now().Add(3 * time.Hour) }
	r := e.start(cfg)
	r.waitFor(t, EventConnected)
	h := reportAfterCommand(t, e, "cam-1", serial)
	if h.ClockTrusted || h.SkewSeconds < 3*3600-60 || h.SkewSeconds > 3*3600+60 {
		t.Errorf("health = trusted %t skew %d s, want untrusted and about +10800 s", h.ClockTrusted, h.SkewSeconds)
	}
}

func TestClockDeviceBehindHubUsesHubTime(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("cam-1")
	e.enroll(cfg)
	old := onDisk(t, cfg.Dir).Serial()
	cfg.Now = func() time.Time { return time.Now().Add(-3 * time.Hour) }
	r := e.start(cfg)
	r.waitFor(t, EventConnected)
	// By the device's clock the window is three hours away; by the hub's it has passed.
	now := e.hub.HubNow()
	e.hub.Publish(protocol.Topics{}.Device("cam-1", protocol.KindRenewal), false, &protocol.RenewalInfo{
		V: protocol.Version, Serial: old, WindowStart: now.Add(-2 * time.Minute), WindowEnd: now.Add(-time.Minute), HubTime: now,
	})
	r.waitFor(t, EventRenewed)
	csr := recv(t, e.hub.CSRs, "CSR")
	if d := now.Add(-3 * time.Hour).Sub(csr.Time); d > time.Minute || d < -time.Minute {
		t.Errorf("CSR time = %s, want the device's own clock (about %s)", csr.Time, now.Add(-3*time.Hour))
	}
	h := healthWith(t, e, onDisk(t, cfg.Dir).Serial())
	if h.ClockTrusted || h.SkewSeconds > -3*3600+60 || h.SkewSeconds < -3*3600-60 || !h.ChainOK {
		t.Errorf("health = trusted %t skew %d s chain ok %t, want untrusted, about -10800 s, chain ok", h.ClockTrusted, h.SkewSeconds, h.ChainOK)
	}
}
