package admin_test

import (
	"context"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/lifecycle"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// runMachine runs the device state machine on store until the test ends: the service's
// revocations go through it, as in the hub.
func runMachine(t testing.TB, store *inventory.Store, now func() time.Time) *lifecycle.Machine {
	t.Helper()
	m, err := lifecycle.New(lifecycle.Config{Store: store, Publisher: &testkit.Publisher{}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return m
}
