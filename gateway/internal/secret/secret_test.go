package secret

import (
	"fmt"
	"strings"
	"testing"
)

func TestToken(t *testing.T) {
	a, b := NewToken(), NewToken()
	if a == b {
		t.Fatalf("NewToken() returned %q twice", a)
	}
	if !strings.HasPrefix(a, TokenPrefix) || len(a) != len(TokenPrefix)+32 {
		t.Errorf("NewToken() = %q, want %s and 32 characters", a, TokenPrefix)
	}
	if !IsToken(a) || IsToken(a[:len(a)-1]) || IsToken(strings.ToUpper(a)) || IsToken("hst_guess") || IsToken("admin-secret") {
		t.Errorf("IsToken does not tell the token %q from other strings", a)
	}
	if _, err := HashPassword(a); err == nil {
		t.Errorf("HashPassword(a token) = nil error, want one")
	}
	if h := HashToken(a); h == HashToken(b) || h != HashToken(strings.Clone(a)) || len(h) != 64 {
		t.Errorf("HashToken is not a stable 64-hex-digit digest")
	}
}

func TestPassword(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, hash, pw string
		want           bool
	}{
		{"right", h, "correct horse", true},
		{"wrong", h, "correct horsE", false},
		{"empty", h, "", false},
		{"malformed", "pbkdf2-sha256$x$y$z", "correct horse", false},
		{"other scheme", strings.Replace(h, "pbkdf2-sha256", "md5", 1), "correct horse", false},
		{"too few iterations", "pbkdf2-sha256$1$AAAA$AAAA", "x", false},
	}
	for _, tt := range tests {
		if got := CheckPassword(tt.hash, tt.pw); got != tt.want {
			t.Errorf("%s: CheckPassword(%q, %q) = %v, want %v", tt.name, tt.hash, tt.pw, got, tt.want)
		}
	}
	if sh := StandIn(1000); !strings.HasPrefix(sh, "pbkdf2-sha256$1000$") || CheckPassword(sh, "") || CheckPassword(sh, "correct horse") || sh == StandIn(1000) {
		t.Errorf("StandIn(1000) = %q: want 1000 iterations, matching no password, fresh each time", sh)
	}
	if !strings.HasPrefix(StandIn(0), fmt.Sprintf("pbkdf2-sha256$%d$", passwordIterations)) {
		t.Errorf("StandIn(0) does not use the default iteration count")
	}
	if _, err := HashPassword("short"); err == nil {
		t.Error("HashPassword(\"short\") = nil error, want one")
	}
}
