package hub

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/access"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
)

// clock is a hub clock the test moves by hand.
type clock struct{ t atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.t.Store(t.UnixNano()); return c }

func (c *clock) now() time.Time      { return time.Unix(0, c.t.Load()) }
func (c *clock) add(d time.Duration) { c.t.Add(int64(d)) }
func (c *clock) options() Options    { return Options{Version: "test", Now: c.now} }

// TestUserBrokerLoginBackoff: a hub user (added like `user add`) logging in to the hub's
// broker for the bridge API is behind the same per-source and per-name backoff as a
// configured admin (issue 15): after access.FreeFailures wrong passwords from one address,
// even the right password is refused from there, while the user still logs in from another
// address; the same holds for the configured admin. Real MQTT clients over TLS.
func TestUserBrokerLoginBackoff(t *testing.T) {
	clk := newClock(time.Now())
	h := runHub(t, hubkit.Config(t, ""), clk.options())
	if err := h.store.AddUser(t.Context(), inventory.User{Name: "vera", Role: "viewer", PasswordHash: testkit.PasswordHash(userPassword), CreatedAt: clk.now()}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ user, password, attacker, clean string }{
		{"vera", userPassword, "127.0.0.3", "127.0.0.4"},
		{"admin", hubkit.AdminPassword, "127.0.0.5", "127.0.0.6"},
	} {
		t.Run(tc.user, func(t *testing.T) {
			if _, err := clientFrom(t, h, tc.attacker, tc.user, tc.password); err != nil {
				t.Fatalf("the right password before any failure = %v, want accepted", err)
			}
			for i := range access.FreeFailures + 1 {
				if _, err := clientFrom(t, h, tc.attacker, tc.user, "wrong password"); err == nil {
					t.Fatalf("wrong password %d accepted", i+1)
				}
			}
			if _, err := clientFrom(t, h, tc.attacker, tc.user, tc.password); err == nil {
				t.Errorf("the right password from the source that failed %d times = accepted, want it held back", access.FreeFailures+1)
			}
			if _, err := clientFrom(t, h, tc.clean, tc.user, tc.password); err != nil {
				t.Errorf("the right password from another source = %v, want accepted: the backoff locked %s out", err, tc.user)
			}
			clk.add(access.FirstWait)
			if _, err := clientFrom(t, h, tc.attacker, tc.user, tc.password); err != nil {
				t.Errorf("the right password once the wait passed = %v, want accepted", err)
			}
		})
	}
}
