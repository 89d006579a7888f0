package hub

import (
	"github.com/hearth-pki/hearth/gateway/internal/fleetview"
	"github.com/hearth-pki/hearth/gateway/internal/hass"
)

// newFleetView returns the publisher of the fleet's bridge topics (bridge/device/<id>,
// bridge/devices) and Home Assistant entity states; Run attaches Home Assistant.
func (h *Hub) newFleetView() *fleetview.View {
	return fleetview.New(fleetview.Config{Store: h.store, Topics: h.topics, Publish: h.broker.Publish,
		Hub:    hass.Hub{Version: h.version, CAExpires: h.ca.Intermediate().NotAfter},
		Policy: h.policy.Load, Now: h.now, Logger: h.log.With("part", "fleetview")})
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
