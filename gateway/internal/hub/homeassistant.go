package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/atomicfile"
	"github.com/hearth-pki/hearth/gateway/internal/hass"
	"github.com/hearth-pki/hearth/protocol"
)

// haOps are the bridge operations Home Assistant's broker may call. token/create is not
// among them: its answer carries a secret, and every client of HA's broker could read it.
// device/renew is held by the admin service's per-device cool-down like every renew, and
// device/get answers only what HA shows (haRequest).
var haOps = []string{"device/list", "device/get", "device/renew"}

// haRequest answers a bridge request from Home Assistant's broker, where any client (a smart
// plug with broker credentials) may publish: only haOps, and device/get cut down to the
// device's summary — the state, presence and expiry HA shows — without its inventory record,
// certificates, attempts and audit events.
func haRequest(ctx context.Context, do func(ctx context.Context, actor, op string, payload []byte) protocol.BridgeResponse, op string, payload []byte) protocol.BridgeResponse {
	if !slices.Contains(haOps, op) {
		var req protocol.BridgeRequest
		_ = json.Unmarshal(payload, &req)
		return protocol.BridgeResponse{Status: "error", Code: protocol.CodeForbidden, Transaction: req.Transaction,
			Error: fmt.Sprintf("operation %q is not available from Home Assistant's broker (use %v)", op, haOps)}
	}
	resp := do(ctx, "ha", op, payload)
	if op == "device/get" && resp.Status == "ok" {
		var summary protocol.DeviceSummary
		if err := json.Unmarshal(resp.Data, &summary); err != nil {
			return protocol.BridgeResponse{Transaction: resp.Transaction, Status: "error", Code: protocol.CodeInternal, Error: "the device could not be summarised"}
		}
		resp.Data, _ = json.Marshal(summary)
	}
	return resp
}

// homeAssistant returns the discovery publisher, or nil when discovery is off or Home
// Assistant has no broker.
func (h *Hub) homeAssistant(ctx context.Context) *hass.Publisher {
	if !h.cfg.HA.Discovery {
		return nil
	}
	var b hass.Broker
	var discover func(context.Context) (hass.Broker, error)
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
		// Found by the publisher's Run, retried until the Supervisor answers.
		client := &http.Client{Timeout: 10 * time.Second}
		discover = func(ctx context.Context) (hass.Broker, error) {
			return hass.DiscoverBroker(ctx, h.cfg.HA.SupervisorURL, h.cfg.HA.SupervisorToken, client)
		}
	default:
		h.log.Warn("Home Assistant discovery is on but no broker is configured (home_assistant.broker)")
		return nil
	}
	return hass.New(hass.Config{Broker: b, DiscoveryPrefix: h.cfg.HA.DiscoveryPrefix, TopicPrefix: h.topics.Prefix(),
		BirthTopic: h.cfg.HA.BirthTopic, ClientID: h.haClientID(), Discover: discover, DashboardURL: h.cfg.HA.DashboardURL,
		Bridge: func(ctx context.Context, op string, payload []byte) []byte {
			doAs := func(ctx context.Context, _, op string, payload []byte) protocol.BridgeResponse {
				return h.admin.DoAs(ctx, haPrincipal, op, payload)
			}
			b, _ := json.Marshal(haRequest(ctx, doAs, op, payload))
			return b
		}}, h.log.With("part", "hass"))
}

// haClientID is the client id on Home Assistant's broker: unique per hub (its CA's
// fingerprint), so two hubs on one broker do not take each other's session.
func (h *Hub) haClientID() string {
	fp := strings.TrimPrefix(h.ca.Fingerprint(), "SHA256:")
	return hass.DefaultClientID + "-" + fp[:min(12, len(fp))]
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
