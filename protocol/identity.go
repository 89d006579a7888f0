package protocol

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// deviceURNPrefix starts the URN that names a device. It is the only spelling of the device
// namespace in Hearth: build the URN with DeviceURN or DeviceURI, read it with
// DeviceIDFromURN or DeviceIDFromCert.
const deviceURNPrefix = "urn:hearth:device:"

// ValidateDeviceID checks a device id: 1 to 64 characters of a-z, 0-9, '.', '_' and '-',
// starting with a letter or digit. Ids are topic levels, certificate names (CN and
// DeviceURN) and file names, so nothing else is allowed. This is the one device id rule: the
// CA signs, the broker admits and the agent enrolls exactly the ids it accepts.
func ValidateDeviceID(id string) error {
	if id == "" || len(id) > MaxDeviceIDLen {
		return invalid("device id %q must be 1 to %d characters", id, MaxDeviceIDLen)
	}
	for i, r := range id {
		alnum := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
		if i == 0 && !alnum {
			return invalid("device id %q must start with a lowercase letter or digit", id)
		}
		if !alnum && r != '.' && r != '_' && r != '-' {
			return invalid("device id %q: character %q not allowed (use a-z, 0-9, '.', '_', '-')", id, r)
		}
	}
	return nil
}

// DeviceURN returns the URN that names device id in its certificate's URI SAN (and its
// CSR's): "urn:hearth:device:" followed by the id. It does not check the id.
func DeviceURN(id string) string { return deviceURNPrefix + id }

// DeviceURI returns DeviceURN(id) as a URL, the form x509 certificates and requests carry.
func DeviceURI(id string) *url.URL {
	scheme, opaque, _ := strings.Cut(DeviceURN(id), ":")
	return &url.URL{Scheme: scheme, Opaque: opaque}
}

// DeviceIDFromURN returns the device id a device URN names. ok is false when s is not in the
// urn:hearth:device namespace at all. The id is returned as written, not validated: a caller
// that accepts it checks it with ValidateDeviceID (DeviceIDFromCert does).
func DeviceIDFromURN(s string) (id string, ok bool) {
	return strings.CutPrefix(s, deviceURNPrefix)
}

// ErrIdentity is wrapped by DeviceIDFromCert's errors: the certificate does not name exactly
// one valid device.
var ErrIdentity = errors.New("certificate does not name one device")

// DeviceIDFromCert returns the device a certificate names: the id of its only device URN
// among the URI SANs, which must be a valid device id equal to the subject CN. It does not
// verify the certificate; do that first. The broker identifies a device session with it, and
// the agent checks with it that an issued certificate names its own device.
func DeviceIDFromCert(cert *x509.Certificate) (string, error) {
	var ids []string
	for _, u := range cert.URIs {
		if id, ok := DeviceIDFromURN(u.String()); ok {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		return "", fmt.Errorf("%w: it has %d %s URIs, want 1", ErrIdentity, len(ids), strings.TrimSuffix(deviceURNPrefix, ":"))
	}
	id := ids[0]
	if err := ValidateDeviceID(id); err != nil {
		return "", fmt.Errorf("%w: %w", ErrIdentity, err)
	}
	if cert.Subject.CommonName != id {
		return "", fmt.Errorf("%w: CN %q differs from its device URN %q", ErrIdentity, cert.Subject.CommonName, DeviceURN(id))
	}
	return id, nil
}
