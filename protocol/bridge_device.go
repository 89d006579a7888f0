package protocol

import (
	"encoding/base64"
	"strings"
	"time"
)

// The bridge's view of the fleet scales with it: every device has its own retained topic,
// "bridge/devices" carries counts only, and device/list answers one page at a time. No
// message grows with the number of devices, so none can outgrow MaxMessageSize.

// KindBridgeDevice is the retained state of one device, "<prefix>/bridge/device/<id>".
const KindBridgeDevice Kind = "bridge/device"

// Paging of device/list.
const (
	// DefaultDeviceListLimit is the page size of a device/list request that names none.
	DefaultDeviceListLimit = 100
	// MaxDeviceListLimit is the largest page size a device/list request may ask for.
	MaxDeviceListLimit = 500
	// MaxDeviceListBytes bounds the encoded devices of one page: a page ends early rather
	// than make the response exceed MaxMessageSize.
	MaxDeviceListBytes = 56 << 10
)

// BridgeDevice returns the retained state topic of device id, e.g.
// "hearth/bridge/device/thermostat-1".
func (t Topics) BridgeDevice(id string) string {
	return t.Prefix() + "/" + string(KindBridgeDevice) + "/" + id
}

// BridgeDeviceFilter returns the filter matching the state topic of every device.
func (t Topics) BridgeDeviceFilter() string {
	return t.Prefix() + "/" + string(KindBridgeDevice) + "/+"
}

// parseBridgeDevice parses the rest of a topic after the prefix as a device state topic.
func parseBridgeDevice(rest string) (Topic, bool, error) {
	id, ok := strings.CutPrefix(rest, string(KindBridgeDevice)+"/")
	if !ok {
		return Topic{}, false, nil
	}
	if err := ValidateDeviceID(id); err != nil {
		return Topic{}, true, err
	}
	return Topic{Kind: KindBridgeDevice, DeviceID: id}, true, nil
}

// Problem is one thing wrong with a device: a code from the hub's append-only list (see the
// specification) and a sentence for people saying what exactly, e.g. which renewal deadline
// passed.
type Problem struct {
	Code string `json:"code"`
	Text string `json:"text"`
}

// BridgeDevice is one device's state, published retained on "bridge/device/<id>" whenever
// it changes, and cleared (an empty retained payload) when the device is removed. Its
// fields are those of DeviceSummary, the object of device/list.
type BridgeDevice struct {
	V int `json:"v"`
	DeviceSummary
}

// BridgeDevices is the fleet's summary, published retained on "bridge/devices": counts, never
// a list, so its size does not depend on the number of devices.
type BridgeDevices struct {
	V int `json:"v"`
	// Total is the number of devices in the inventory.
	Total int `json:"total"`
	// Online is the number of devices with a live session.
	Online int `json:"online"`
	// States counts the devices in each state (enrolling, active, …); states without
	// devices are left out.
	States map[string]int `json:"states"`
	// WithProblems is the number of devices with at least one problem.
	WithProblems int `json:"with_problems"`
	// Problems counts the devices with each problem code; codes no device has are left out.
	Problems map[string]int `json:"problems"`
	// Updated is when the hub computed these counts.
	Updated time.Time `json:"updated"`
}

// DeviceListRequest is the payload of device/list: one page of devices in id order, with
// optional filters.
type DeviceListRequest struct {
	Transaction string `json:"transaction,omitempty"`
	// Limit is the most devices to return, 1 to MaxDeviceListLimit; 0 means
	// DefaultDeviceListLimit. A page may hold fewer (MaxDeviceListBytes).
	Limit int `json:"limit,omitempty"`
	// Cursor is the previous page's next_cursor; empty for the first page.
	Cursor string `json:"cursor,omitempty"`
	// State, Family and Class, when set, keep only the devices with that value.
	State  string `json:"state,omitempty"`
	Family string `json:"family,omitempty"`
	Class  string `json:"class,omitempty"`
	// Online, when set, keeps only the devices that are (true) or are not (false) online.
	Online *bool `json:"online,omitempty"`
}

// DeviceList is the data of a device/list response.
type DeviceList struct {
	Devices []DeviceSummary `json:"devices"`
	// NextCursor is the cursor of the next page; omitted on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// checkSummary checks the fields of a device summary that the hub controls.
func checkSummary(d *DeviceSummary) error {
	if err := ValidateDeviceID(d.ID); err != nil {
		return err
	}
	if d.Serial != "" {
		if err := ValidateSerial(d.Serial); err != nil {
			return err
		}
	}
	for _, p := range d.ProblemDetails {
		if p.Code == "" {
			return invalid("device %q: a problem without a code", d.ID)
		}
		if err := checkText("problem text", p.Text, MaxTextLen); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks the message.
func (m *BridgeDevice) Validate() error {
	if err := checkVersion(m.V); err != nil {
		return err
	}
	return checkSummary(&m.DeviceSummary)
}

// Validate checks the message.
func (m *BridgeDevices) Validate() error {
	if err := checkVersion(m.V); err != nil {
		return err
	}
	if m.Total < 0 || m.Online < 0 || m.WithProblems < 0 {
		return invalid("negative device count")
	}
	for _, counts := range []map[string]int{m.States, m.Problems} {
		for k, n := range counts {
			if k == "" || n < 0 {
				return invalid("count %q = %d", k, n)
			}
		}
	}
	return checkHubTime("updated", m.Updated)
}

// Validate checks the request.
func (m *DeviceListRequest) Validate() error {
	if err := checkText("transaction", m.Transaction, 128); err != nil {
		return err
	}
	if m.Limit < 0 || m.Limit > MaxDeviceListLimit {
		return invalid("limit %d must be from 1 to %d (0: %d)", m.Limit, MaxDeviceListLimit, DefaultDeviceListLimit)
	}
	if _, err := m.After(); err != nil {
		return err
	}
	for _, f := range []struct{ name, s string }{{"state", m.State}, {"family", m.Family}, {"class", m.Class}} {
		if err := checkText(f.name, f.s, 64); err != nil {
			return err
		}
	}
	return nil
}

// After returns the device id the request's page starts after: "" for the first page.
func (m *DeviceListRequest) After() (string, error) {
	if m.Cursor == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(m.Cursor)
	if err != nil || len(b) == 0 || len(m.Cursor) > maxCursorLen {
		return "", invalid("cursor %q is not one this hub returned", m.Cursor)
	}
	return string(b), nil
}

// maxCursorLen bounds a cursor: the base64 of an id the inventory can hold.
const maxCursorLen = 256

// DeviceCursor returns the cursor of the page that follows device id. It is opaque to
// clients; the hub encodes the id so that any id the inventory holds can continue a list.
func DeviceCursor(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// PageSize returns the number of devices the request asks for.
func (m *DeviceListRequest) PageSize() int {
	if m.Limit == 0 {
		return DefaultDeviceListLimit
	}
	return m.Limit
}
