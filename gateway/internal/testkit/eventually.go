package testkit

import (
	"fmt"
	"testing"
	"time"
)

// Eventually fails the test unless cond reports true within timeout. It checks cond at once,
// then again after pauses that grow from 1 ms to 50 ms: the pauses only space the checks.
// The assertion is cond itself; timeout is a guard against a hang, never a measurement, so
// give it generously. The failure message is format and args, followed by the timeout; args
// are formatted only then, so a [Lazy] among them reports the state at the moment of failure.
//
// Eventually works inside a testing/synctest bubble too, where its pauses take no real time.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s (not within %s)", fmt.Sprintf(format, args...), timeout)
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// Lazy is a message argument computed when it is formatted: Eventually(t, d, cond,
// "state = %v", testkit.Lazy(func() string { ... })) reports the state at the timeout, not at
// the call.
type Lazy func() string

// String returns f().
func (f Lazy) String() string { return f() }
