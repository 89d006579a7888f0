// Package secret makes and checks the hub's shared secrets: enrollment tokens and admin
// passwords. Tokens are 160 random bits, so a plain SHA-256 is a safe stored form; passwords
// are chosen by people, so they are stored as salted PBKDF2-SHA256.
//
// Nothing here keeps state; every function is safe for concurrent use.
package secret

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// TokenPrefix starts every enrollment token, so a token pasted in the wrong place is
// recognisable (and findable by secret scanners).
const TokenPrefix = "hst_"

var tokenEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewToken returns a fresh enrollment token: TokenPrefix and 32 base32 characters
// (160 random bits).
func NewToken() string {
	b := make([]byte, 20)
	rand.Read(b)
	return TokenPrefix + strings.ToLower(tokenEncoding.EncodeToString(b))
}

// IsToken reports whether s has the form of an enrollment token (TokenPrefix and 32
// lowercase base32 characters), whether or not any hub issued it. A login whose password has
// this form is an enrollment, and no admin password may have it (HashPassword refuses one).
func IsToken(s string) bool {
	body, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok || len(body) != 32 {
		return false
	}
	_, err := tokenEncoding.DecodeString(strings.ToUpper(body))
	return err == nil && strings.ToLower(body) == body
}

// HashToken returns the stored form of a token: lowercase hex SHA-256.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// passwordIterations is OWASP's 2023 figure for PBKDF2-HMAC-SHA256.
const passwordIterations = 600_000

// HashPassword returns the stored form of an admin password:
// "pbkdf2-sha256$<iterations>$<salt b64>$<key b64>".
func HashPassword(password string) (string, error) {
	return HashPasswordIterations(password, passwordIterations)
}

// HashPasswordIterations is HashPassword with another iteration count (1,000 to 10,000,000,
// what CheckPassword accepts): for tests, which cannot afford 600,000 under the race
// detector.
func HashPasswordIterations(password string, iterations int) (string, error) {
	if iterations < 1000 || iterations > 10_000_000 {
		return "", fmt.Errorf("iterations %d out of range", iterations)
	}
	if len(password) < 8 {
		return "", errors.New("password must have at least 8 characters")
	}
	if IsToken(password) {
		return "", errors.New("password has the form of an enrollment token (" + TokenPrefix + "…): logins with such a password are enrollments")
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	key, err := pbkdf2.Key(sha256.New, password, salt, iterations, 32)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("pbkdf2-sha256$%d$%s$%s", iterations, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// StandIn returns a hash in HashPassword's form, with the given iteration count (the
// default when out of range), that no password matches: a random salt and a random key.
// Checking a password against it costs what checking against a real hash of that count
// costs, so a login for a name that has no hash can take the same path and the same time.
func StandIn(iterations int) string {
	if iterations < 1000 || iterations > 10_000_000 {
		iterations = passwordIterations
	}
	salt, key := make([]byte, 16), make([]byte, 32)
	rand.Read(salt)
	rand.Read(key)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("pbkdf2-sha256$%d$%s$%s", iterations, enc.EncodeToString(salt), enc.EncodeToString(key))
}

// CheckPassword reports whether password matches a hash made by HashPassword. A malformed
// hash never matches.
func CheckPassword(hash, password string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return false
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1000 || iter > 10_000_000 {
		return false
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[2])
	want, err2 := enc.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}
