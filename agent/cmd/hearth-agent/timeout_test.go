package main

import (
	"errors"
	"testing"
	"time"
)

// TestTimeoutFlag checks what --request-timeout takes and refuses.
func TestTimeoutFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration // 0: refused
	}{
		{"90s", 90 * time.Second},
		{"2m", 2 * time.Minute},
		{"1h", time.Hour},
		{"0s", 0},
		{"90", 0},
		{"1m30s", 0},
		{"-5s", 0},
		{"1.5m", 0},
		{"s", 0},
		{"", 0},
		{"99999999s", 0},
	} {
		var d timeout
		err := d.Set(tc.in)
		if tc.want == 0 {
			if !errors.Is(err, errTimeout) {
				t.Errorf("Set(%q) = %v, want errTimeout", tc.in, err)
			}
			continue
		}
		if err != nil || time.Duration(d) != tc.want {
			t.Errorf("Set(%q) = %v, %v; want %v", tc.in, time.Duration(d), err, tc.want)
		}
	}
}
