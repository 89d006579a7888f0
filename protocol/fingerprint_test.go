package protocol

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"
)

func TestFingerprint(t *testing.T) {
	b, _ := pem.Decode([]byte(chainPEM))
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.Raw)
	hexDigits := hex.EncodeToString(sum[:])
	want := "SHA256:" + hexDigits
	f := FingerprintOf(leaf)
	if f.String() != want || f.Hex() != hexDigits {
		t.Fatalf("FingerprintOf(leaf) = %s (hex %s), want %s", f, f.Hex(), want)
	}
	var colons []string
	for i := 0; i < len(hexDigits); i += 2 {
		colons = append(colons, strings.ToUpper(hexDigits[i:i+2]))
	}
	tests := []struct {
		in string
		ok bool
	}{
		{want, true},
		{hexDigits, true},
		{"sha256:" + strings.ToUpper(hexDigits), true},
		{"SHA256:" + strings.Join(colons, ":"), true}, // openssl x509 -fingerprint -sha256
		{"  " + want + "\n", true},
		{"SHA256:" + hexDigits[2:], false},
		{"SHA256:" + hexDigits + "00", false},
		{"SHA256:" + strings.Repeat("g", 64), false},
		{"MD5:" + hexDigits, false},
		{"SHA1:" + hexDigits, false},
		{"", false},
	}
	for _, tt := range tests {
		got, err := ParseFingerprint(tt.in)
		if (err == nil) != tt.ok || tt.ok && got != f || !tt.ok && got != (Fingerprint{}) {
			t.Errorf("ParseFingerprint(%q) = %s, %v; want ok=%v (%s)", tt.in, got, err, tt.ok, want)
		}
	}
	text, err := f.MarshalText()
	if err != nil || string(text) != want {
		t.Errorf("MarshalText() = %q, %v; want %q", text, err, want)
	}
	var back Fingerprint
	if err := back.UnmarshalText(text); err != nil || back != f {
		t.Errorf("UnmarshalText(%q) = %s, %v; want %s", text, back, err, f)
	}
	if err := back.UnmarshalText([]byte("SHA256:00")); err == nil {
		t.Error("UnmarshalText(short) = nil error, want one")
	}
}
