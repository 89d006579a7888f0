package inventory

import (
	"errors"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

func TestUsers(t *testing.T) {
	s := openTest(t)
	ctx := WithActor(t.Context(), "cli:root")
	now := time.Unix(1_800_000_000, 0).UTC()
	if err := s.AddUser(ctx, User{Name: "alice", Role: "admin", PasswordHash: "h", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	for name, u := range map[string]User{
		"duplicate": {Name: "alice", Role: "viewer", PasswordHash: "h", CreatedAt: now},
		"bad role":  {Name: "bob", Role: "root", PasswordHash: "h", CreatedAt: now},
		"bad name":  {Name: "bob smith", Role: "viewer", PasswordHash: "h", CreatedAt: now},
		"no hash":   {Name: "bob", Role: "viewer", CreatedAt: now},
	} {
		if err := s.AddUser(ctx, u); err == nil {
			t.Errorf("AddUser(%s: %+v) = nil, want an error", name, u)
		}
	}
	if err := s.AddUser(ctx, User{Name: "alice", Role: "viewer", PasswordHash: "h", CreatedAt: now}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("AddUser(alice again) = %v, want ErrDuplicate", err)
	}
	prev, err := s.SetUserRole(WithActor(t.Context(), "user:alice"), "alice", "viewer", now.Add(time.Minute))
	if err != nil || prev != "admin" {
		t.Fatalf("SetUserRole(alice, viewer) = %q, %v, want admin, nil", prev, err)
	}
	if u, err := s.User(t.Context(), "alice"); err != nil || u.Role != "viewer" || u.PasswordHash != "h" {
		t.Errorf("User(alice) = %+v, %v, want a viewer", u, err)
	}
	if _, err := s.SetUserRole(ctx, "nobody", "viewer", now); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetUserRole(nobody) = %v, want ErrNotFound", err)
	}
	se := Session{Hash: "sess1", User: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateSession(t.Context(), se); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Session(t.Context(), "sess1", now.Add(time.Minute)); err != nil || got.User != "alice" {
		t.Errorf("Session(sess1) = %+v, %v, want alice's", got, err)
	}
	if _, err := s.Session(t.Context(), "sess1", now.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Session(sess1) at its expiry = %v, want ErrNotFound", err)
	}
	if err := s.CreateSession(t.Context(), Session{Hash: "sess1", User: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err == nil {
		t.Error("CreateSession(same hash) = nil, want an error")
	}
	if err := s.RemoveUser(ctx, "alice", now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(t.Context(), "sess1", now); !errors.Is(err, ErrNotFound) {
		t.Errorf("Session of a removed user = %v, want ErrNotFound", err)
	}
	if users, err := s.Users(t.Context()); err != nil || len(users) != 0 {
		t.Errorf("Users() = %v, %v, want none", users, err)
	}
	evs, err := s.Events(t.Context(), EventFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, string(e.Kind)+" by "+e.Actor+": "+e.Data["user"]+" "+e.Data["role"]+" "+e.Data["previous"])
	}
	want := map[string]bool{
		string(protocol.EventUserAdded) + " by cli:root: alice admin ":               true,
		string(protocol.EventUserRoleChanged) + " by user:alice: alice viewer admin": true,
		string(protocol.EventUserRemoved) + " by cli:root: alice viewer ":            true,
	}
	if len(got) != len(want) {
		t.Fatalf("events = %q, want %d", got, len(want))
	}
	for _, g := range got {
		if !want[g] {
			t.Errorf("event %q not expected (want %v)", g, want)
		}
	}
	if err := s.VerifyAudit(t.Context()); err != nil {
		t.Errorf("VerifyAudit = %v", err)
	}
}

func TestProposals(t *testing.T) {
	s := openTest(t)
	now := time.Unix(1_800_000_000, 0).UTC()
	p := Proposal{ID: "chg-1", Kind: "policy", Content: "classes: []", Hash: "abc", Summary: "lifetime 30d → 7d",
		ProposedBy: "user:alice", ProposedAt: now}
	if err := s.CreateProposal(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateProposal(t.Context(), p); err == nil {
		t.Error("CreateProposal(same id) = nil, want an error")
	}
	if err := s.DecideProposal(t.Context(), "chg-1", ProposalApplied, "user:bob", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.DecideProposal(t.Context(), "chg-1", ProposalRejected, "user:carol", now.Add(2*time.Minute)); !errors.Is(err, ErrProposalClosed) {
		t.Errorf("DecideProposal(decided) = %v, want ErrProposalClosed", err)
	}
	if err := s.DecideProposal(t.Context(), "chg-9", ProposalApplied, "user:bob", now); !errors.Is(err, ErrNotFound) {
		t.Errorf("DecideProposal(unknown) = %v, want ErrNotFound", err)
	}
	got, err := s.Proposal(t.Context(), "chg-1")
	if err != nil || got.State != ProposalApplied || got.DecidedBy != "user:bob" || got.ProposedBy != "user:alice" || got.Content != p.Content {
		t.Errorf("Proposal(chg-1) = %+v, %v, want applied by user:bob", got, err)
	}
	list, err := s.Proposals(t.Context(), 10)
	if err != nil || len(list) != 1 {
		t.Errorf("Proposals() = %v, %v, want one", list, err)
	}
	evs, _ := s.Events(t.Context(), EventFilter{Limit: 10})
	kinds := map[protocol.EventType]string{}
	for _, e := range evs {
		kinds[e.Kind] = e.Actor
	}
	if kinds[protocol.EventChangeProposed] != "user:alice" || kinds[protocol.EventChangeApproved] != "user:bob" {
		t.Errorf("audit actors = %v, want proposed by user:alice, approved by user:bob", kinds)
	}
}
