package inventory

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hearth-pki/hearth/protocol"
)

func TestCheckToken(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	exp := t0.Add(24 * time.Hour)
	for _, tok := range []Token{
		{Hash: "fresh", DeviceID: "plug-1", Name: "Kitchen", Family: "plug", CreatedAt: t0, ExpiresAt: exp},
		{Hash: "spent", DeviceID: "plug-1", CreatedAt: t0, ExpiresAt: exp},
	} {
		if err := s.CreateToken(ctx, tok); err != nil {
			t.Fatalf("CreateToken(%q) = %v", tok.Hash, err)
		}
	}
	in := issuance("plug-1", "01", "r1", t0)
	in.TokenHash = "spent"
	mustIssue(t, s, in)

	for _, tc := range []struct {
		name, device, hash string
		now                time.Time
		want               error
	}{
		{"valid", "plug-1", "fresh", t0, nil},
		{"valid one second before expiry", "plug-1", "fresh", exp.Add(-time.Second), nil},
		{"expired at expiry", "plug-1", "fresh", exp, ErrTokenExpired},
		{"other device", "plug-2", "fresh", t0, ErrTokenInvalid},
		{"unknown hash", "plug-1", "nope", t0, ErrTokenInvalid},
		{"used", "plug-1", "spent", t0, ErrTokenUsed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.CheckToken(ctx, tc.device, tc.hash, tc.now); !errors.Is(err, tc.want) {
				t.Errorf("CheckToken(%q, %q, %v) = %v, want %v", tc.device, tc.hash, tc.now, err, tc.want)
			}
		})
	}
	// CheckToken does not consume: a second check still passes.
	if err := s.CheckToken(ctx, "plug-1", "fresh", t0); err != nil {
		t.Errorf("CheckToken(second time) = %v, want nil", err)
	}

	toks, err := s.Tokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Token{
		{Hash: "fresh", DeviceID: "plug-1", Name: "Kitchen", Family: "plug", CreatedAt: t0, ExpiresAt: exp},
		{Hash: "spent", DeviceID: "plug-1", CreatedAt: t0, ExpiresAt: exp, UsedAt: t0},
	}
	if diff := cmp.Diff(want, toks); diff != "" {
		t.Errorf("Tokens() (-want +got):\n%s", diff)
	}
}

func TestTokenSingleUseAndExpiry(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	if err := s.CreateToken(ctx, Token{Hash: "h", DeviceID: "plug-1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, Token{Hash: "late", DeviceID: "plug-1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	first := issuance("plug-1", "01", "r1", t0.Add(time.Minute))
	first.TokenHash = "h"
	second := issuance("plug-1", "02", "r2", t0.Add(2*time.Minute))
	second.TokenHash = "h"
	late := issuance("plug-1", "03", "r3", t0.Add(time.Hour))
	late.TokenHash = "late"
	for _, tc := range []struct {
		name string
		in   Issuance
		want error
	}{
		{"first use", first, nil},
		{"second use", second, ErrTokenUsed},
		{"expired", late, ErrTokenExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.RecordIssuance(ctx, tc.in); !errors.Is(err, tc.want) {
				t.Errorf("RecordIssuance(token %q) = %v, want %v", tc.in.TokenHash, err, tc.want)
			}
		})
	}
}

func TestCreateTokenRefusals(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	ok := Token{Hash: "h", DeviceID: "d", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.CreateToken(ctx, ok); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tok  Token
		want error
	}{
		{"duplicate hash", ok, ErrDuplicate},
		{"no hash", Token{DeviceID: "d", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}, ErrInvalid},
		{"no device", Token{Hash: "x", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}, ErrInvalid},
		{"expires before creation", Token{Hash: "x", DeviceID: "d", CreatedAt: t0, ExpiresAt: t0}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.CreateToken(ctx, tc.tok); !errors.Is(err, tc.want) {
				t.Errorf("CreateToken(%+v) = %v, want %v", tc.tok, err, tc.want)
			}
		})
	}
	evs, _ := s.Events(ctx, EventFilter{Kind: protocol.EventTokenCreated})
	if len(evs) != 1 || evs[0].Data["expires_at"] != "2026-03-01T13:00:00Z" {
		t.Errorf("token.created events = %+v, want one expiring 2026-03-01T13:00:00Z", evs)
	}
}
