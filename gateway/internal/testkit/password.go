package testkit

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// PasswordHash returns a hash of password in secret.HashPassword's format with the fewest
// iterations secret.CheckPassword accepts, so tests that log in many times stay fast (the
// real 600,000 take a tenth of a second each, ten times more under the race detector).
func PasswordHash(password string) string {
	salt := []byte("testkit-salt-16b")
	key, err := pbkdf2.Key(sha256.New, password, salt, 1000, 32)
	if err != nil {
		panic(err)
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("pbkdf2-sha256$%d$%s$%s", 1000, enc.EncodeToString(salt), enc.EncodeToString(key))
}
