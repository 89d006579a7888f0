package protocol

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"testing"
)

// deviceIDVectors reads testdata/vectors/device_ids.json, the table of device ids the
// gateway's and the agent's tests also check their entry points against.
func deviceIDVectors(t *testing.T) []struct {
	ID    string `json:"id"`
	Valid bool   `json:"valid"`
} {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors/device_ids.json")
	if err != nil {
		t.Fatal(err)
	}
	var v []struct {
		ID    string `json:"id"`
		Valid bool   `json:"valid"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestValidateDeviceID(t *testing.T) {
	for _, tt := range deviceIDVectors(t) {
		err := ValidateDeviceID(tt.ID)
		if (err == nil) != tt.Valid || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateDeviceID(%q) = %v, want valid=%v", tt.ID, err, tt.Valid)
		}
	}
}

func TestDeviceURN(t *testing.T) {
	for _, tt := range deviceIDVectors(t) {
		if !tt.Valid {
			continue
		}
		urn := DeviceURN(tt.ID)
		if got := DeviceURI(tt.ID).String(); got != urn {
			t.Errorf("DeviceURI(%q).String() = %q, want %q", tt.ID, got, urn)
		}
		u, err := url.Parse(urn)
		if err != nil || u.String() != urn {
			t.Errorf("url.Parse(%q) = %v, %v; want the same URN", urn, u, err)
		}
		if id, ok := DeviceIDFromURN(urn); !ok || id != tt.ID {
			t.Errorf("DeviceIDFromURN(%q) = %q, %v; want %q, true", urn, id, ok, tt.ID)
		}
	}
	if got := DeviceURN("thermostat-hall"); got != "urn:hearth:device:thermostat-hall" {
		t.Errorf(`DeviceURN("thermostat-hall") = %q, want the spec's urn:hearth:device:thermostat-hall`, got)
	}
	for _, s := range []string{"", "urn:hearth:devices:a", "urn:hearth:a", "https://hearth/device/a", "hearth:device:a"} {
		if id, ok := DeviceIDFromURN(s); ok {
			t.Errorf("DeviceIDFromURN(%q) = %q, true; want not a device URN", s, id)
		}
	}
}

func TestDeviceIDFromCert(t *testing.T) {
	other := &url.URL{Scheme: "https", Host: "x.example"}
	raw := func(s string) *url.URL { u, _ := url.Parse(s); return u }
	tests := []struct {
		name string
		cn   string
		uris []*url.URL
		want string // "" = refused
	}{
		{"good", "dev-a", []*url.URL{DeviceURI("dev-a")}, "dev-a"},
		{"with other URIs", "dev-a", []*url.URL{other, DeviceURI("dev-a")}, "dev-a"},
		{"parsed from text", "dev-a", []*url.URL{raw("urn:hearth:device:dev-a")}, "dev-a"},
		{"no URI", "dev-a", nil, ""},
		{"only other URIs", "dev-a", []*url.URL{other}, ""},
		{"two device URIs", "dev-a", []*url.URL{DeviceURI("dev-a"), DeviceURI("dev-b")}, ""},
		{"the same URI twice", "dev-a", []*url.URL{DeviceURI("dev-a"), DeviceURI("dev-a")}, ""},
		{"CN differs", "dev-b", []*url.URL{DeviceURI("dev-a")}, ""},
		{"no CN", "", []*url.URL{DeviceURI("dev-a")}, ""},
		{"invalid id", "Dev/A", []*url.URL{DeviceURI("Dev/A")}, ""},
		{"underscore first", "_x", []*url.URL{DeviceURI("_x")}, ""},
		{"wildcard id", "+", []*url.URL{DeviceURI("+")}, ""},
		{"query after the id", "dev-a", []*url.URL{raw("urn:hearth:device:dev-a?x=1")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DeviceIDFromCert(&x509.Certificate{Subject: pkix.Name{CommonName: tt.cn}, URIs: tt.uris})
			if got != tt.want || (tt.want == "") != errors.Is(err, ErrIdentity) {
				t.Errorf("DeviceIDFromCert(%s) = %q, %v; want %q", tt.name, got, err, tt.want)
			}
		})
	}
}
