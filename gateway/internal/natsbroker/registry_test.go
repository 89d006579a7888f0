package natsbroker

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/gateway/internal/broker"
)

// record is a Sessions observer that keeps the calls in order.
type record struct{ calls []string }

func (r *record) SessionUp(id broker.Identity)   { r.calls = append(r.calls, "up "+id.Serial) }
func (r *record) Subscribed(id broker.Identity)  { r.calls = append(r.calls, "subscribed "+id.Serial) }
func (r *record) SessionDown(id broker.Identity) { r.calls = append(r.calls, "down "+id.Serial) }

func dev(conn uint64, serial string, expired bool) session {
	return session{id: broker.Identity{Role: broker.RoleDevice, DeviceID: "hall", Serial: serial, Conn: conn, Expired: expired}}
}

func TestRegistry(t *testing.T) {
	obs := &record{}
	r := newRegistry(obs)
	old, renewed, recovery := dev(1, "aa", false), dev(2, "bb", false), dev(3, "cc", true)
	if !r.up(old, where{server: "n1", cid: 7}) || r.up(old, where{server: "n1", cid: 7}) {
		t.Fatal("up: a new session must be recorded once")
	}
	r.up(renewed, where{}) // promoted by a message before its connect event
	r.up(renewed, where{server: "n2", cid: 9})
	r.up(recovery, where{server: "n2", cid: 10})
	if s, _, _ := r.newest("hall", false); s.id.Conn != 3 {
		t.Errorf("newest = conn %d, want 3", s.id.Conn)
	}
	r.down(recovery)
	if s, now, _ := r.newest("hall", true); s.id.Conn != 2 || !now {
		t.Errorf("newest(state) = conn %d (subscribed now %v), want conn 2 subscribed now", s.id.Conn, now)
	}
	if _, now, _ := r.newest("hall", true); now {
		t.Error("a second state subscribed the session again")
	}
	all, excess := r.sessions("hall", 1)
	if diff := cmp.Diff([]where{{"n1", 7}, {"n2", 9}}, all, cmp.AllowUnexported(where{})); diff != "" {
		t.Errorf("sessions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]where{{"n1", 7}}, excess, cmp.AllowUnexported(where{})); diff != "" {
		t.Errorf("excess beyond 1 (-want +got):\n%s", diff)
	}
	if n := r.serverGone("n2"); n != 1 {
		t.Errorf("serverGone(n2) = %d, want 1", n)
	}
	if !r.online("hall") {
		t.Error("online(hall) = false with its session on n1 up")
	}
	r.down(old)
	if r.online("hall") {
		t.Error("online(hall) = true with no session left")
	}
	// The recovery session is never told to the observer.
	want := []string{"up aa", "up bb", "subscribed bb", "down bb", "down aa"}
	if diff := cmp.Diff(want, obs.calls); diff != "" {
		t.Errorf("observer calls (-want +got):\n%s", diff)
	}
}

func TestOnlyAdmin(t *testing.T) {
	r := newRegistry(nil)
	admin := func(conn uint64, name string) session {
		return session{id: broker.Identity{Role: broker.RoleAdmin, Username: name, Conn: conn}}
	}
	if _, ok := r.onlyAdmin(); ok {
		t.Error("onlyAdmin with none online = ok")
	}
	r.up(admin(1, "ha"), where{server: "n1", cid: 1})
	if s, ok := r.onlyAdmin(); !ok || s.id.Username != "ha" {
		t.Errorf("onlyAdmin = %+v, %v; want ha", s, ok)
	}
	r.up(admin(2, "ops"), where{server: "n1", cid: 2})
	if _, ok := r.onlyAdmin(); ok {
		t.Error("onlyAdmin with two admins online = ok; the sender is unknown")
	}
	r.down(admin(1, "ha"))
	if s, ok := r.onlyAdmin(); !ok || s.id.Username != "ops" {
		t.Errorf("onlyAdmin = %+v, %v; want ops", s, ok)
	}
}
