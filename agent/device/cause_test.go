package device

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"testing"

	"github.com/hearth-pki/hearth/agent/internal/hub"
	"github.com/hearth-pki/hearth/protocol"
)

// TestCauseOf classifies the errors a renewal fails with, wrapped as renew, commit and
// rollback wrap them. TestRollback forces the chain, timeout and commit causes end to end.
func TestCauseOf(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		err  error
		want protocol.Cause
	}{
		{"none", nil, ""},
		{"hub busy", fmt.Errorf("device: renew: %w", hubError(&protocol.Error{Code: protocol.CodeBusy})), protocol.CauseHubBusy},
		{"rate limited", hubError(&protocol.Error{Code: protocol.CodeRateLimited}), protocol.CauseRateLimited},
		{"policy", hubError(&protocol.Error{Code: protocol.CodePolicyDenied, Message: "rule lifetime"}), protocol.CausePolicyRefused},
		{"commit refused", checkAck(ctx, &protocol.Ack{Error: &protocol.Error{Code: protocol.CodeNotPresented}}, nil, "ab"), protocol.CauseCommitRefused},
		{"no ack", checkAck(context.Background(), nil, context.DeadlineExceeded, "ab"), protocol.CauseCommitTimeout},
		{"wrong serial acked", checkAck(ctx, &protocol.Ack{Serial: "cd"}, nil, "ab"), protocol.CauseCommitTimeout},
		{"bad chain", fmt.Errorf("%w: x509: unknown authority", ErrBadChain), protocol.CauseChainVerification},
		{"no reply", noReply(context.Background(), context.DeadlineExceeded), protocol.CauseTimeout},
		{"connect refused", &hub.RefusedError{Code: 5}, protocol.CauseReconnectRefused},
		{"tls alert", &hub.DialError{Err: errors.New("remote error: tls: bad certificate"), Alert: true}, protocol.CauseReconnectRefused},
		{"unreachable", &hub.DialError{Err: errors.New("connection refused")}, protocol.CauseNetwork},
		{"hub certificate not valid at the device's time", &hub.DialError{Err: fmt.Errorf("verify the hub: %w",
			x509.CertificateInvalidError{Reason: x509.Expired, Detail: "current time 2031-01-01 is after 2030-01-01"})}, protocol.CauseClockSkew},
		{"hub certificate from another CA", &hub.DialError{Err: fmt.Errorf("hub certificate: %w", x509.UnknownAuthorityError{})}, protocol.CauseChainVerification},
		{"connection lost", fmt.Errorf("request: %w", hub.ErrConnectionLost), protocol.CauseNetwork},
		{"key generation", withCause(protocol.CauseKeyGeneration, errors.New("entropy")), protocol.CauseKeyGeneration},
		{"storage", fmt.Errorf("device: renew: %w", withCause(protocol.CauseStorage, errors.New("disk full"))), protocol.CauseStorage},
		{"hook", withCause(protocol.CauseHookFailed, errors.New("exit 1")), protocol.CauseHookFailed},
		{"reconnect refused after install", withCause(protocol.CauseReconnectRefused,
			fmt.Errorf("reconnect: %w", &hub.DialError{Alert: true, Err: errors.New("x")})), protocol.CauseReconnectRefused},
		{"commit deadline", withCause(protocol.CauseCommitTimeout, &hub.DialError{Err: errors.New("x")}), protocol.CauseCommitTimeout},
		{"anything else", errors.New("surprise"), protocol.CauseUnknown},
	} {
		if got := causeOf(tc.err); got != tc.want {
			t.Errorf("%s: causeOf(%v) = %q, want %q", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestHookFailedCause: an --on-renew command that exits with an error is the cause the next
// health report gives, after a renewal that itself committed.
func TestHookFailedCause(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("plug-1")
	e.enroll(cfg)
	cfg.OnRenew = []string{"/bin/sh", "-c", "echo reload failed; exit 3"}
	r := e.start(cfg)
	r.waitFor(t, EventConnected)
	e.hub.Command("plug-1", "cmd-1", protocol.ActionRenew)
	ev := r.waitFor(t, EventRenewed)
	for {
		h := healthWith(t, e, ev.Serial)
		if h.LastCause == protocol.CauseHookFailed {
			break
		}
	}
}

// TestKeyGenerationCause forces key_generation at the lowest layer where it can happen (no
// real system makes Go's key generation fail; gateway/README.md, "Which test forces each
// cause"): the agent's generator fails on a renewal the hub commands, and the agent records
// the cause under the attempt's request id, in its status and in its next health report.
func TestKeyGenerationCause(t *testing.T) {
	e := newEnv(t, true)
	cfg := e.config("plug-1")
	e.enroll(cfg)
	old := onDisk(t, cfg.Dir).Serial()
	r := e.startWith(cfg, func(a *Agent) {
		a.genKey = func(protocol.KeyAlgorithm) (crypto.Signer, error) {
			return nil, errors.New("the secure element is out of key slots")
		}
	})
	r.waitFor(t, EventConnected)
	e.hub.Command("plug-1", "cmd-1", protocol.ActionRenew)
	for {
		h := healthWith(t, e, old)
		if h.LastCause == "" {
			continue // the report of the connection, before the command
		}
		if h.LastCause != protocol.CauseKeyGeneration || h.LastRequestID == "" {
			t.Fatalf("health after the failed renewal = cause %q request %q, want %s with a request id", h.LastCause, h.LastRequestID, protocol.CauseKeyGeneration)
		}
		r.stop(t)
		st, err := ReadStatus(Config{Dir: cfg.Dir})
		if err != nil || st.LastCause != string(protocol.CauseKeyGeneration) || st.LastRequestID != h.LastRequestID {
			t.Errorf("ReadStatus() = cause %q request %q (%v), want %s of %s", st.LastCause, st.LastRequestID, err, protocol.CauseKeyGeneration, h.LastRequestID)
		}
		return
	}
}
