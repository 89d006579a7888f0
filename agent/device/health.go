package device

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/keystore"
	"github.com/hearth-pki/hearth/protocol"
)

// healthReport describes the current certificate and clock.
func (a *Agent) healthReport() *protocol.Health {
	pair := a.current()
	leaf := pair.Leaf()
	r := a.clk.Read()
	h := &protocol.Health{
		V: protocol.Version, Serial: pair.Serial(), Issuer: leaf.Issuer.String(),
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, KeyAlgorithm: protocol.KeyAlgorithmOf(leaf.PublicKey),
		KeyStorage: a.cfg.keyStorage(), DeviceTime: r.Device, ClockTrusted: r.Trusted, AgentVersion: a.cfg.Version,
		LastError: protocol.ClipText(a.st.LastError), LastCause: lastCause(a.st), LastRequestID: a.st.LastRequestID,
		NextRenewal: a.nextRenewal().At, Arch: runtime.GOARCH,
		Manufacturer: protocol.ClipText(a.cfg.Manufacturer), Model: protocol.ClipText(a.cfg.Model),
	}
	if r.HubSeen {
		h.SkewSeconds = int64(r.Skew.Round(time.Second) / time.Second)
	}
	if _, err := verifyChain(pair.Chain, a.ca, verifyAt(r, leaf), x509.ExtKeyUsageClientAuth, ""); err != nil {
		h.ChainError = protocol.ClipText(err.Error())
	} else {
		h.ChainOK = true
	}
	if h.DeviceTime.Year() < 1970 {
		h.DeviceTime = time.Unix(0, 0).UTC()
	}
	return h
}

// sendHealth publishes a health report.
func (a *Agent) sendHealth(ctx context.Context) {
	h := a.healthReport()
	a.healthDue = false
	a.lastHealth = a.now()
	rctx, cancel := context.WithTimeout(ctx, a.cfg.ConnectTimeout)
	err := a.sess.Report(rctx, h)
	cancel()
	if err != nil {
		// Try again within a minute (or at the next connection).
		a.lastHealth = a.now().Add(-a.cfg.HealthEvery + time.Minute)
		a.log.Warn("cannot send the health report", "err", err)
		return
	}
	a.rt.ClockTrusted, a.rt.HubSeen, a.rt.SkewSeconds = h.ClockTrusted, a.clk.Read().HubSeen, h.SkewSeconds
	a.saveRuntime()
	if a.clk.Floor().Sub(a.savedFloor) > time.Hour {
		a.saveState()
	}
	a.emit(Event{Kind: EventHealth})
	a.log.Debug("health reported", "chain_ok", h.ChainOK, "clock_trusted", h.ClockTrusted, "skew_s", h.SkewSeconds)
}

// setLastError records err as the last error, for health reports and status, persisting it
// when it changed. reqID is the renewal attempt err ended, "" when it ended none (a hook
// that failed after the commit, a commit to send again): health reports carry it, and the
// hub records a failed attempt under it once (protocol/README.md, "Causes").
func (a *Agent) setLastError(reqID string, err error) {
	if err == nil {
		return
	}
	msg, cause := protocol.ClipText(err.Error()), string(causeOf(err))
	if msg == a.st.LastError && cause == a.st.LastCause && reqID == a.st.LastRequestID {
		return
	}
	a.st.LastError, a.st.LastCause, a.st.LastRequestID = msg, cause, reqID
	a.healthDue = true
	a.saveState()
}

// saveState persists the state with the current lower bound of the time.
func (a *Agent) saveState() {
	if a.ks == nil || a.clk == nil {
		return
	}
	a.st.LastKnownGood = a.clk.Floor()
	if err := a.ks.SaveState(a.st); err != nil {
		a.log.Error("cannot save the state", "err", err)
		return
	}
	a.savedFloor = a.st.LastKnownGood
}

// hookOutputMax bounds the output of the OnRenew command kept and reported.
const hookOutputMax = 4096

// tail keeps the last max bytes written to it.
type tail struct {
	buf []byte
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// runHook runs Config.OnRenew after an acknowledged renewal. Its result goes into the next
// commit, the runtime status and, if it failed, the last error.
func (a *Agent) runHook(ctx context.Context, pair keystore.Pair) {
	if len(a.cfg.OnRenew) == 0 {
		return
	}
	hctx, cancel := context.WithTimeout(ctx, a.cfg.HookTimeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, a.cfg.OnRenew[0], a.cfg.OnRenew[1:]...)
	cmd.Env = append(os.Environ(),
		"HEARTH_DEVICE_ID="+a.cfg.DeviceID,
		"HEARTH_SERIAL="+pair.Serial(),
		"HEARTH_NOT_AFTER="+pair.Leaf().NotAfter.UTC().Format(time.RFC3339),
		"HEARTH_DIR="+a.cfg.Dir,
	)
	if a.cfg.ExportPEM {
		cmd.Env = append(cmd.Env,
			"HEARTH_CERT="+filepath.Join(a.cfg.Dir, "cert.pem"),
			"HEARTH_KEY="+filepath.Join(a.cfg.Dir, "key.pem"))
	}
	out := &tail{max: hookOutputMax}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	run := &protocol.HookRun{Output: string(bytes.ToValidUTF8(out.buf, nil))}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		run.ExitCode = exit.ExitCode()
	default:
		run.ExitCode = -1
		run.Output = protocol.Clip(err.Error(), hookOutputMax)
	}
	a.hook = run
	a.rt.Hook = run
	a.saveRuntime()
	a.emit(Event{Kind: EventHookFinished, Detail: strconv.Itoa(run.ExitCode)})
	if run.ExitCode != 0 {
		a.setLastError("", withCause(protocol.CauseHookFailed, fmt.Errorf("on-renew command exited with %d: %s", run.ExitCode, protocol.Clip(run.Output, 200))))
		a.log.Warn("on-renew command failed", "exit_code", run.ExitCode, "output", protocol.Clip(run.Output, 200))
		return
	}
	a.log.Info("on-renew command succeeded")
}

// lastCause returns the state's last cause for a health report: "" without an error, unknown
// for an error saved by an agent that recorded no cause.
func lastCause(st keystore.State) protocol.Cause {
	switch {
	case st.LastError == "":
		return ""
	case st.LastCause == "":
		return protocol.CauseUnknown
	}
	return protocol.Cause(st.LastCause)
}
