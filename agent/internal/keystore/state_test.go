package keystore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// goldenState exercises every field of state.json.
var goldenState = State{
	LastKnownGood: time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC),
	LastError:     "hub: no reply to request r-17 within 30s",
	LastCause:     "timeout",
	LastRenewal:   time.Date(2026, 2, 12, 8, 0, 0, 0, time.UTC),
	Pending:       &Pending{RequestID: "r-17", Replaces: "1f2e"},
}

func stateEqual(a, b State) bool {
	if !a.LastKnownGood.Equal(b.LastKnownGood) || a.LastError != b.LastError || a.LastCause != b.LastCause || !a.LastRenewal.Equal(b.LastRenewal) {
		return false
	}
	if a.Pending == nil || b.Pending == nil {
		return a.Pending == b.Pending
	}
	return *a.Pending == *b.Pending
}

// TestStateGolden locks state.json's format: agents run for years and upgrade in place.
func TestStateGolden(t *testing.T) {
	golden := filepath.Join("testdata", "state.golden.json")
	data, err := encodeState(goldenState)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(golden, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(data, want) {
		t.Errorf("encodeState(golden) =\n%s\nwant\n%s", data, want)
	}
	got, err := decodeState(want)
	if err != nil || !stateEqual(got, goldenState) {
		t.Errorf("decodeState(%s) = %+v, %v; want %+v", golden, got, err, goldenState)
	}
}

func TestSaveLoadState(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	tests := []struct {
		name  string
		state State
	}{
		{name: "zero", state: State{}},
		{name: "full", state: goldenState},
		{name: "no pending", state: State{LastKnownGood: time.Date(2026, 1, 2, 3, 4, 5, 6, berlin)}},
		{name: "error only", state: State{LastError: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir()
			d := mustOpen(t, path, Options{})
			if err := d.SaveState(tt.state); err != nil {
				t.Fatalf("SaveState(%+v) = %v", tt.state, err)
			}
			got, err := mustOpen(t, path, Options{}).LoadState()
			if err != nil || !stateEqual(got, tt.state) {
				t.Errorf("LoadState() = %+v, %v; want %+v", got, err, tt.state)
			}
			if got.LastKnownGood.Location() != time.UTC {
				t.Errorf("LoadState().LastKnownGood location = %v, want UTC", got.LastKnownGood.Location())
			}
		})
	}
}

func TestLoadStateMissingIsZero(t *testing.T) {
	got, err := mustOpen(t, t.TempDir(), Options{}).LoadState()
	if err != nil || !stateEqual(got, State{}) {
		t.Errorf("LoadState() on a fresh directory = %+v, %v; want zero, nil", got, err)
	}
}

func TestLoadStateCorrupt(t *testing.T) {
	tests := []struct{ name, data string }{
		{"empty", ""},
		{"garbage", "\xff\xff\xff"},
		{"truncated", `{"v":1,"last_error":"ab`},
		{"no version", `{"last_error":"x"}`},
		{"future version", `{"v":2}`},
		{"pending without id", `{"v":1,"pending":{"replaces":"ab"}}`},
		{"wrong type", `{"v":1,"last_known_good":42}`},
		{"array", `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir()
			if err := os.WriteFile(filepath.Join(path, stateName), []byte(tt.data), fileMode); err != nil {
				t.Fatal(err)
			}
			got, err := mustOpen(t, path, Options{}).LoadState()
			if !errors.Is(err, ErrCorrupt) || !stateEqual(got, State{}) {
				t.Errorf("LoadState() of %q = %+v, %v; want zero state and ErrCorrupt", tt.data, got, err)
			}
		})
	}
}

func TestLoadStateIgnoresUnknownFields(t *testing.T) {
	path := t.TempDir()
	data := `{"v":1,"last_error":"x","added_later":{"a":1}}`
	if err := os.WriteFile(filepath.Join(path, stateName), []byte(data), fileMode); err != nil {
		t.Fatal(err)
	}
	got, err := mustOpen(t, path, Options{}).LoadState()
	if err != nil || got.LastError != "x" {
		t.Errorf("LoadState() of %s = %+v, %v; want LastError x", data, got, err)
	}
}

func TestSaveStateRefusesPendingWithoutID(t *testing.T) {
	path := t.TempDir()
	d := mustOpen(t, path, Options{})
	if err := d.SaveState(State{Pending: &Pending{Replaces: "ab"}}); err == nil {
		t.Errorf("SaveState(pending without id) = nil, want error")
	}
	if _, err := os.Stat(filepath.Join(path, stateName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state.json after a refused SaveState: %v, want absent", err)
	}
}

// FuzzDecodeState feeds arbitrary bytes as state.json: never a panic, and an accepted state
// survives encode → decode unchanged.
func FuzzDecodeState(f *testing.F) {
	f.Add(must(encodeState(goldenState)))
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"pending":{"request_id":""}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeState(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || !stateEqual(s, State{}) {
				t.Fatalf("decodeState(%q) = %+v, %v; want zero and ErrCorrupt", data, s, err)
			}
			return
		}
		again, err := decodeState(must(encodeState(s)))
		if err != nil || !stateEqual(again, s) {
			t.Fatalf("decodeState(encodeState(%+v)) = %+v, %v", s, again, err)
		}
	})
}
