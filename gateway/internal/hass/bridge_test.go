package hass

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestAnswer(t *testing.T) {
	echo := func(_ context.Context, op string, payload []byte) []byte {
		return []byte(`{"status":"ok","op":"` + op + `"}`)
	}
	tests := []struct {
		name    string
		bridge  Bridge
		r       request
		want    string // a fragment of the reply
		wantTxn string // the transaction echoed, "" for none
	}{
		{"served", echo, request{"device/renew", []byte(`{"id":"a"}`)}, `"op":"device/renew"`, ""},
		{"no bridge", nil, request{"device/list", []byte(`{"transaction":"t1"}`)}, `"error":"bridge requests are not served`, `"t1"`},
		{"empty op", echo, request{"", []byte(`{}`)}, `must be 1 to 64 characters`, ""},
		{"empty level", echo, request{"device//renew", []byte(`{"transaction":7}`)}, `has an empty level`, `7`},
		{"upper case op", echo, request{"Device/Renew", []byte(`{}`)}, `contains 'D'`, ""},
		{"long op", echo, request{strings.Repeat("a", 65), []byte(`{}`)}, `must be 1 to 64`, ""},
		{"not JSON", echo, request{"device/list", []byte(`renew please`)}, `request is not JSON`, ""},
		{"too large", echo, request{"device/list", []byte(`{"transaction":"big","x":"` + strings.Repeat("x", maxRequestSize) + `"}`)}, `request larger than`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := answer(t.Context(), tt.bridge, tt.r)
			if !strings.Contains(string(got), tt.want) {
				t.Errorf("answer(%q) = %s, want it to contain %s", tt.r.op, got, tt.want)
			}
			var reply struct {
				Status      string
				Transaction json.RawMessage
			}
			if err := json.Unmarshal(got, &reply); err != nil {
				t.Fatalf("answer(%q) = %s, not JSON: %v", tt.r.op, got, err)
			}
			if string(reply.Transaction) != tt.wantTxn {
				t.Errorf("answer(%q) transaction = %s, want %s", tt.r.op, reply.Transaction, tt.wantTxn)
			}
		})
	}
}

func TestAnswerGivesTheBridgeADeadline(t *testing.T) {
	var hasDeadline bool
	answer(t.Context(), func(ctx context.Context, _ string, _ []byte) []byte {
		_, hasDeadline = ctx.Deadline()
		return nil
	}, request{"token/create", []byte(`{}`)})
	if !hasDeadline {
		t.Error("the Bridge's context has no deadline")
	}
}

// FuzzAnswer checks that no request panics and that every refusal is a JSON error reply.
func FuzzAnswer(f *testing.F) {
	f.Add("device/renew", []byte(`{"id":"a","transaction":"t"}`))
	f.Add("", []byte(`{"transaction":{"nested":[1,2]}}`))
	f.Add("x/", []byte(`[1]`))
	f.Add("token/create", []byte(`{"transaction":null}`))
	f.Fuzz(func(t *testing.T, op string, payload []byte) {
		got := answer(t.Context(), nil, request{op, payload})
		var reply struct{ Status string }
		if err := json.Unmarshal(got, &reply); err != nil || reply.Status != "error" {
			t.Errorf("answer(%q, %q) = %s, want a JSON error reply", op, payload, got)
		}
	})
}
