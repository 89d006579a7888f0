package admin_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/admin"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// listFixture is an admin service over a real inventory of n agent devices d0000…, every
// third online, each with an active certificate and a name of nameLen bytes.
func listFixture(t *testing.T, n, nameLen int) (*admin.Service, []string) {
	t.Helper()
	store, err := inventory.Open(t.Context(), filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	items := make([]inventory.Issuance, n)
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("d%04d", i)
		items[i] = inventory.Issuance{
			Device: inventory.Device{ID: ids[i], Name: strings.Repeat("n", nameLen), Family: []string{"plug", "lock"}[i%2],
				Mechanism: inventory.MechanismAgent},
			Cert:    inventory.Certificate{Serial: fmt.Sprintf("%x", 0x1000+i), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(29 * 24 * time.Hour)},
			Attempt: inventory.Attempt{RequestID: "r1", StartedAt: now, FinishedAt: now},
		}
	}
	for i, err := range store.RecordIssuances(t.Context(), items) {
		if err != nil {
			t.Fatalf("RecordIssuances()[%d] = %v", i, err)
		}
	}
	for i, id := range ids {
		if _, _, err := store.Activate(t.Context(), id, items[i].Cert.Serial, now); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if err := store.SetOnline(t.Context(), id, true, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	return admin.New(admin.Config{Store: store, Now: func() time.Time { return now }}), ids
}

// pages runs device/list through Do from the first page to the last and returns the ids, the
// page count and the largest response.
func pages(t *testing.T, s *admin.Service, req protocol.DeviceListRequest) (ids []string, n, largest int) {
	t.Helper()
	for {
		payload, _ := json.Marshal(req)
		resp := s.Do(t.Context(), "test", "device/list", payload)
		if resp.Status != "ok" {
			t.Fatalf("device/list %s = %+v", payload, resp)
		}
		wire, _ := json.Marshal(resp)
		largest = max(largest, len(wire))
		var page protocol.DeviceList
		if err := json.Unmarshal(resp.Data, &page); err != nil {
			t.Fatal(err)
		}
		n++
		for _, d := range page.Devices {
			ids = append(ids, d.ID)
		}
		if page.NextCursor == "" {
			return ids, n, largest
		}
		if n > 1000 {
			t.Fatal("device/list never ends")
		}
		req.Cursor = page.NextCursor
	}
}

func TestDeviceListPages(t *testing.T) {
	s, ids := listFixture(t, 45, 12)
	online, offline := true, false
	tests := []struct {
		name  string
		req   protocol.DeviceListRequest
		want  func(i int) bool
		pages int
	}{
		{"default page", protocol.DeviceListRequest{}, func(int) bool { return true }, 1},
		{"pages of 10", protocol.DeviceListRequest{Limit: 10}, func(int) bool { return true }, 5},
		{"pages of 15, the last full", protocol.DeviceListRequest{Limit: 15}, func(int) bool { return true }, 3},
		{"online", protocol.DeviceListRequest{Limit: 4, Online: &online}, func(i int) bool { return i%3 == 0 }, 4},
		{"offline", protocol.DeviceListRequest{Limit: 100, Online: &offline}, func(i int) bool { return i%3 != 0 }, 1},
		{"family", protocol.DeviceListRequest{Limit: 7, Family: "lock"}, func(i int) bool { return i%2 == 1 }, 4},
		{"state", protocol.DeviceListRequest{State: inventory.StateQuarantined}, func(int) bool { return false }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n, _ := pages(t, s, tt.req)
			var want []string
			for i, id := range ids {
				if tt.want(i) {
					want = append(want, id)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("device/list %+v listed %v, want %v", tt.req, got, want)
			}
			if n != tt.pages {
				t.Errorf("device/list %+v took %d pages, want %d", tt.req, n, tt.pages)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		for _, payload := range []string{`{"limit":501}`, `{"cursor":"../etc"}`, `{"limit":"ten"}`} {
			if resp := s.Do(t.Context(), "test", "device/list", []byte(payload)); resp.Status != "error" || resp.Code != protocol.CodeBadRequest {
				t.Errorf("device/list %s = %+v, want bad_request", payload, resp)
			}
		}
	})
}

// TestDeviceListFitsInAMessage lists devices with the longest names allowed: a page ends early
// rather than let its response pass the message size limit.
func TestDeviceListFitsInAMessage(t *testing.T) {
	s, ids := listFixture(t, 600, 128)
	got, n, largest := pages(t, s, protocol.DeviceListRequest{Limit: protocol.MaxDeviceListLimit})
	if !slices.Equal(got, ids) {
		t.Fatalf("device/list listed %d devices, want all %d in order", len(got), len(ids))
	}
	if largest > protocol.MaxMessageSize {
		t.Errorf("largest device/list response = %d bytes, over %d", largest, protocol.MaxMessageSize)
	}
	if n < 3 {
		t.Errorf("device/list took %d pages of %d-byte names, want the size limit to cut them", n, 128)
	}
	all, err := s.List(t.Context())
	if err != nil || len(all) != len(ids) {
		t.Errorf("List() = %d devices, %v, want %d", len(all), err, len(ids))
	}
}
