package ca

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strconv"
)

// Key file format constants; see the package documentation.
const (
	keyBlockType  = "HEARTH ENCRYPTED PRIVATE KEY"
	keyVersion    = "1"
	keyKDF        = "PBKDF2-SHA256"
	keyCipher     = "AES-256-GCM"
	saltSize      = 16
	nonceSize     = 12
	derivedKeyLen = 32

	// DefaultIterations is the PBKDF2 iteration count written into new key
	// files (OWASP 2023 guidance for PBKDF2-HMAC-SHA256).
	DefaultIterations = 600_000

	// MinIterations is the lowest count InitWithIterations accepts.
	MinIterations = 1000

	// maxIterations bounds the count read from a file so a damaged header
	// cannot make Load run for minutes.
	maxIterations = 10_000_000
)

// kdfParams are the key-derivation inputs shared by the key files of one CA.
type kdfParams struct {
	salt       []byte
	iterations int
}

// newKDFParams returns fresh parameters with a random salt.
func newKDFParams(iterations int) kdfParams {
	return kdfParams{salt: randomBytes(saltSize), iterations: iterations}
}

// deriveKey runs PBKDF2 over the passphrase.
func deriveKey(passphrase []byte, p kdfParams) ([]byte, error) {
	k, err := pbkdf2.Key(sha256.New, string(passphrase), p.salt, p.iterations, derivedKeyLen)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	return k, nil
}

// keyAAD is the additional authenticated data binding the headers to the
// ciphertext.
func keyAAD(role string, p kdfParams) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Version: %s\n", keyVersion)
	fmt.Fprintf(&b, "Key: %s\n", role)
	fmt.Fprintf(&b, "KDF: %s\n", keyKDF)
	fmt.Fprintf(&b, "Iterations: %d\n", p.iterations)
	fmt.Fprintf(&b, "Salt: %s\n", base64.StdEncoding.EncodeToString(p.salt))
	fmt.Fprintf(&b, "Cipher: %s\n", keyCipher)
	return b.Bytes()
}

// encryptKey returns the PEM key file for key under the derived key kek.
func encryptKey(key crypto.Signer, role string, kek []byte, p kdfParams) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal %s key: %w", role, err)
	}
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	nonce := randomBytes(nonceSize)
	block := &pem.Block{
		Type: keyBlockType,
		Headers: map[string]string{
			"Version":    keyVersion,
			"Key":        role,
			"KDF":        keyKDF,
			"Iterations": strconv.Itoa(p.iterations),
			"Salt":       base64.StdEncoding.EncodeToString(p.salt),
			"Cipher":     keyCipher,
			"Nonce":      base64.StdEncoding.EncodeToString(nonce),
		},
		Bytes: aead.Seal(nil, nonce, der, keyAAD(role, p)),
	}
	return pem.EncodeToMemory(block), nil
}

// encryptedKey is a parsed, not yet decrypted, key file.
type encryptedKey struct {
	kdf        kdfParams
	nonce      []byte
	ciphertext []byte
}

// parseKeyFile checks the structure of a key file for role without any
// cryptography, so it is cheap on junk input.
func parseKeyFile(data []byte, role string) (*encryptedKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: %s key: no PEM block", ErrCorrupt, role)
	}
	if block.Type != keyBlockType {
		return nil, fmt.Errorf("%w: %s key: PEM type %q, want %q", ErrCorrupt, role, block.Type, keyBlockType)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: %s key: data after the PEM block", ErrCorrupt, role)
	}
	h := block.Headers
	for name, want := range map[string]string{"Version": keyVersion, "Key": role, "KDF": keyKDF, "Cipher": keyCipher} {
		if h[name] != want {
			return nil, fmt.Errorf("%w: %s key: header %s is %q, want %q", ErrCorrupt, role, name, h[name], want)
		}
	}
	iter, err := strconv.Atoi(h["Iterations"])
	if err != nil || iter < 1 || iter > maxIterations {
		return nil, fmt.Errorf("%w: %s key: iterations %q not in 1..%d", ErrCorrupt, role, h["Iterations"], maxIterations)
	}
	salt, err := base64.StdEncoding.DecodeString(h["Salt"])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return nil, fmt.Errorf("%w: %s key: salt must be 8..64 bytes of base64", ErrCorrupt, role)
	}
	nonce, err := base64.StdEncoding.DecodeString(h["Nonce"])
	if err != nil || len(nonce) != nonceSize {
		return nil, fmt.Errorf("%w: %s key: nonce must be %d bytes of base64", ErrCorrupt, role, nonceSize)
	}
	return &encryptedKey{kdf: kdfParams{salt: salt, iterations: iter}, nonce: nonce, ciphertext: block.Bytes}, nil
}

// decrypt opens the key with the derived key kek (from deriveKey over
// k.kdf).
func (k *encryptedKey) decrypt(kek []byte, role string) (crypto.Signer, error) {
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	der, err := aead.Open(nil, k.nonce, k.ciphertext, keyAAD(role, k.kdf))
	if err != nil {
		return nil, fmt.Errorf("%s key: %w", role, ErrWrongPassphrase)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s key: PKCS#8: %v", ErrCorrupt, role, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %s key: %T is not a signer", ErrCorrupt, role, key)
	}
	return s, nil
}

// decryptKey parses and decrypts one key file. It is what Load does for
// each key, without the derived-key reuse; maxIter lets fuzzing stay fast.
func decryptKey(data []byte, role string, passphrase []byte, maxIter int) (crypto.Signer, error) {
	k, err := parseKeyFile(data, role)
	if err != nil {
		return nil, err
	}
	if k.kdf.iterations > maxIter {
		return nil, fmt.Errorf("%w: %s key: %d iterations above limit %d", ErrCorrupt, role, k.kdf.iterations, maxIter)
	}
	kek, err := deriveKey(passphrase, k.kdf)
	if err != nil {
		return nil, err
	}
	return k.decrypt(kek, role)
}

func newGCM(kek []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}

// randomBytes returns n bytes from crypto/rand, which never fails (Go 1.24+).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
