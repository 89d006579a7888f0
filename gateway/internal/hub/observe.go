package hub

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/alert"
	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/gateway/internal/hass"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/lifecycle"
	"github.com/hearth-pki/hearth/gateway/internal/metrics"
	"github.com/hearth-pki/hearth/gateway/internal/monitor"
	"github.com/hearth-pki/hearth/protocol"
)

// This file feeds the metrics and the alerts from the hooks of the parts they watch: the
// state machine's commits and ends, the issuer's refusals, the hub's events, the broker's
// refused logins. Each hook costs at most one inventory read (the attempt a commit or an
// end concludes), never work proportional to the fleet.

// hubCertificates returns the not-after of the hub's own certificates.
func (h *Hub) hubCertificates() map[string]time.Time {
	return map[string]time.Time{"root": h.ca.Root().NotAfter, "intermediate": h.ca.Intermediate().NotAfter, "broker": h.serverCert.Current().NotAfter}
}

// newAlerter builds the alert routes the configuration asks for: the bridge events always,
// Home Assistant's event entity when discovery runs (attached in Run), the Supervisor's
// notifications in the add-on, and the webhook.
func (h *Hub) newAlerter() *alert.Alerter {
	cfg := h.cfg.Alerts
	routes := []alert.Route{bridgeRoute{h}}
	if cfg.Webhook.URL != "" {
		routes = append(routes, &alert.Webhook{URL: cfg.Webhook.URL, Secret: []byte(cfg.Webhook.Secret), Now: h.now})
	}
	switch {
	case cfg.HomeAssistant == "":
	case h.cfg.HA.SupervisorToken == "":
		h.log.Warn("alerts.home_assistant needs the Supervisor (the add-on): Home Assistant notifications are off")
	default:
		routes = append(routes, &alert.HomeAssistant{API: strings.TrimSuffix(h.cfg.HA.SupervisorURL, "/") + "/core/api",
			Token: h.cfg.HA.SupervisorToken, Service: cfg.HomeAssistant})
	}
	return alert.New(alert.Config{Routes: routes, PerHour: cfg.PerHour, Burst: cfg.Burst,
		Rules:           monitor.Rules{GroupDevices: cfg.FamilyDevices, Window: cfg.Window, Repeated: cfg.Repeated},
		HubCertificates: h.hubCertificates, Failed: h.alertFailed, Now: h.now, Logger: h.log.With("part", "alert")})
}

// bridgeRoute publishes alerts as bridge events (alert.raised, alert.resolved), recorded in
// the audit log, and on Home Assistant's event entity when discovery runs.
type bridgeRoute struct{ h *Hub }

func (bridgeRoute) Name() string { return "bridge" }

func (r bridgeRoute) Send(ctx context.Context, n alert.Notification) error {
	kind := protocol.EventAlertRaised
	if n.State == alert.StateResolved {
		kind = protocol.EventAlertResolved
	}
	e := inventory.Event{Time: n.Time, Kind: kind, DeviceID: n.DeviceID, Actor: "monitor", Message: n.Message,
		Data: map[string]string{"id": n.ID, "kind": string(n.Kind), "family": n.Family, "class": n.Class,
			"devices": strings.Join(n.Devices, ","), "cause": string(n.Cause), "cause_class": string(n.CauseClass)}}
	if _, err := r.h.store.AppendEvent(ctx, e); err != nil {
		return fmt.Errorf("record alert: %w", err)
	}
	r.h.notify(protocol.Event{V: protocol.Version, Type: kind, Time: n.Time, DeviceID: n.DeviceID, Message: n.Message, Data: e.Data})
	if ha := r.h.ha; ha != nil {
		ha.Publish(hass.Event{EventType: n.State, ID: n.ID, Kind: string(n.Kind), Title: n.Title, Message: n.Message,
			DeviceID: n.DeviceID, Family: n.Family, Class: n.Class, Devices: n.Devices, Cause: string(n.Cause),
			CauseClass: string(n.CauseClass), Time: n.Time})
	}
	return nil
}

// alertFailed records an alert that could not be delivered: counted, logged by the
// alerter, appended to the audit log and published.
func (h *Hub) alertFailed(route string, n alert.Notification, err error) {
	h.metrics.AlertFailed(route)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e := inventory.Event{Time: h.now().UTC(), Kind: protocol.EventAlertFailed, DeviceID: n.DeviceID, Actor: "monitor",
		Message: fmt.Sprintf("alert %s (%s) not delivered on %s: %v", n.ID, n.State, route, err),
		Data:    map[string]string{"id": n.ID, "state": n.State, "route": route, "error": protocol.ClipText(err.Error())}}
	if _, err := h.store.AppendEvent(ctx, e); err != nil {
		h.log.Warn("record alert failure", "err", err)
	}
	h.notify(protocol.Event{V: protocol.Version, Type: e.Kind, Time: e.Time, DeviceID: e.DeviceID, Message: e.Message, Data: e.Data})
}

// groupOf returns the family and class the metrics last saw for the device.
func (h *Hub) groupOf(id string) (family, class string) {
	family, class, _ = h.metrics.Device(id)
	return family, class
}

// attemptOf reads the attempt a commit or an end concludes: its reason and start. An
// enrollment is not a renewal: ok is false for it (and for an attempt not found).
func (h *Hub) attemptOf(deviceID, requestID string) (started time.Time, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := h.store.Attempt(ctx, deviceID, requestID)
	if err != nil || a.Reason == string(protocol.ReasonEnroll) {
		return time.Time{}, false
	}
	return a.StartedAt, true
}

// observeCommit counts a committed renewal and tells the alerts.
func (h *Hub) observeCommit(c lifecycle.Committed) {
	h.alerts.Renewed(c.DeviceID, c.At)
	started, ok := h.attemptOf(c.DeviceID, c.RequestID)
	if !ok {
		return
	}
	took := c.At.Sub(started)
	h.metrics.Renewal(metrics.OutcomeCommitted, "", took)
	family, class := h.groupOf(c.DeviceID)
	h.alerts.Attempt(monitor.Attempt{DeviceID: c.DeviceID, Family: family, Class: class, OK: true, Latency: took, At: c.At})
}

// observeEnd counts a request that ended without a commit (or rolled back after one).
func (h *Hub) observeEnd(e lifecycle.Ended) {
	started, ok := h.attemptOf(e.DeviceID, e.RequestID)
	if !ok {
		return
	}
	outcome, cause, took := metrics.OutcomeRolledBack, e.Failure, e.At.Sub(started)
	switch e.Outcome {
	case lifecycle.OutcomeExpired:
		outcome = metrics.OutcomeExpired
	case lifecycle.OutcomeFailed:
		outcome, took = metrics.OutcomeFailed, 0 // the hub never saw it start
	}
	if cause == "" {
		cause = protocol.CauseUnknown
	}
	h.metrics.Renewal(outcome, cause, took)
	family, class := h.groupOf(e.DeviceID)
	h.alerts.Attempt(monitor.Attempt{DeviceID: e.DeviceID, Family: family, Class: class, Cause: cause, At: e.At})
}

// observeRefusal counts a CSR the issuer refused. A busy refusal (a resubmission while the
// request is in flight) is counted but is no failure of the device's renewal.
func (h *Hub) observeRefusal(device string, req *protocol.CSR, code protocol.Code, _ string, took time.Duration) {
	if req.Reason == protocol.ReasonEnroll {
		return
	}
	cause := protocol.CauseOf(code)
	h.metrics.Renewal(metrics.OutcomeRefused, cause, took)
	if code == protocol.CodeBusy {
		return
	}
	family, class := h.groupOf(device)
	h.alerts.Attempt(monitor.Attempt{DeviceID: device, Family: family, Class: class, Cause: cause, At: h.now().UTC()})
}

// observeEvent counts and watches the hub's events on their way to bridge/event.
func (h *Hub) observeEvent(e protocol.Event) {
	switch e.Type {
	case protocol.EventCertIssued:
		h.metrics.Issued(e.Data["reason"])
	case protocol.EventRenewalCommanded:
		h.metrics.Command(cmp.Or(e.Data["action"], string(protocol.ActionRenew)))
	case protocol.EventCertActivated:
		h.alerts.Renewed(e.DeviceID, e.Time)
	case protocol.EventRenewalDue:
		family, class := h.groupOf(e.DeviceID)
		h.alerts.Skipped(e.DeviceID, family, class, e.Message, e.Time)
	case protocol.EventRenewalReminder:
		family, class := h.groupOf(e.DeviceID)
		expires, _ := time.Parse(time.RFC3339, e.Data["expires"])
		h.alerts.Reminder(e.DeviceID, family, class, e.Data["threshold"], expires, e.Time)
	case protocol.EventHelpRequested: // the resident view's Request help (issue 14): the alert routes tell the administrator
		family, class := h.groupOf(e.DeviceID)
		var problems []string
		if p := e.Data["problems"]; p != "" {
			problems = strings.Split(p, ",")
		}
		key := cmp.Or(e.DeviceID, "home") + "/" + e.Time.UTC().Format(time.RFC3339)
		h.alerts.HelpRequested(key, e.DeviceID, family, class, e.Data["actor"], e.Message, problems, e.Time)
	}
}

// observeIssuer tells the alerts that a device reports another issuer.
func (h *Hub) observeIssuer(f lifecycle.Finding) {
	family, class := h.groupOf(f.DeviceID)
	h.alerts.IssuerChanged(f.DeviceID, family, class, f.Detail, f.At)
}

// countingAuth counts the logins the broker refuses.
type countingAuth struct {
	broker.Auth
	m *metrics.Metrics
}

func (a countingAuth) Certificate(ctx context.Context, deviceID, serial string) error {
	err := a.Auth.Certificate(ctx, deviceID, serial)
	if err != nil {
		a.m.RefusedLogin(metrics.LoginCertificate)
	}
	return err
}

func (a countingAuth) Token(ctx context.Context, deviceID, token string) error {
	err := a.Auth.Token(ctx, deviceID, token)
	if err != nil {
		a.m.RefusedLogin(metrics.LoginToken)
	}
	return err
}
