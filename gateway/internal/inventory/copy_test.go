package inventory

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// seedEveryTable writes at least one row into every table of the inventory, booleans on
// and off, so that a copy of it leaves nothing out.
func seedEveryTable(t *testing.T, s *Store) {
	t.Helper()
	ctx := t.Context()
	for i := range 5 {
		mustIssue(t, s, issuance(fmt.Sprintf("plug-%d", i), fmt.Sprintf("a%d", i), fmt.Sprintf("req-%d", i), t0.Add(time.Duration(i)*time.Minute)))
	}
	if err := s.SetOnline(ctx, "plug-1", true, t0); err != nil {
		t.Fatal(err)
	}
	mustCreateCampaign(t, s, campaignOf(t, s, "c", 4, 2))
	if err := s.RecordCommand(ctx, commandOf("dev-001", "cmd-1", t0)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, Token{Hash: "tok", DeviceID: "cam-1", Name: "Camera", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, User{Name: "alice", Role: "admin", PasswordHash: "h", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, Session{Hash: "sess", User: "alice", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateProposal(ctx, Proposal{ID: "chg-1", Kind: "policy", Content: "classes: []", ProposedBy: "user:alice", ProposedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSetting(ctx, "crl_number", "7"); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveLockouts(ctx, []Lockout{{Kind: "source", Key: "192.0.2.7", Count: 5, Last: t0, Until: t0.Add(time.Minute),
		Expires: t0.Add(time.Hour)}}, t0); err != nil {
		t.Fatal(err)
	}
}

// TestCopyToPostgres moves a SQLite inventory into PostgreSQL: every table's rows arrive,
// the fleet, the campaigns, the users and the audit log read the same on both sides, the
// chain verifies, and the target goes on from where the source stopped. A second copy into
// the now full target is refused and writes nothing.
func TestCopyToPostgres(t *testing.T) {
	ctx := t.Context()
	src, err := Open(ctx, filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	seedEveryTable(t, src)
	dst, err := OpenPostgres(ctx, PostgresOptions{DSN: testkit.SharedPostgres(t).NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()

	rep, err := src.CopyTo(ctx, dst)
	if err != nil {
		t.Fatalf("CopyTo() = %v", err)
	}
	for _, table := range copyTables {
		if rep.Rows[table] == 0 {
			t.Errorf("CopyTo() copied no row of %s; the seed writes every table", table)
		}
	}
	for name, read := range map[string]func(*Store) (any, error){
		"fleet":     func(s *Store) (any, error) { return s.Fleet(ctx) },
		"campaigns": func(s *Store) (any, error) { return s.Campaigns(ctx) },
		"users":     func(s *Store) (any, error) { return s.Users(ctx) },
		"events":    func(s *Store) (any, error) { return s.Events(ctx, EventFilter{}) },
		"attempts":  func(s *Store) (any, error) { return s.Attempts(ctx, "plug-3", 0) },
		"certs":     func(s *Store) (any, error) { return s.Certificates(ctx, "plug-2") },
		"session":   func(s *Store) (any, error) { return s.Session(ctx, "sess", t0) },
		"setting":   func(s *Store) (any, error) { return s.Setting(ctx, "crl_number") },
	} {
		want, err := read(src)
		if err != nil {
			t.Fatalf("%s of the source: %v", name, err)
		}
		got, err := read(dst)
		if err != nil {
			t.Fatalf("%s of the target: %v", name, err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s differ after the copy (-source +target):\n%s", name, d)
		}
	}
	// The target continues: the next event follows the copied chain, the next campaign gets
	// the next seq.
	mustIssue(t, dst, issuance("plug-9", "b9", "req-9", t0.Add(time.Hour)))
	mustCreateCampaign(t, dst, campaignOf(t, dst, "second", 1, 0))
	if err := dst.VerifyAudit(ctx); err != nil {
		t.Errorf("VerifyAudit() after writing on the target = %v", err)
	}
	camps, err := dst.Campaigns(ctx)
	if err != nil || len(camps) != 2 || camps[1].ID != "second" {
		t.Errorf("Campaigns() on the target = %+v, %v, want c then second", camps, err)
	}

	before := rep.Rows["events"]
	if _, err := src.CopyTo(ctx, dst); !errors.Is(err, ErrTargetNotEmpty) {
		t.Errorf("CopyTo(a non-empty target) = %v, want ErrTargetNotEmpty", err)
	}
	if n, _ := countRows(ctx, dst.r, "events"); n != before+2 {
		t.Errorf("events on the target after the refused copy = %d, want %d", n, before+2)
	}
}
