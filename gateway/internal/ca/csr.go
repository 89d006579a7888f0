package ca

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/hearth-pki/hearth/protocol"
)

// ErrIdentity is wrapped by CheckCSRIdentity's errors.
var ErrIdentity = errors.New("csr names another device")

// ParseCSR decodes a PEM certificate request and checks its signature (proof of possession of
// its key). The errors say what to fix; a private key pasted by mistake is named as such.
func ParseCSR(text string) (*x509.CertificateRequest, error) {
	b, _ := pem.Decode([]byte(text))
	switch {
	case b == nil:
		return nil, errors.New("csr holds no PEM block: give the CSR in PEM (-----BEGIN CERTIFICATE REQUEST-----)")
	case strings.Contains(b.Type, "PRIVATE KEY"):
		return nil, errors.New("csr is a private key, not a certificate request: keep the key on the device and upload only the CSR")
	case b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST":
		return nil, fmt.Errorf("csr PEM block is %q, want CERTIFICATE REQUEST", b.Type)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("csr does not parse: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr signature does not verify, so it proves no possession of its key: %w", err)
	}
	return csr, nil
}

// CheckCSRIdentity refuses a CSR whose subject or URI SANs name a device other than id. The
// leaf's names come from the device id alone (SignLeaf); this catches confused or hostile
// requesters early, with an error wrapping ErrIdentity.
func CheckCSRIdentity(csr *x509.CertificateRequest, id string) error {
	if cn := csr.Subject.CommonName; cn != "" && cn != id {
		return fmt.Errorf("%w: subject names %q, not device %q", ErrIdentity, cn, id)
	}
	want := protocol.DeviceURN(id)
	for _, u := range csr.URIs {
		if u.String() != want {
			return fmt.Errorf("%w: asks for URI %q; only %s is allowed", ErrIdentity, u, want)
		}
	}
	return nil
}
