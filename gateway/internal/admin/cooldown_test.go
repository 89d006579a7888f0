package admin_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/admin"
	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/renewal"
	"github.com/hearth-pki/hearth/protocol"
)

// countingScheduler counts the renewals it is asked for.
type countingScheduler struct{ forced map[string]int }

func (s *countingScheduler) Force(_ context.Context, id, _ string) (renewal.Forced, error) {
	s.forced[id]++
	return renewal.Forced{}, nil
}

func (s *countingScheduler) StartCampaign(context.Context, protocol.Campaign) (protocol.CampaignStatus, error) {
	return protocol.CampaignStatus{}, nil
}

func (s *countingScheduler) Campaigns(context.Context) ([]protocol.CampaignStatus, error) {
	return nil, nil
}

func (s *countingScheduler) PlanCampaign(context.Context, protocol.Campaign) ([]inventory.CampaignDevice, error) {
	return nil, nil
}

// TestRenewCooldown checks the per-device cool-down on device/renew (issue 15, item 4): renew
// spam from any front end reaches the scheduler once per cool-down, per device, answered
// quota_exceeded otherwise; an unknown device is still not_found.
func TestRenewCooldown(t *testing.T) {
	f := newManualFixture(t)
	f.seedAgentDevice(t, "plug")
	if err := f.store.RecordIssuance(t.Context(), inventory.Issuance{
		Device:  inventory.Device{ID: "lamp", Mechanism: inventory.MechanismAgent, Path: inventory.PathDirect},
		Cert:    inventory.Certificate{Serial: "bb01", NotBefore: f.now, NotAfter: f.now.Add(24 * time.Hour)},
		Attempt: inventory.Attempt{RequestID: "r1", Reason: "enroll", StartedAt: f.now, FinishedAt: f.now}}); err != nil {
		t.Fatal(err)
	}
	sched := &countingScheduler{forced: map[string]int{}}
	s := admin.New(admin.Config{Store: f.store, CA: f.ca, Broker: f.broker, Scheduler: sched, Now: func() time.Time { return f.now },
		RenewCooldown: 5 * time.Minute, RenewCooldownExempt: []string{"cli"}})
	renew := func(actor, id string) protocol.BridgeResponse {
		return s.Do(t.Context(), actor, "device/renew", []byte(`{"id":"`+id+`"}`))
	}
	if r := renew("ha", "plug"); r.Status != "ok" {
		t.Fatalf("first renew = %+v, want ok", r)
	}
	for i := range 100 {
		actor := []string{"ha", "dashboard", "bridge"}[i%3]
		if r := renew(actor, "plug"); r.Status != "error" || r.Code != protocol.CodeQuotaExceeded {
			t.Fatalf("renew %d from %s within the cool-down = %+v, want quota_exceeded", i, actor, r)
		}
	}
	// The CLI on the hub's own control socket is not held.
	if r := renew("cli", "plug"); r.Status != "ok" {
		t.Errorf("renew from the CLI within the cool-down = %+v, want ok (exempt)", r)
	}
	// An OS user with the operator role from cli_roles is held like anyone else.
	if r := s.DoAs(t.Context(), authz.Principal{Name: "cli:bob", Role: authz.Operator}, "device/renew", []byte(`{"id":"plug"}`)); r.Code != protocol.CodeQuotaExceeded {
		t.Errorf("renew from a CLI operator within the cool-down = %+v, want quota_exceeded", r)
	}
	if r := renew("ha", "lamp"); r.Status != "ok" {
		t.Errorf("another device's renew = %+v, want ok: the cool-down is per device", r)
	}
	if r := renew("ha", "nope"); r.Code != protocol.CodeNotFound {
		t.Errorf("renew of an unknown device = %+v, want not_found", r)
	}
	f.now = f.now.Add(5 * time.Minute)
	if r := renew("dashboard", "plug"); r.Status != "ok" {
		t.Errorf("renew after the cool-down = %+v, want ok", r)
	}
	if sched.forced["plug"] != 3 || sched.forced["lamp"] != 1 {
		t.Errorf("the scheduler was asked %v, want plug three times (one from the CLI) and lamp once", sched.forced)
	}
}

// TestTokenCreatedPublished checks that creating a token publishes token.created (issue 16:
// token events on bridge/event) and that the event never carries the token.
func TestTokenCreatedPublished(t *testing.T) {
	f := newManualFixture(t)
	var created protocol.TokenCreated
	f.ok(t, "token/create", protocol.TokenRequest{ID: "cam", Name: "Door camera", TTL: "1h"}, &created)
	var ev *protocol.Event
	for i := range f.events {
		if f.events[i].Type == protocol.EventTokenCreated {
			ev = &f.events[i]
		}
	}
	if ev == nil {
		t.Fatalf("events %+v, want a token.created", f.events)
	}
	b, err := protocol.Encode(ev)
	if err != nil {
		t.Fatalf("token.created does not encode: %v", err)
	}
	if strings.Contains(string(b), created.Token) || ev.DeviceID != "cam" || ev.Data["name"] != "Door camera" || ev.Data["expires_at"] == "" {
		t.Errorf("token.created = %s, want cam, its name and expiry, and never the token", b)
	}
}
