package hass

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Bridge answers one bridge API request: op is the topic after "<prefix>/bridge/request/"
// (e.g. "device/renew"), payload the request's JSON, and the result is published as is on
// "<prefix>/bridge/response/<op>". The reply should echo the request's "transaction" and carry
// "status": "ok" or "error". A nil or empty result publishes nothing. ctx ends when the
// Publisher stops or after bridgeTimeout.
type Bridge func(ctx context.Context, op string, payload []byte) []byte

const (
	maxRequestSize = 64 << 10         // larger requests are refused without calling the Bridge
	maxOpLen       = 64               // longest op accepted
	requestQueue   = 64               // requests waiting for the Bridge; more are dropped
	bridgeTimeout  = 30 * time.Second // the Bridge's deadline for one request
)

// request is one bridge request taken off the broker.
type request struct {
	op      string
	payload []byte
}

// errorReply is the reply the Publisher itself sends when it refuses a request.
type errorReply struct {
	Status      string          `json:"status"`
	Error       string          `json:"error"`
	Transaction json.RawMessage `json:"transaction,omitempty"`
}

// checkOp checks the syntax of an op: 1 to 64 characters, levels of [a-z0-9_-] separated by
// '/'. Which ops exist is the Bridge's business.
func checkOp(op string) error {
	if op == "" || len(op) > maxOpLen {
		return fmt.Errorf("operation %q must be 1 to %d characters long", op, maxOpLen)
	}
	for level := range strings.SplitSeq(op, "/") {
		if level == "" {
			return fmt.Errorf("operation %q has an empty level", op)
		}
		for _, r := range level {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				return fmt.Errorf("operation %q contains %q", op, r)
			}
		}
	}
	return nil
}

// answer produces the reply to one request: the Bridge's, or an error reply when the request is
// refused before reaching it.
func answer(ctx context.Context, bridge Bridge, r request) []byte {
	switch {
	case len(r.payload) > maxRequestSize:
		return refuse(r.payload, fmt.Sprintf("request larger than %d bytes", maxRequestSize))
	case checkOp(r.op) != nil:
		return refuse(r.payload, checkOp(r.op).Error())
	case !json.Valid(r.payload):
		return refuse(r.payload, "request is not JSON")
	case bridge == nil:
		return refuse(r.payload, "bridge requests are not served on this broker")
	}
	ctx, cancel := context.WithTimeout(ctx, bridgeTimeout)
	defer cancel()
	return bridge(ctx, r.op, r.payload)
}

// refuse builds an error reply echoing the request's transaction, if it has one.
func refuse(payload []byte, reason string) []byte {
	return mustJSON(errorReply{Status: "error", Error: reason, Transaction: transaction(payload)})
}

// transaction returns the raw "transaction" value of a JSON object request, or nil.
func transaction(payload []byte) json.RawMessage {
	if len(payload) > maxRequestSize {
		return nil
	}
	var req struct {
		Transaction json.RawMessage `json:"transaction"`
	}
	if err := json.Unmarshal(payload, &req); err != nil || bytes.Equal(req.Transaction, []byte("null")) {
		return nil
	}
	return req.Transaction
}
