package protocol

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestIncidentGolden locks the incident/* request and answer bodies (testdata/bridge/).
func TestIncidentGolden(t *testing.T) {
	for name, v := range map[string]any{
		"request_incident_device_lost": &IncidentRequest{Transaction: "t1", ID: "porch-camera", DryRun: true},
		"incident_plan_family": &IncidentPlan{Incident: IncidentFamilyCompromised, Campaign: "incident-acme-cam-20261203t120000z",
			Devices: []IncidentDevice{{ID: "porch-camera", Name: "Porch camera", Online: true, Serial: "1f2e", Action: "re-key; 1f2e revoked when it commits"}},
			Notice:  "The acme-cam devices (1) are getting new certificates; each may drop off for a few seconds."},
	} {
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
		})
	}
}

func TestIsIncidentCampaign(t *testing.T) {
	for id, want := range map[string]bool{"incident-acme-20261203t120000z": true, "rotate-2026": false, "incident": false, "": false} {
		if got := IsIncidentCampaign(id); got != want {
			t.Errorf("IsIncidentCampaign(%q) = %v, want %v", id, got, want)
		}
	}
}
