package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/control"
	"github.com/hearth-pki/hearth/protocol"
)

// cannedHub answers control operations with fixed data, so the CLI's output is exact.
type cannedHub map[string]any

func (h cannedHub) DoAs(_ context.Context, _ authz.Principal, op string, payload []byte) protocol.BridgeResponse {
	if op == "device/get" && strings.Contains(string(payload), `"nope"`) {
		return protocol.BridgeResponse{Status: "error", Code: protocol.CodeNotFound, Error: `device "nope" is not in the inventory`}
	}
	v, ok := h[op]
	if !ok {
		return protocol.BridgeResponse{Status: "error", Code: protocol.CodeBadRequest, Error: "unknown operation " + op}
	}
	raw, _ := json.Marshal(v)
	return protocol.BridgeResponse{Status: "ok", Data: raw}
}

// startCannedHub serves h on the control socket of a new data directory.
func startCannedHub(t *testing.T, h cannedHub) string {
	data := t.TempDir()
	l, err := control.Listen(filepath.Join(data, "hearth.sock"), false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { control.Serve(ctx, l, h, control.Roles{Owner: uint32(os.Geteuid())}); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return data
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func cannedFleet() cannedHub {
	sum := protocol.DeviceSummary{ID: "thermostat-hall", Name: "Hall thermostat", Family: "thermostat", Class: "default",
		State: "active", Online: true, Serial: "5a6d", NotAfter: t0.Add(30 * 24 * time.Hour), RenewalState: "idle", LastSeen: t0}
	campaign := protocol.CampaignStatus{Campaign: protocol.Campaign{ID: "campaign-1", Selector: protocol.CampaignSelector{All: true},
		Rate: 100, Canary: 1}, State: protocol.CampaignRunning, Started: t0, Total: 2, Commanded: 1, InFlight: 1, Pending: 1}
	change := protocol.Change{ID: "chg-5f2a9c01d3e4", Op: "policy/apply", State: "applied", Summary: "classes.camera.lifetime: 30d -> 14d",
		ProposedBy: "user:alice", ProposedAt: t0, DecidedBy: "user:bob", DecidedAt: t0.Add(time.Hour)}
	return cannedHub{
		"user/list": protocol.UserList{Users: []protocol.UserInfo{{Name: "alice", Role: "operator", CreatedAt: t0, UpdatedAt: t0}},
			Configured: []string{"admin"}},
		"user/set-role":  protocol.UserInfo{Name: "alice", Role: "admin", Previous: "operator", UpdatedAt: t0},
		"change/list":    protocol.ChangeList{Changes: []protocol.Change{change}},
		"change/approve": change,
		"policy/diff": protocol.PolicyDiff{Hash: "3f1c", Changes: []string{"classes.camera.lifetime: 30d -> 14d"},
			Moves: []protocol.DeviceMove{{ID: "cam-porch", From: "default", To: "camera"}}, Moved: 1, Affected: 4},
		"device/list": protocol.DeviceList{Devices: []protocol.DeviceSummary{sum, {ID: "plug-1", State: "enrolling"}}},
		"device/get": protocol.DeviceDetail{DeviceSummary: sum,
			Device: protocol.DeviceRecord{ID: sum.ID, Name: sum.Name, Family: sum.Family, Class: "default", Mechanism: "agent",
				CreatedAt: t0.Add(-time.Hour), LastSeen: t0, State: "active", Online: true,
				Health:  protocol.DeviceHealth{ReportedSerial: "5a6d", ChainOK: true, ClockSkew: 1500 * time.Millisecond, AgentVersion: "0.1.0", At: t0},
				Renewal: protocol.DeviceRenewal{State: "idle", WindowStart: t0.Add(20 * 24 * time.Hour), WindowEnd: t0.Add(28 * 24 * time.Hour)}},
			Certificates: []protocol.CertificateRecord{{Serial: "5a6d", DeviceID: sum.ID, NotBefore: t0, NotAfter: sum.NotAfter,
				Issuer: "CN=Hearth Intermediate CA", KeyAlgorithm: protocol.KeyP256, Status: "active", RequestID: "r1", CreatedAt: t0, ActivatedAt: t0}},
			Attempts: []protocol.AttemptRecord{{RequestID: "r1", DeviceID: sum.ID, Reason: "enroll", Serial: "5a6d", StartedAt: t0,
				FinishedAt: t0, Outcome: "committed", Latency: 12 * time.Millisecond}},
			Events: []protocol.AuditEvent{{Seq: 1, Time: t0, Kind: protocol.EventCertActivated, DeviceID: sum.ID, Actor: "hub",
				Data: map[string]string{"serial": "5a6d"}, Hash: "ab12"}}},
		"events": []protocol.AuditEvent{{Seq: 1, Time: t0, Kind: protocol.EventCertActivated, DeviceID: sum.ID, Actor: "hub",
			Data: map[string]string{"serial": "5a6d"}, Hash: "ab12"}},
		"campaign/list":  []protocol.CampaignStatus{campaign},
		"campaign/start": campaign,
		"token/create": protocol.TokenCreated{ID: "plug-2", Token: "hst_x", ExpiresAt: t0.Add(24 * time.Hour),
			Command: "hearth-agent enroll --hub mqtts://hub.local:8883 --id plug-2 --token hst_x --ca-fingerprint SHA256:00"},
		"device/renew":  protocol.DeviceRenewed{ID: sum.ID, Queued: true},
		"device/revoke": protocol.DeviceRevoked{ID: sum.ID, Revoked: 1, Disconnected: 1},
		"audit/verify":  protocol.AuditVerified{Audit: protocol.AuditIntact},
		"policy/reload": protocol.PolicyReloaded{Changed: []string{}},
		"device/import": protocol.DeviceImported{ID: "porch-cam", Serial: "42", NotAfter: t0, Issuer: "CN=Acme", Status: "active"},
		"device/sign":   protocol.DeviceSigned{ID: "printer", Serial: "43", NotAfter: t0, Class: "default", Chain: "PEM"},
		"device/remove": protocol.DeviceRevoked{ID: sum.ID, Revoked: 1, Removed: true},
	}
}

// snakeKey is a JSON object key the schema allows.
var snakeKey = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// checkSchema walks a JSON document: every key snake_case (except inside "data", the free
// map of an event), no zero time.
func checkSchema(t *testing.T, what string, v any, path string) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if !snakeKey.MatchString(k) {
				t.Errorf("%s: key %s.%s is not snake_case", what, path, k)
			}
			if k != "data" {
				checkSchema(t, what, x, path+"."+k)
			}
		}
	case []any:
		for _, x := range v {
			checkSchema(t, what, x, path+"[]")
		}
	case string:
		if strings.HasPrefix(v, "0001-01-01") {
			t.Errorf("%s: %s is a zero time; the schema leaves it out", what, path)
		}
	}
}

// TestJSONGolden locks every --json output against testdata/json/ and checks the schema's
// rules (protocol/README.md, "JSON conventions").
func TestJSONGolden(t *testing.T) {
	data := startCannedHub(t, cannedFleet())
	tests := []struct {
		name string
		args []string
	}{
		{"devices", []string{"devices"}},
		{"device-show", []string{"device", "show", "thermostat-hall"}},
		{"events", []string{"events"}},
		{"campaigns", []string{"campaigns"}},
		{"renew-all", []string{"renew", "--all"}},
		{"renew", []string{"renew", "thermostat-hall"}},
		{"token-create", []string{"token", "create", "--device", "nope"}},
		{"revoke", []string{"revoke", "thermostat-hall"}},
		{"remove", []string{"remove", "thermostat-hall"}},
		{"audit-verify", []string{"audit", "verify"}},
		{"policy-reload", []string{"policy", "reload"}},
		{"user-list", []string{"user", "list"}},
		{"user-set-role", []string{"user", "set-role", "alice", "admin"}},
		{"change-list", []string{"change", "list"}},
		{"change-approve", []string{"change", "approve", "chg-5f2a9c01d3e4"}},
		{"policy-diff", []string{"policy", "diff", "chg-5f2a9c01d3e4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, status := runCLI(t, append(tt.args, "--json", "--data", data)...)
			if status != 0 {
				t.Fatalf("%q = exit %d: %s", tt.args, status, errOut)
			}
			var v any
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatalf("%q --json does not parse: %v\n%s", tt.args, err, out)
			}
			checkSchema(t, tt.name, v, "")
			golden(t, "json/"+tt.name+".json", out)
		})
	}
}

// TestCLIWithCannedHub checks the people's output of the client commands: what exists is
// listed after an unknown device, an enrolled device needs --replace, and every hint runs.
func TestCLIWithCannedHub(t *testing.T) {
	data := startCannedHub(t, cannedFleet())
	out, errOut, status := runCLI(t, "device", "show", "nope", "--data", data)
	if status != 1 || out != "" || !strings.Contains(errOut, `device "nope" is not in the inventory; devices: thermostat-hall, plug-1`) {
		t.Errorf("device show nope = exit %d, %q; want exit 1 and the devices listed", status, errOut)
	}
	checkHints(t, errOut)
	// token create looks the device up first: the canned device/get answers thermostat-hall
	// for any id other than "nope", enrolled with a certificate.
	out, errOut, status = runCLI(t, "token", "create", "--device", "thermostat-hall", "--data", data)
	if status != 1 || !strings.Contains(errOut, "already enrolled") || !strings.Contains(errOut, "--replace") || out != "" {
		t.Errorf("token create for an enrolled device = exit %d, %q, %q; want exit 1 asking for --replace", status, out, errOut)
	}
	checkHints(t, errOut)
	out, errOut, status = runCLI(t, "token", "create", "--device", "thermostat-hall", "--replace", "--data", data)
	if status != 0 || !strings.Contains(out, "hearth-agent enroll") {
		t.Errorf("token create --replace = exit %d, %q, %q; want the token", status, out, errOut)
	}
	out, _, _ = runCLI(t, "token", "create", "--device", "nope", "--data", data)
	if !strings.Contains(out, "hst_x") {
		t.Errorf("token create for a new device printed %q, want the token", out)
	}
	for _, args := range [][]string{{"devices"}, {"device", "show", "thermostat-hall"}, {"campaigns"}, {"renew", "--all"},
		{"renew", "thermostat-hall"}, {"events"}, {"audit", "verify"}} {
		out, errOut, status := runCLI(t, append(args, "--data", data)...)
		if status != 0 {
			t.Errorf("%q = exit %d: %s", args, status, errOut)
		}
		checkHints(t, out+errOut)
	}
}
