package lifecycle

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// TestSessionRaces runs the session races of issue 10 through a running Machine and a real
// inventory, inside a synctest bubble: the broker's goroutines submit their events as they
// would (each connection's own events in order, connections interleaved), and once the
// machine is idle the device must be on the committed certificate, online exactly when a
// session is live, with one activation.
func TestSessionRaces(t *testing.T) {
	commit := func(m *Machine, conn Conn) {
		m.Commit("d1", conn, "b", &protocol.Commit{RequestID: "r1", Serial: "b", Outcome: protocol.OutcomeCommitted})
	}
	tests := []struct {
		name   string
		events func(m *Machine) // after the CSR of r1 (certificate b) on connection 1 (certificate a)
		online bool
	}{
		{"late online of the old connection after the commit", func(m *Machine) {
			m.SessionUp("d1", 3, "b")
			commit(m, 3)
			m.SessionUp("d1", 2, "a")
			m.SessionDown("d1", 1)
		}, true},
		{"late offline of the old connection after the commit", func(m *Machine) {
			m.SessionUp("d1", 2, "b")
			commit(m, 2)
			m.SessionDown("d1", 1)
		}, true},
		{"takeover: the new session up before the old one down", func(m *Machine) {
			m.SessionUp("d1", 2, "b")
			m.SessionDown("d1", 1)
			commit(m, 2)
		}, true},
		{"two sessions at once, the old one closing last", func(m *Machine) {
			m.SessionUp("d1", 2, "b")
			commit(m, 2)
			m.SessionUp("d1", 3, "a")
			m.SessionDown("d1", 2)
			m.SessionDown("d1", 3)
			m.SessionDown("d1", 1)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := enrolled(t)
			synctest.Test(t, func(t *testing.T) {
				f := start(t, s, time.Minute)
				f.m.SessionUp("d1", 1, "a")
				f.m.CSR("d1", 1, &protocol.CSR{RequestID: "r1"}, issueFunc(t, s, "d1", "r1", "b", "a", time.Now().UTC()))
				tt.events(f.m)
				synctest.Wait()
				st, err := f.m.Inspect(context.Background(), "d1")
				if err != nil {
					t.Fatal(err)
				}
				if st.Active != "b" || st.Online() != tt.online {
					t.Errorf("state: Active %q, Online %v; want b, %v", st.Active, st.Online(), tt.online)
				}
				if got := activeSerial(t, s, "d1"); got != "b" {
					t.Errorf("inventory active = %q, want b", got)
				}
				if n := countEvents(t, s, protocol.EventCertActivated); n != 2 {
					t.Errorf("cert.activated events = %d, want 2 (enrollment and commit)", n)
				}
				d, err := s.Device(context.Background(), "d1")
				if err != nil || d.Online != tt.online {
					t.Errorf("inventory online = %v (%v), want %v", d.Online, err, tt.online)
				}
				if c, err := s.Certificate(context.Background(), "a"); err != nil || c.Status != inventory.StatusSuperseded {
					t.Errorf("old certificate: %v (%v), want superseded", c.Status, err)
				}
			})
		})
	}
}
