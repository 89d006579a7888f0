package hub

import (
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/fleetview"
	"github.com/hearth-pki/hearth/gateway/internal/hass"
)

// newFleetView returns the publisher of the fleet's bridge topics (bridge/device/<id>,
// bridge/devices) and Home Assistant entity states; Run attaches Home Assistant.
func (h *Hub) newFleetView() *fleetview.View {
	return fleetview.New(fleetview.Config{Store: h.store, Topics: h.topics, Publish: h.broker.Publish,
		Hub: hass.Hub{Version: h.version}, CADates: h.caDates,
		Policy: h.policy.Load, Now: h.now, Observer: h.metrics, Serving: h.brokerServing, Logger: h.log.With("part", "fleetview")})
}

// servingCheck is how long a check of the broker's listener stands: summaries may follow
// each other every quarter of a second during a renewal storm.
const servingCheck = 30 * time.Second

// serving caches the last check of the broker's listener.
type serving struct {
	mu sync.Mutex
	at time.Time
	ok bool
}

// brokerServing reports whether the broker for agents accepts a connection: the hub dials its
// own listener (loopback for a wildcard address), as an agent would reach it, at most every
// servingCheck.
func (h *Hub) brokerServing() bool {
	h.serving.mu.Lock()
	defer h.serving.mu.Unlock()
	if now := time.Now(); now.Sub(h.serving.at) < servingCheck {
		return h.serving.ok
	}
	h.serving.ok, h.serving.at = h.dialBroker(), time.Now()
	return h.serving.ok
}

func (h *Hub) dialBroker() bool {
	addr, ok := h.broker.Addr().(*net.TCPAddr)
	if !ok {
		return false
	}
	ip := addr.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port)), time.Second)
	if err != nil {
		h.log.Warn("the broker for agents does not accept connections", "addr", addr, "err", err)
		return false
	}
	c.Close()
	return true
}

// deviceChanged tells the fleet view that device id changed: its bridge topic, its Home
// Assistant entities and the summary follow within the view's interval. The renewal
// scheduler, which reads only the devices it has reason to, looks at it in its next pass.
func (h *Hub) deviceChanged(id string) {
	h.view.DeviceChanged(id)
	h.renewal.Touch(id)
}

// summaryChanged asks the fleet view for a new summary after a change that names no device.
func (h *Hub) summaryChanged() { h.view.RefreshSummary() }
