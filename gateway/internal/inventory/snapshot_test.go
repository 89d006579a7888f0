package inventory

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestSnapshot(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(ctx, filepath.Join(dir, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	if err := s.CreateToken(ctx, Token{Hash: "h1", DeviceID: "cam", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(dir, "backup", "hearth-snapshot.db")
	if err := s.Snapshot(ctx, snap); err != nil {
		t.Fatalf("Snapshot() = %v", err)
	}
	// The hub keeps writing; the snapshot keeps what it had.
	if err := s.CreateToken(ctx, Token{Hash: "h2", DeviceID: "cam", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	c, err := Open(ctx, snap)
	if err != nil {
		t.Fatalf("open snapshot: %v", err)
	}
	defer c.Close()
	toks, err := c.Tokens(ctx)
	if err != nil || len(toks) != 1 || toks[0].Hash != "h1" {
		t.Errorf("snapshot tokens = %+v, %v; want exactly h1", toks, err)
	}
	if err := c.VerifyAudit(ctx); err != nil {
		t.Errorf("snapshot audit: %v", err)
	}
}

func TestTokenByHash(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	if err := s.CreateToken(ctx, Token{Hash: "h1", DeviceID: "cam", Name: "Cam", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if tok, err := s.Token(ctx, "h1"); err != nil || tok.DeviceID != "cam" || tok.Name != "Cam" {
		t.Errorf("Token(h1) = %+v, %v", tok, err)
	}
	if _, err := s.Token(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Token(nope) = %v, want ErrNotFound", err)
	}
}
