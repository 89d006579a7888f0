package web

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hearth-pki/hearth/protocol"
)

// TestAPIEqualsBridgeData checks that each read endpoint answers exactly the data of the
// admin operation the bridge API runs.
func TestAPIEqualsBridgeData(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name    string
		target  string
		op      string
		payload string
	}{
		{"list", "/api/devices", "device/list", ""},
		{"get", "/api/devices/kitchen-plug", "device/get", `{"id":"kitchen-plug"}`},
		{"events", "/api/events?device=kitchen-plug&limit=2", "events", `{"id":"kitchen-plug","limit":2}`},
		{"events default", "/api/events", "events", `{"limit":50}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.get(t, tt.target)
			mustStatus(t, "GET "+tt.target, resp, body, http.StatusOK)
			if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("GET %s Content-Type = %q", tt.target, ct)
			}
			want := f.admin.Do(t.Context(), "test", tt.op, []byte(tt.payload))
			if want.Status != "ok" {
				t.Fatalf("Do(%s) = %+v", tt.op, want)
			}
			if got := strings.TrimSuffix(body, "\n"); got != string(want.Data) {
				t.Errorf("GET %s =\n%s\nwant the bridge data\n%s", tt.target, got, want.Data)
			}
		})
	}
}

func TestAPIShapes(t *testing.T) {
	f := newFixture(t, nil)

	_, body := f.get(t, "/api/devices")
	var page protocol.DeviceList
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatalf("GET /api/devices: %v\n%s", err, body)
	}
	list := page.Devices
	if len(list) != len(seededOrder) {
		t.Errorf("GET /api/devices lists %d devices, want %d", len(list), len(seededOrder))
	}
	for _, d := range list {
		if d.ID == "hall-thermostat" && (d.Serial != "0b01" || !d.Online || len(d.Problems) != 1 || d.Problems[0] != "expiring") {
			t.Errorf("GET /api/devices: hall-thermostat = %+v, want serial 0b01, online, problem expiring", d)
		}
	}

	_, body = f.get(t, "/api/devices/kitchen-plug")
	var detail protocol.DeviceDetail
	if err := json.Unmarshal([]byte(body), &detail); err != nil {
		t.Fatalf("GET /api/devices/kitchen-plug: %v\n%s", err, body)
	}
	if detail.ID != "kitchen-plug" || len(detail.Certificates) != 2 || len(detail.Attempts) != 2 || len(detail.Events) == 0 {
		t.Errorf("GET /api/devices/kitchen-plug = id %q, %d certs, %d attempts, %d events; want kitchen-plug, 2, 2, >0",
			detail.ID, len(detail.Certificates), len(detail.Attempts), len(detail.Events))
	}

	_, body = f.get(t, "/api/events?device=kitchen-plug&limit=2")
	var evs []protocol.AuditEvent
	if err := json.Unmarshal([]byte(body), &evs); err != nil {
		t.Fatalf("GET /api/events: %v\n%s", err, body)
	}
	if len(evs) != 2 || evs[0].DeviceID != "kitchen-plug" || evs[1].DeviceID != "kitchen-plug" || evs[0].Seq >= evs[1].Seq {
		t.Errorf("GET /api/events?device=kitchen-plug&limit=2 = %+v, want its 2 latest events in order", evs)
	}
}

func TestAPIErrors(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name   string
		method string
		target string
		header bool
		status int
		code   protocol.Code
	}{
		{"unknown device", http.MethodGet, "/api/devices/nope", false, http.StatusNotFound, protocol.CodeNotFound},
		{"renew unknown device", http.MethodPost, "/api/devices/nope/renew", true, http.StatusNotFound, protocol.CodeNotFound},
		{"limit zero", http.MethodGet, "/api/events?limit=0", false, http.StatusBadRequest, protocol.CodeBadRequest},
		{"limit too big", http.MethodGet, "/api/events?limit=1001", false, http.StatusBadRequest, protocol.CodeBadRequest},
		{"limit not a number", http.MethodGet, "/api/events?limit=ten", false, http.StatusBadRequest, protocol.CodeBadRequest},
		{"renew without X-Requested-With", http.MethodPost, "/api/devices/kitchen-plug/renew", false, http.StatusForbidden, protocol.CodeUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequestWithContext(t.Context(), tt.method, tt.target, nil)
			if tt.header {
				r.Header.Set("X-Requested-With", "test")
			}
			resp, body := f.do(t, r)
			mustStatus(t, tt.method+" "+tt.target, resp, body, tt.status)
			var got protocol.BridgeResponse
			if err := json.Unmarshal([]byte(body), &got); err != nil || got.Status != "error" || got.Code != tt.code || got.Error == "" {
				t.Errorf("%s %s = %s (%v), want status error, code %s and a message", tt.method, tt.target, body, err, tt.code)
			}
		})
	}
	if got := f.broker.Topics(); len(got) != 0 {
		t.Errorf("refused requests published %q, want nothing", got)
	}
}

func TestAPIRenew(t *testing.T) {
	f := newFixture(t, nil)
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/api/devices/hall-thermostat/renew",
		bytes.NewReader([]byte(`{"transaction":"tx-1","reason":"battery swap"}`)))
	r.Header.Set("X-Requested-With", "XMLHttpRequest")
	resp, body := f.do(t, r)
	mustStatus(t, "POST /api/devices/hall-thermostat/renew", resp, body, http.StatusOK)
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got["id"] != "hall-thermostat" || !strings.HasPrefix(got["command_id"].(string), "cmd-") || got["deadline"] == nil || len(got) != 3 {
		t.Errorf("renew answer = %s, want {id, command_id, deadline}", body)
	}
	msgs := f.broker.Messages()
	if len(msgs) != 1 || msgs[0].Topic != "hearth/v1/dev/hall-thermostat/cmd" || msgs[0].Retain {
		t.Fatalf("renew published %+v, want one unretained message on hearth/v1/dev/hall-thermostat/cmd", msgs)
	}
	var cmd protocol.Command
	if err := protocol.Decode(msgs[0].Payload, &cmd); err != nil {
		t.Fatalf("published command: %v", err)
	}
	if cmd.Action != protocol.ActionRenew || cmd.Reason != "battery swap" || cmd.CommandID != got["command_id"] {
		t.Errorf("published command = %+v, want renew, reason \"battery swap\", id %v", cmd, got["command_id"])
	}

	bad := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/api/devices/hall-thermostat/renew", strings.NewReader("{"))
	bad.Header.Set("X-Requested-With", "XMLHttpRequest")
	resp, body = f.do(t, bad)
	mustStatus(t, "renew with a broken body", resp, body, http.StatusBadRequest)
}
