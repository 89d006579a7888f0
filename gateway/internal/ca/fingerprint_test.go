package ca

import (
	"strings"
	"testing"
)

func TestFingerprint(t *testing.T) {
	c, _ := newTestCA(t)
	fp := c.Fingerprint()
	if len(fp) != 71 || !strings.HasPrefix(fp, "SHA256:") || strings.ToLower(fp[7:]) != fp[7:] {
		t.Fatalf("Fingerprint() = %q, want SHA256: and 64 lowercase hex digits", fp)
	}
	hexPart := fp[7:]
	var colons []string
	for i := 0; i < len(hexPart); i += 2 {
		colons = append(colons, strings.ToUpper(hexPart[i:i+2]))
	}
	tests := []struct {
		in, want string
	}{
		{fp, fp},
		{hexPart, fp},
		{"sha256:" + strings.ToUpper(hexPart), fp},
		{"SHA256:" + strings.Join(colons, ":"), fp},
		{"  " + fp + "\n", fp},
		{"SHA256:" + hexPart[2:], ""},
		{"SHA256:" + hexPart + "00", ""},
		{"SHA256:" + strings.Repeat("g", 64), ""},
		{"MD5:" + hexPart, ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, err := ParseFingerprint(tt.in)
		if got != tt.want || (tt.want == "") != (err != nil) {
			t.Errorf("ParseFingerprint(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
	// The same value as openssl prints.
	rootPath, _ := writeChain(t, c, t.TempDir())
	out, err := openssl(t, "x509", "-in", rootPath, "-noout", "-fingerprint", "-sha256")
	if err != nil {
		t.Fatalf("openssl x509 -fingerprint = %v\n%s", err, out)
	}
	_, val, _ := strings.Cut(strings.TrimSpace(out), "=")
	if got, err := ParseFingerprint(val); err != nil || got != fp {
		t.Errorf("ParseFingerprint(openssl %q) = %q, %v, want %q", val, got, err, fp)
	}
}
