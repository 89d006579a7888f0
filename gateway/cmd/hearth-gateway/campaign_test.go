package main

import "testing"

func TestParseRateAndShare(t *testing.T) {
	rates := []struct {
		in   string
		want float64
		ok   bool
	}{{"", 0, true}, {"100/min", 100, true}, {"2/s", 120, true}, {"60/h", 1, true}, {"100", 0, false}, {"x/min", 0, false}, {"5/week", 0, false}, {"-1/s", 0, false}}
	for _, tt := range rates {
		got, err := parseRate(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseRate(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	shares := []struct {
		in   string
		want float64
		ok   bool
	}{{"", 0, true}, {"10%", 0.1, true}, {"0.25", 0.25, true}, {"150%", 0, false}, {"abc", 0, false}, {"0", 0, false}}
	for _, tt := range shares {
		got, err := parseShare(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseShare(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
