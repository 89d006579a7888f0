package lifecycle

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

func TestStepRevoke(t *testing.T) {
	now := t0
	base := State{Active: "a", Previous: "p", LastRequest: "r0", Proven: 3,
		Pending: &Pending{RequestID: "r1", Serial: "b", Expires: now.Add(time.Minute)},
		Command: &Command{ID: "c1", Deadline: now.Add(time.Hour)}}
	rv := inventory.Revocation{Reason: protocol.RevokeKeyCompromise}
	tests := []struct {
		name   string
		serial string
		want   State
		effect []Effect
	}{
		{"identity", "", State{},
			[]Effect{CommandSeen{ID: "c1", Expired: true}, RevokeCertificates{Revocation: rv, RequestID: "r1"}}},
		{"the pending certificate", "b", State{Active: "a", Previous: "p", LastRequest: "r0", Proven: 3, Command: base.Command},
			[]Effect{RevokeCertificates{Serial: "b", Revocation: rv, RequestID: "r1"}}},
		{"the active certificate", "a", State{Previous: "p", Pending: base.Pending, Command: base.Command},
			[]Effect{RevokeCertificates{Serial: "a", Revocation: rv}}},
		{"the previous certificate", "p", State{Active: "a", LastRequest: "r0", Proven: 3, Pending: base.Pending, Command: base.Command},
			[]Effect{RevokeCertificates{Serial: "p", Revocation: rv}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, effects := Rules{}.Step(base, RevokeRequested{Serial: tt.serial, Revocation: rv}, now)
			got.Sessions = nil
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.effect, effects); diff != "" {
				t.Errorf("effects (-want +got):\n%s", diff)
			}
		})
	}
}

// renewFunc is the issuance pipeline's part that matters here: a renewal on the authority of
// certificate replaces is refused once it is revoked, else recorded pending. started, if
// set, is closed when the pipeline begins and release awaited before it records.
func renewFunc(s *inventory.Store, id, req, serial, replaces string, started chan<- struct{}, release <-chan struct{}) IssueFunc {
	return func(ctx context.Context) (string, bool) {
		if started != nil {
			close(started)
			<-release
		}
		old, err := s.Certificate(ctx, replaces)
		if err != nil || old.Status == inventory.StatusRevoked {
			return "", false
		}
		at := time.Now().UTC()
		err = s.RecordIssuance(ctx, inventory.Issuance{
			Device:  inventory.Device{ID: id, Mechanism: inventory.MechanismAgent},
			Cert:    inventory.Certificate{Serial: serial, NotBefore: at, NotAfter: at.Add(time.Hour), Replaces: replaces, CreatedAt: at},
			Attempt: inventory.Attempt{RequestID: req, Reason: "command", StartedAt: at, FinishedAt: at},
		})
		return serial, err == nil
	}
}

// TestRevokeDuringIssuance is issue 12's race: a CSR is being signed when the device is
// revoked. The revocation waits for the issuance and revokes its certificate too, and the
// commit that follows is refused.
func TestRevokeDuringIssuance(t *testing.T) {
	s, _ := enrolled(t)
	f := start(t, s, time.Minute)
	var revoked []Revoked
	var mu sync.Mutex
	f.m.cfg.Hooks.Revoked = func(r Revoked) { mu.Lock(); revoked = append(revoked, r); mu.Unlock() }

	started, release := make(chan struct{}), make(chan struct{})
	f.m.SessionUp("d1", 1, "a")
	f.m.CSR("d1", 1, &protocol.CSR{RequestID: "r1"}, renewFunc(s, "d1", "r1", "b", "a", started, release))
	<-started
	type result struct {
		r   Revoked
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := f.m.Revoke(context.Background(), "d1", "", inventory.Revocation{Reason: protocol.RevokeKeyCompromise, Note: "stolen"})
		done <- result{r, err}
	}()
	close(release) // the signature completes after the revocation was asked for
	res := <-done
	if res.err != nil {
		t.Fatalf("Revoke() = %v", res.err)
	}
	if diff := cmp.Diff([]string{"a", "b"}, res.r.Serials); diff != "" || !res.r.Identity {
		t.Errorf("Revoke() serials (-want +got):\n%s identity %v", diff, res.r.Identity)
	}
	for _, serial := range []string{"a", "b"} {
		c, err := s.Certificate(context.Background(), serial)
		if err != nil || c.Status != inventory.StatusRevoked || c.RevokeCode != 1 {
			t.Errorf("certificate %s = %s code %d, %v; want revoked keyCompromise", serial, c.Status, c.RevokeCode, err)
		}
	}
	if d, _ := s.Device(context.Background(), "d1"); d.State != inventory.StateQuarantined {
		t.Errorf("device state = %q, want quarantined", d.State)
	}
	// The agent got "b" and commits it on a session that was already open: refused.
	f.m.SessionUp("d1", 2, "b")
	f.m.Commit("d1", 2, "b", &protocol.Commit{RequestID: "r1", Serial: "b", Outcome: protocol.OutcomeCommitted})
	st := f.inspect(t, "d1")
	if st.Active != "" || st.Pending != nil {
		t.Errorf("state after the commit: Active %q, Pending %+v; want none", st.Active, st.Pending)
	}
	acks := on[protocol.Ack](t, f.pub, f.topics.Device("d1", protocol.KindAck))
	if len(acks) != 1 || acks[0].Error == nil {
		t.Fatalf("acks = %+v, want one refusal", acks)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(revoked) != 1 {
		t.Errorf("Revoked hook called %d times, want 1", len(revoked))
	}
}

// TestRevokeRacesIssuance submits a renewal and a revocation of the same device at once, in
// whatever order the scheduler gives, many times over: whichever goes first, no certificate
// of the device survives unrevoked.
func TestRevokeRacesIssuance(t *testing.T) {
	s, _ := enrolled(t)
	f := start(t, s, time.Minute)
	ctx := context.Background()
	const devices = 40
	now := time.Now().UTC()
	for i := range devices {
		id := fmt.Sprintf("r%d", i)
		issue(t, s, id, "e", fmt.Sprintf("%xa", i), "", now)
		if _, err := s.Commit(ctx, id, "e", fmt.Sprintf("%xa", i), false, now); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range devices {
		id := fmt.Sprintf("r%d", i)
		wg.Go(func() {
			f.m.CSR(id, 1, &protocol.CSR{RequestID: "n"}, renewFunc(s, id, "n", fmt.Sprintf("%xb", i), fmt.Sprintf("%xa", i), nil, nil))
		})
		wg.Go(func() {
			if _, err := f.m.Revoke(ctx, id, "", inventory.Revocation{Reason: protocol.RevokeSuperseded}); err != nil {
				t.Errorf("Revoke(%s) = %v", id, err)
			}
		})
	}
	wg.Wait()
	for i := range devices {
		id := fmt.Sprintf("r%d", i)
		f.inspect(t, id) // every event of the device was applied
		certs, err := s.Certificates(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range certs {
			if c.Status != inventory.StatusRevoked {
				t.Errorf("device %s: certificate %s is %s after the revocation, want revoked", id, c.Serial, c.Status)
			}
		}
	}
}

func TestRevokeOneCertificate(t *testing.T) {
	s, _ := enrolled(t)
	f := start(t, s, time.Minute)
	ctx := context.Background()
	issue(t, s, "d2", "e", "c", "", time.Now().UTC())
	if _, err := f.m.Revoke(ctx, "d1", "c", inventory.Revocation{}); err == nil {
		t.Error("Revoke(d1, another device's certificate) = nil, want an error")
	}
	r, err := f.m.Revoke(ctx, "d1", "a", inventory.Revocation{Reason: protocol.RevokeCessationOfOperation})
	if err != nil || r.Identity || len(r.Serials) != 1 {
		t.Fatalf("Revoke(d1, a) = %+v, %v", r, err)
	}
	if d, _ := s.Device(ctx, "d1"); d.State == inventory.StateQuarantined {
		t.Error("revoking one certificate quarantined the device")
	}
	if st := f.inspect(t, "d1"); st.Active != "" {
		t.Errorf("Active = %q after revoking it, want none", st.Active)
	}
}
