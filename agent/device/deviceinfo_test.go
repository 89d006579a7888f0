package device

import (
	"runtime"
	"testing"
)

// TestHealthCarriesDeviceInfo: the manufacturer and model the operator gave the agent, and its
// architecture, reach the hub in the health report (Home Assistant's device info).
func TestHealthCarriesDeviceInfo(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("plug-7")
	e.enroll(cfg)
	serial := onDisk(t, cfg.Dir).Serial()
	cfg.Manufacturer, cfg.Model = "Acme", "Smart Plug 2"
	r := e.start(cfg)
	r.waitFor(t, EventConnected)
	h := healthWith(t, e, serial)
	if h.Manufacturer != "Acme" || h.Model != "Smart Plug 2" || h.Arch != runtime.GOARCH || h.AgentVersion == "" {
		t.Errorf("health = manufacturer %q model %q arch %q version %q; want Acme, Smart Plug 2, %s and a version",
			h.Manufacturer, h.Model, h.Arch, h.AgentVersion, runtime.GOARCH)
	}
}
