package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/hearth-pki/hearth/protocol"
)

// TestAPIDevicesPages follows GET /api/devices from page to page: the same device/list the
// bridge answers, its request in the query string.
func TestAPIDevicesPages(t *testing.T) {
	f := newFixture(t, nil)
	var ids []string
	target := "/api/devices?limit=3"
	for pages := 0; ; pages++ {
		resp, body := f.get(t, target)
		mustStatus(t, "GET "+target, resp, body, http.StatusOK)
		var page protocol.DeviceList
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			t.Fatalf("GET %s: %v\n%s", target, err, body)
		}
		if len(page.Devices) > 3 {
			t.Fatalf("GET %s listed %d devices, want at most 3", target, len(page.Devices))
		}
		for _, d := range page.Devices {
			ids = append(ids, d.ID)
		}
		if page.NextCursor == "" {
			break
		}
		if pages > len(seededOrder) {
			t.Fatal("the pages never end")
		}
		target = "/api/devices?limit=3&cursor=" + url.QueryEscape(page.NextCursor)
	}
	want := slices.Sorted(slices.Values(seededOrder))
	if !slices.Equal(ids, want) {
		t.Errorf("GET /api/devices pages listed %q, want %q", ids, want)
	}

	_, body := f.get(t, "/api/devices?online=true&state=active")
	var page protocol.DeviceList
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatal(err)
	}
	var online []string
	for _, d := range page.Devices {
		online = append(online, d.ID)
	}
	if want := []string{"hall-thermostat", "kitchen-plug"}; !slices.Equal(online, want) {
		t.Errorf("GET /api/devices?online=true&state=active = %q, want %q", online, want)
	}

	for _, bad := range []string{"?limit=ten", "?limit=501", "?online=maybe", "?cursor=%2F%2F"} {
		resp, body := f.get(t, "/api/devices"+bad)
		mustStatus(t, "GET /api/devices"+bad, resp, body, http.StatusBadRequest)
	}
}
