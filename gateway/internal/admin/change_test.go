package admin_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/admin"
	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

const cameraPolicy = `version: 1
classes:
  - name: default
    lifetime: 30d
  - name: camera
    match:
      families: [cam]
    lifetime: 14d
`

// approvalFixture is an admin service with change approval on, whose policy in force is
// an atomic pointer ApplyPolicy replaces, as the hub's does.
type approvalFixture struct {
	svc     *admin.Service
	store   *inventory.Store
	pol     atomic.Pointer[policy.Policy]
	applied int
}

var (
	alice = authz.Principal{Name: "user:alice", Role: authz.Admin}
	bob   = authz.Principal{Name: "user:bob", Role: authz.Admin}
	olga  = authz.Principal{Name: "user:olga", Role: authz.Operator}
	vera  = authz.Principal{Name: "user:vera", Role: authz.Viewer}
)

func newApprovalFixture(t *testing.T, required bool) *approvalFixture {
	t.Helper()
	store, err := inventory.Open(t.Context(), filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	authority, err := ca.InitWithIterations(t.TempDir(), []byte("test passphrase"), manualT0.Add(-30*day), ca.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	f := &approvalFixture{store: store}
	f.pol.Store(policy.Default())
	start, err := policy.Parse([]byte(cameraPolicy))
	if err != nil {
		t.Fatal(err)
	}
	f.pol.Store(start)
	for _, d := range []inventory.Device{{ID: "cam-1", Family: "cam"}, {ID: "cam-2", Family: "cam"}, {ID: "plug-1", Family: "plug"}} {
		d.State, d.CreatedAt = inventory.StateActive, manualT0
		if err := store.UpsertDevice(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	f.svc = admin.New(admin.Config{Store: store, CA: authority, Broker: &recordingBroker{}, Now: func() time.Time { return manualT0 },
		Policy: f.pol.Load, ApprovalRequired: required,
		ApplyPolicy: func(_ context.Context, yaml []byte) ([]string, error) {
			next, err := policy.Parse(yaml)
			if err != nil {
				return nil, err
			}
			diff := policy.Diff(f.pol.Load(), next)
			f.pol.Store(next)
			f.applied++
			return diff, nil
		}})
	return f
}

func (f *approvalFixture) do(t *testing.T, p authz.Principal, op string, payload any) protocol.BridgeResponse {
	t.Helper()
	b, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return f.svc.DoAs(t.Context(), p, op, b)
}

func (f *approvalFixture) ok(t *testing.T, p authz.Principal, op string, payload, out any) {
	t.Helper()
	resp := f.do(t, p, op, payload)
	if resp.Status != "ok" {
		t.Fatalf("DoAs(%s, %s) = %s %s: %s, want ok", p.Name, op, resp.Status, resp.Code, resp.Error)
	}
	if err := json.Unmarshal(resp.Data, out); err != nil {
		t.Fatal(err)
	}
}

func (f *approvalFixture) refused(t *testing.T, p authz.Principal, op string, payload any, code protocol.Code) {
	t.Helper()
	if resp := f.do(t, p, op, payload); resp.Status != "error" || resp.Code != code {
		t.Errorf("DoAs(%s, %s) = %s %s: %s, want error %s", p.Name, op, resp.Status, resp.Code, resp.Error, code)
	}
}

// TestApprovalFlow: a policy change by one admin does not apply until a second admin
// approves it; the proposer cannot approve it, nor can a non-admin; each step is audited
// with its actor.
func TestApprovalFlow(t *testing.T) {
	f := newApprovalFixture(t, true)
	before := f.pol.Load().Hash()
	next := strings.Replace(cameraPolicy, "families: [cam]", "families: [cam, plug]", 1)
	next = strings.Replace(next, "lifetime: 14d", "lifetime: 7d", 1)
	req := protocol.PolicyChangeRequest{Policy: next}

	f.refused(t, alice, "policy/apply", req, protocol.CodeNeedsApproval)
	f.refused(t, alice, "policy/reload", struct{}{}, protocol.CodeNeedsApproval)
	f.refused(t, olga, "policy/propose", req, protocol.CodeForbidden)
	f.refused(t, alice, "change/propose", protocol.ChangeRequest{Op: "policy/reload"}, protocol.CodeBadRequest)
	f.refused(t, alice, "change/propose", protocol.ChangeRequest{Op: "device/renew"}, protocol.CodeBadRequest)

	var diff protocol.PolicyDiff
	f.ok(t, vera, "policy/diff", req, &diff)
	if diff.Moved != 1 || len(diff.Moves) != 1 || diff.Moves[0] != (protocol.DeviceMove{ID: "plug-1", From: "default", To: "camera"}) ||
		diff.Affected != 2 || len(diff.Changes) == 0 {
		t.Errorf("policy/diff = %+v, want plug-1 moved to camera and the two cameras affected", diff)
	}

	var c protocol.Change
	f.ok(t, alice, "policy/propose", req, &c)
	if c.State != inventory.ProposalOpen || c.ProposedBy != alice.Name || c.Op != "policy/apply" {
		t.Fatalf("policy/propose = %+v, want an open change by %s", c, alice.Name)
	}
	var byID protocol.PolicyDiff
	f.ok(t, vera, "policy/diff", protocol.PolicyChangeRequest{ID: c.ID}, &byID)
	if byID.Moved != 1 || byID.Hash != diff.Hash {
		t.Errorf("policy/diff of %s = %+v, want the diff of the proposed file %+v", c.ID, byID, diff)
	}
	if f.pol.Load().Hash() != before || f.applied != 0 {
		t.Fatal("the policy changed on a proposal")
	}

	approve := protocol.ChangeRequest{ID: c.ID}
	f.refused(t, alice, "change/approve", approve, protocol.CodeForbidden)
	f.refused(t, olga, "change/approve", approve, protocol.CodeForbidden)
	f.refused(t, vera, "change/approve", approve, protocol.CodeForbidden)
	if f.pol.Load().Hash() != before || f.applied != 0 {
		t.Fatal("the policy changed without a second admin's approval")
	}

	var done protocol.Change
	f.ok(t, bob, "change/approve", approve, &done)
	if done.State != inventory.ProposalApplied || done.DecidedBy != bob.Name || f.applied != 1 || f.pol.Load().Hash() != diff.Hash {
		t.Errorf("change/approve = %+v (applied %d, policy %s), want applied by %s to %s", done, f.applied, f.pol.Load().Hash(), bob.Name, diff.Hash)
	}
	if resp := f.do(t, bob, "change/approve", approve); resp.Status != "error" {
		t.Errorf("second change/approve = %+v, want an error", resp)
	}

	evs, err := f.store.Events(t.Context(), inventory.EventFilter{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	actors := map[protocol.EventType]string{}
	for _, e := range evs {
		actors[e.Kind] = e.Actor
	}
	if actors[protocol.EventChangeProposed] != alice.Name || actors[protocol.EventChangeApproved] != bob.Name {
		t.Errorf("audit actors = %v, want %s proposed and %s approved", actors, alice.Name, bob.Name)
	}
	var list protocol.ChangeList
	f.ok(t, vera, "change/list", struct{}{}, &list)
	if len(list.Changes) != 1 || list.Changes[0].State != inventory.ProposalApplied {
		t.Errorf("change/list = %+v, want the one applied change", list)
	}
}

// TestApprovalStale: a change proposed against a policy no longer in force is not applied.
func TestApprovalStale(t *testing.T) {
	f := newApprovalFixture(t, true)
	var c1, c2 protocol.Change
	f.ok(t, alice, "policy/propose", protocol.PolicyChangeRequest{Policy: strings.Replace(cameraPolicy, "14d", "7d", 1)}, &c1)
	f.ok(t, alice, "policy/propose", protocol.PolicyChangeRequest{Policy: strings.Replace(cameraPolicy, "14d", "10d", 1)}, &c2)
	f.ok(t, bob, "change/approve", protocol.ChangeRequest{ID: c1.ID}, &c1)
	f.refused(t, bob, "change/approve", protocol.ChangeRequest{ID: c2.ID}, protocol.CodeBadRequest)
	var r protocol.Change
	f.ok(t, alice, "change/reject", protocol.ChangeRequest{ID: c2.ID}, &r)
	if r.State != inventory.ProposalRejected || f.applied != 1 {
		t.Errorf("change/reject = %+v (applied %d), want rejected and one change applied", r, f.applied)
	}
}

// TestCanary: a policy tried on a canary class changes that class's settings only.
func TestCanary(t *testing.T) {
	f := newApprovalFixture(t, false)
	next := strings.Replace(cameraPolicy, "lifetime: 30d", "lifetime: 20d", 1)
	next = strings.Replace(next, "lifetime: 14d", "lifetime: 7d", 1)
	var diff protocol.PolicyDiff
	f.ok(t, vera, "policy/diff", protocol.PolicyChangeRequest{Policy: next, Canary: "camera"}, &diff)
	if len(diff.Changes) != 1 || !strings.HasPrefix(diff.Changes[0], "classes.camera.lifetime") || diff.Affected != 2 || diff.Moved != 0 {
		t.Errorf("policy/diff with canary camera = %+v, want only the camera lifetime, two cameras affected", diff)
	}
	var c protocol.Change
	f.ok(t, alice, "policy/propose", protocol.PolicyChangeRequest{Policy: next, Canary: "camera"}, &c)
	// Approval off: the proposer may approve their own change.
	f.ok(t, alice, "change/approve", protocol.ChangeRequest{ID: c.ID}, &c)
	pol := f.pol.Load()
	cam, _ := pol.ClassFor(policy.Subject{DeviceID: "cam-1", Family: "cam"})
	def, _ := pol.ClassFor(policy.Subject{DeviceID: "plug-1", Family: "plug"})
	if cam.Lifetime != 7*24*time.Hour || def.Lifetime != 30*24*time.Hour {
		t.Errorf("after the canary: camera %s, default %s, want 168h and 720h", cam.Lifetime, def.Lifetime)
	}
	moved := strings.Replace(cameraPolicy, "families: [cam]", "families: [cam, plug]", 1)
	f.refused(t, alice, "policy/diff", protocol.PolicyChangeRequest{Policy: moved, Canary: "camera"}, protocol.CodeBadRequest)
	f.refused(t, alice, "policy/diff", protocol.PolicyChangeRequest{Policy: next, Canary: "nope"}, protocol.CodeBadRequest)
}
