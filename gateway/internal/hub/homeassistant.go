package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/atomicfile"
	"github.com/hearth-pki/hearth/gateway/internal/hass"
	"github.com/hearth-pki/hearth/protocol"
)

// haOps are the bridge operations Home Assistant's broker may call. token/create is not
// among them: its answer carries a secret, and every client of HA's broker could read it.
var haOps = []string{"device/list", "device/get", "device/renew"}

// homeAssistant returns the discovery publisher, or nil when discovery is off or Home
// Assistant has no broker.
func (h *Hub) homeAssistant(ctx context.Context) *hass.Publisher {
	if !h.cfg.HA.Discovery {
		return nil
	}
	var b hass.Broker
	switch {
	case h.cfg.HA.Broker != "":
		u, err := url.Parse(h.cfg.HA.Broker)
		port, _ := strconv.Atoi(u.Port())
		if err != nil || port == 0 {
			h.log.Error("home_assistant.broker is not mqtt://host:port", "broker", h.cfg.HA.Broker)
			return nil
		}
		b = hass.Broker{Host: u.Hostname(), Port: port, SSL: u.Scheme == "mqtts", Username: h.cfg.HA.Username, Password: h.cfg.HA.Password}
	case h.cfg.HA.SupervisorToken != "":
		var err error
		b, err = hass.DiscoverBroker(ctx, h.cfg.HA.SupervisorURL, h.cfg.HA.SupervisorToken, &http.Client{Timeout: 10 * time.Second})
		if errors.Is(err, hass.ErrNoBroker) {
			h.log.Warn("Home Assistant has no MQTT broker (install the Mosquitto add-on): devices are not shown as entities")
			return nil
		}
		if err != nil {
			h.log.Error("ask the Supervisor for Home Assistant's MQTT broker", "err", err)
			return nil
		}
	default:
		h.log.Warn("Home Assistant discovery is on but no broker is configured (home_assistant.broker)")
		return nil
	}
	return hass.New(hass.Config{Broker: b, DiscoveryPrefix: h.cfg.HA.DiscoveryPrefix, TopicPrefix: h.topics.Prefix(),
		Bridge: func(ctx context.Context, op string, payload []byte) []byte {
			var resp protocol.BridgeResponse
			if slices.Contains(haOps, op) {
				resp = h.admin.DoAs(ctx, haPrincipal, op, payload)
			} else {
				var req protocol.BridgeRequest
				_ = json.Unmarshal(payload, &req)
				resp = protocol.BridgeResponse{Status: "error", Code: protocol.CodeForbidden, Transaction: req.Transaction,
					Error: fmt.Sprintf("operation %q is not available from Home Assistant's broker (use %v)", op, haOps)}
			}
			b, _ := json.Marshal(resp)
			return b
		}}, h.log.With("part", "hass"))
}

// exportCA writes the CA bundle to SSLDir/hearth/ so other add-ons can trust the hub's
// certificates.
func (h *Hub) exportCA() error {
	if !h.cfg.ExportCA {
		return nil
	}
	dir := filepath.Join(h.cfg.SSLDir, "hearth")
	if _, err := os.Stat(h.cfg.SSLDir); err != nil {
		h.log.Info("CA export skipped: the ssl folder is not mapped", "dir", h.cfg.SSLDir)
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("export CA: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "ca.pem"), h.ca.ChainPEM(), 0o644); err != nil {
		return fmt.Errorf("export CA: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(dir, "root.pem"), h.ca.RootPEM(), 0o644)
}
