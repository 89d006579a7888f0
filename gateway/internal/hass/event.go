package hass

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

// The event types of the hub's "Alert" event entity (hearth/hass/hub/alert).
const (
	EventRaised      = "raised"       // an alert was raised (gateway/internal/alert)
	EventResolved    = "resolved"     // its problem cleared
	EventRenewFailed = "renew_failed" // a Renew press the hub refused: the error says why
)

// EventTypes returns the event entity's event types.
func EventTypes() []string { return []string{EventRaised, EventResolved, EventRenewFailed} }

// maxEvents bounds the events queued while Home Assistant's broker is unreachable; the
// oldest are dropped beyond it (they also went to the hub's bridge events and audit log).
const maxEvents = 256

// Event is one event of the hub's event entity. Home Assistant takes event_type as the event
// and every other key as its attributes.
type Event struct {
	EventType  string    `json:"event_type"`
	ID         string    `json:"id,omitempty"` // the alert's id: the same problem, the same id
	Kind       string    `json:"kind,omitempty"`
	Title      string    `json:"title,omitempty"`
	Message    string    `json:"message"`
	DeviceID   string    `json:"device_id,omitempty"`
	Family     string    `json:"family,omitempty"`
	Class      string    `json:"class,omitempty"`
	Devices    []string  `json:"devices,omitempty"`
	Cause      string    `json:"cause,omitempty"`
	CauseClass string    `json:"cause_class,omitempty"`
	Time       time.Time `json:"time"`
}

// Publish queues e for the event entity; Run sends it (not retained) once connected. It
// never blocks.
func (p *Publisher) Publish(e Event) {
	e.Devices = slices.Clone(e.Devices)
	p.mu.Lock()
	if len(p.events) >= maxEvents {
		p.events = p.events[1:]
		p.log.Warn("too many events waiting for home assistant's broker; dropped the oldest")
	}
	p.events = append(p.events, e)
	p.mu.Unlock()
	notify(p.wake)
}

// flushEvents publishes the queued events; those that fail stay queued, in order.
func (l *loop) flushEvents(ctx context.Context) bool {
	if !l.ready() {
		return true
	}
	l.p.mu.Lock()
	evs := l.p.events
	l.p.events = nil
	l.p.mu.Unlock()
	for i, e := range evs {
		tok := l.client.Publish(l.p.t.alert(), 1, false, mustJSON(e))
		if err := waitTokens(ctx, time.Now().Add(publishTimeout), tok); err != nil {
			l.p.mu.Lock()
			l.p.events = append(slices.Clone(evs[i:]), l.p.events...)
			l.p.mu.Unlock()
			l.p.log.Warn("cannot publish an event to home assistant; retrying", "err", err)
			return false
		}
	}
	return true
}

// renewFailed turns the Bridge's refusal of a Renew press into an event, so that the press
// is not silently lost.
func (p *Publisher) renewFailed(payload, reply []byte) {
	var resp protocol.BridgeResponse
	if json.Unmarshal(reply, &resp) != nil || resp.Status != "error" {
		return
	}
	var req struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(payload, &req)
	p.Publish(Event{EventType: EventRenewFailed, DeviceID: req.ID, Kind: string(resp.Code),
		Title: "Hearth: renewal not started", Message: resp.Error, Time: time.Now().UTC()})
}
