package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// bridgeExamples returns one example of every bridge operation body that is not a Message,
// by golden file name in testdata/bridge/.
func bridgeExamples() map[string]any {
	exp := t0.Add(24 * time.Hour)
	return map[string]any{
		"token_created": &TokenCreated{ID: "camera-door", Token: "hGk2…", ExpiresAt: exp,
			Command: "hearth-agent enroll --hub mqtts://hearth.local:8883 --id camera-door --token hGk2… --ca-fingerprint SHA256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		"device_detail": &DeviceDetail{
			DeviceSummary: DeviceSummary{ID: "thermostat-hall", Name: "Hall thermostat", Family: "thermostat", Class: "default",
				State: "active", Online: true, Serial: "5a6d5f376c97abdb85d26defd2ed9b08", NotAfter: t0.Add(30 * 24 * time.Hour),
				RenewalState: "idle", LastSeen: t0},
			Device: DeviceRecord{ID: "thermostat-hall", Name: "Hall thermostat", Family: "thermostat", Class: "default",
				Tags: []string{"hall"}, Path: "direct", Mechanism: "agent", CreatedAt: t0.Add(-time.Hour), LastSeen: t0, State: "active",
				Online: true, Health: DeviceHealth{ReportedSerial: "5a6d5f376c97abdb85d26defd2ed9b08", ReportedNotAfter: t0.Add(30 * 24 * time.Hour),
					ChainOK: true, ClockSkew: 2 * time.Second, AgentVersion: "0.1.0", At: t0},
				Renewal: DeviceRenewal{State: "idle", WindowStart: t0.Add(20 * 24 * time.Hour), WindowEnd: t0.Add(28 * 24 * time.Hour)}},
			Certificates: []CertificateRecord{{Serial: "5a6d5f376c97abdb85d26defd2ed9b08", DeviceID: "thermostat-hall",
				NotBefore: t0.Add(-time.Minute), NotAfter: t0.Add(30 * 24 * time.Hour), Issuer: "CN=Hearth Intermediate CA,O=Hearth",
				KeyAlgorithm: KeyP256, Fingerprint: "3b1f0a8d2c6e4f5a7b9c1d3e5f708192a3b4c5d6e7f8091a2b3c4d5e6f708192", Status: "active",
				RequestID: "01JDQ3Z8K4", CreatedAt: t0, ActivatedAt: t0}},
			Attempts: []AttemptRecord{{RequestID: "01JDQ3Z8K4", DeviceID: "thermostat-hall", Reason: "enroll",
				Serial: "5a6d5f376c97abdb85d26defd2ed9b08", StartedAt: t0, FinishedAt: t0, Outcome: "committed", Latency: 4 * time.Millisecond}},
			Events: []AuditEvent{{Seq: 7, Time: t0, Kind: EventCertActivated, DeviceID: "thermostat-hall", Actor: "device:thermostat-hall",
				Data: map[string]string{"serial": "5a6d5f376c97abdb85d26defd2ed9b08", "previous": ""},
				Hash: "9c1d3e5f708192a3b4c5d6e7f8091a2b3c4d5e6f7081923b1f0a8d2c6e4f5a7b", PrevHash: "1a2b3c4d5e6f708192a3b4c5d6e7f8093b1f0a8d2c6e4f5a7b9c1d3e5f708192"}},
		},
		"device_renewed":  &DeviceRenewed{ID: "thermostat-hall", Queued: true},
		"device_revoked":  &DeviceRevoked{ID: "camera-door", Revoked: 2, Disconnected: 1, Removed: true},
		"request_import":  &ImportRequest{ManualDevice: ManualDevice{Transaction: "i1", ID: "porch-cam", Name: "Porch camera", Vendor: "Acme"}, PEM: chainPEM},
		"request_sign":    &SignRequest{ManualDevice: ManualDevice{ID: "printer", Name: "Office printer"}, CSR: csrPEM},
		"device_imported": &DeviceImported{ID: "porch-cam", Serial: "4201", NotAfter: exp, Issuer: "CN=Acme Cloud Device CA", Status: "active"},
		"device_signed": &DeviceSigned{ID: "printer", Serial: "5a6d5f376c97abdb85d26defd2ed9b08", NotAfter: t0.Add(30 * 24 * time.Hour),
			Class: "default", Chain: chainPEM},
		"request_campaign": &Campaign{ID: "rekey-acme", Selector: CampaignSelector{Family: "acme"}, Rate: 60, Canary: 2,
			AbortAfter: 0.2, Action: ActionRekey},
		"campaign_status": &CampaignStatus{Campaign: Campaign{ID: "rekey-acme", Selector: CampaignSelector{Family: "acme"}, Rate: 60,
			Canary: 2, AbortAfter: 0.2, Action: ActionRekey}, State: CampaignRunning, Started: t0,
			Total: 10, Commanded: 4, InFlight: 2, Committed: 2, Pending: 6},
		"policy_reloaded":  &PolicyReloaded{Changed: []string{"classes.default.lifetime: 720h0m0s → 168h0m0s"}},
		"request_events":   &EventsRequest{ID: "thermostat-hall", Limit: 20},
		"request_user_add": &UserRequest{Name: "alice", Role: "operator", Password: "correct horse battery"},
		"user_list": &UserList{Users: []UserInfo{{Name: "alice", Role: "operator", CreatedAt: t0, UpdatedAt: t0}},
			Configured: []string{"admin"}},
		"user_role_set":  &UserInfo{Name: "alice", Role: "admin", Previous: "operator", CreatedAt: t0, UpdatedAt: t0.Add(time.Hour)},
		"request_policy": &PolicyChangeRequest{Policy: "classes:\n  - name: camera\n    lifetime: 14d\n", Canary: "camera"},
		"policy_diff": &PolicyDiff{Hash: "3f1c…", Changes: []string{"classes.camera.lifetime: 30d -> 14d"},
			Moves: []DeviceMove{{ID: "cam-porch", From: "default", To: "camera"}}, Moved: 1, Affected: 4, Canary: "camera"},
		"change_proposed": &Change{ID: "chg-5f2a9c01d3e4", Op: "policy/apply", State: "open",
			Summary: "classes.camera.lifetime: 30d -> 14d", Canary: "camera", ProposedBy: "user:alice", ProposedAt: t0},
		"change_list": &ChangeList{Changes: []Change{{ID: "chg-5f2a9c01d3e4", Op: "policy/apply", State: "applied",
			ProposedBy: "user:alice", ProposedAt: t0, DecidedBy: "user:bob", DecidedAt: t0.Add(time.Hour)}}},
		"audit_verified": &AuditVerified{Audit: AuditIntact},
		"ca_info": &CAInfo{
			Intermediate: CACertificate{Subject: "CN=Hearth Intermediate CA,O=Hearth", Serial: "1f2e3d4c5b6a7988", NotBefore: t0,
				NotAfter: t0.Add(5 * 365 * 24 * time.Hour), Fingerprint: "SHA256:1a2b3c4d5e6f708192a3b4c5d6e7f8093b1f0a8d2c6e4f5a7b9c1d3e5f708192"},
			Root: CACertificate{Subject: "CN=Hearth Root CA,O=Hearth", Serial: "7a6b5c4d3e2f1a09", NotBefore: t0,
				NotAfter: t0.Add(10 * 365 * 24 * time.Hour), Fingerprint: "SHA256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}},
		"request_ca_rotate_intermediate": &CARotateRequest{Transaction: "t9", Rate: 30, Canary: 2, AbortAfter: 0.1},
		"ca_rotation": &CARotation{State: RotationMoving, Started: t0, Campaign: "rotate-intermediate-20261125t120000z",
			CampaignState: CampaignRunning, Devices: 12, Remaining: 5,
			Intermediate: &CACertificate{Subject: "CN=Hearth Intermediate CA 2026-11-25 12:00:00Z,O=Hearth", Serial: "2a3b4c5d6e7f8091",
				NotBefore: t0, NotAfter: t0.Add(5 * 365 * 24 * time.Hour), Fingerprint: "SHA256:5e6f708192a3b4c5d6e7f8093b1f0a8d2c6e4f5a7b9c1d3e5f7081921a2b3c4d"},
			Previous: CACertificate{Subject: "CN=Hearth Intermediate CA,O=Hearth", Serial: "1f2e3d4c5b6a7988", NotBefore: t0,
				NotAfter: t0.Add(5 * 365 * 24 * time.Hour), Fingerprint: "SHA256:1a2b3c4d5e6f708192a3b4c5d6e7f8093b1f0a8d2c6e4f5a7b9c1d3e5f708192"}},
	}
}

// TestBridgeGolden locks the JSON of the bridge bodies against testdata/bridge/ (rewrite with
// -update after a deliberate change): readers of device/get and events depend on the exact
// field names.
func TestBridgeGolden(t *testing.T) {
	for name, v := range bridgeExamples() {
		t.Run(name, func(t *testing.T) {
			got, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "bridge", name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("reading golden file (run with -update to create): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("json.Marshal(%s) =\n%s\nwant (%s)\n%s", name, got, path, want)
			}
			back := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			if err := json.Unmarshal(want, back); err != nil || !reflect.DeepEqual(back, v) {
				t.Errorf("json.Unmarshal(%s) = %+v, %v; want %+v", path, back, err, v)
			}
			if m, ok := back.(Message); ok {
				if err := m.Validate(); err != nil {
					t.Errorf("%s.Validate() = %v", name, err)
				}
			}
		})
	}
}

func TestManualDeviceValidate(t *testing.T) {
	long := string(bytes.Repeat([]byte("x"), 129))
	tests := []struct {
		name string
		m    Message
		ok   bool
	}{
		{"import", &ImportRequest{ManualDevice: ManualDevice{ID: "cam-1"}, PEM: "x"}, true},
		{"bad id", &ImportRequest{ManualDevice: ManualDevice{ID: "Cam"}}, false},
		{"long name", &SignRequest{ManualDevice: ManualDevice{ID: "cam-1", Name: long}}, false},
		{"control character", &SignRequest{ManualDevice: ManualDevice{ID: "cam-1", Model: "a\nb"}}, false},
		{"not UTF-8", &SignRequest{ManualDevice: ManualDevice{ID: "cam-1", Vendor: "\xff"}}, false},
		{"pem too large", &ImportRequest{ManualDevice: ManualDevice{ID: "cam-1"}, PEM: string(make([]byte, MaxImportPEM+1))}, false},
		{"csr too large", &SignRequest{ManualDevice: ManualDevice{ID: "cam-1"}, CSR: string(make([]byte, MaxCSRPEM+1))}, false},
	}
	for _, tt := range tests {
		if err := tt.m.Validate(); (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate() = %v, want ok=%v (errors wrap ErrInvalid)", tt.name, err, tt.ok)
		}
	}
}
