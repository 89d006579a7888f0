package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/protocol"
)

// deviceIDVectors is the protocol's table of device ids, the one every module checks its
// entry points against.
const deviceIDVectors = "../../../protocol/testdata/vectors/device_ids.json"

// TestOneDeviceIDRule checks over the protocol's table of ids that the CA signs, this broker
// admits (by certificate and by enrollment token) and the agent accepts exactly the same
// device ids (issue 9): an id one of them accepts, the others accept too. The agent's checks
// are protocol.ValidateDeviceID (its configuration, its CSR) and protocol.DeviceIDFromCert
// (the certificate it is issued); its own tests check it calls them.
func TestOneDeviceIDRule(t *testing.T) {
	b, err := os.ReadFile(deviceIDVectors)
	if err != nil {
		t.Fatal(err)
	}
	var vectors []struct {
		ID    string `json:"id"`
		Valid bool   `json:"valid"`
	}
	if err := json.Unmarshal(b, &vectors); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	hubCA, err := ca.InitWithIterations(t.TempDir(), []byte("test passphrase"), now, ca.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, func(c *Config) {
		c.TLS.ClientCAs = c.TLS.ClientCAs.Clone()
		c.TLS.ClientCAs.AddCert(hubCA.Root())
	})
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	admits := func(t *testing.T, id string, cert *tls.Certificate, user, pass string) bool {
		t.Helper()
		c, err := connect(t, e.clientOpts(id+":rule", cert).SetUsername(user).SetPassword(pass))
		if err != nil {
			return false
		}
		c.Disconnect(0)
		return true
	}
	for _, tt := range vectors {
		t.Run(strconv.Quote(tt.ID), func(t *testing.T) {
			// The CA, given a CSR (it takes only the key from it: the names come from the id).
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := x509.ParseCertificateRequest(der)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := hubCA.SignLeaf(csr, tt.ID, policy.Profile{Class: policy.DefaultClass,
				NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)})
			caSigns := err == nil
			if caSigns != tt.Valid {
				t.Errorf("CA: SignLeaf(%q) = %v, want signed=%v", tt.ID, err, tt.Valid)
			}

			// The broker, given that certificate, or for an id the CA refuses one from a CA it
			// also trusts, and an enrollment token for the id.
			var cert tls.Certificate
			switch {
			case caSigns:
				cert = tls.Certificate{Certificate: [][]byte{leaf.Raw, hubCA.Intermediate().Raw}, PrivateKey: key, Leaf: leaf}
			case encodable(tt.ID):
				cert = e.pki.Client(t, tt.ID, protocol.DeviceURI(tt.ID)).TLS
			default:
				t.Logf("no certificate can carry the URN of %q (x509 URIs are ASCII without controls)", tt.ID)
			}
			if cert.Leaf != nil {
				if got := admits(t, tt.ID, &cert, "", ""); got != tt.Valid {
					t.Errorf("broker: CONNECT with a certificate for %q admitted=%v, want %v", tt.ID, got, tt.Valid)
				}
			}
			e.auth.mu.Lock()
			e.auth.tokens[tt.ID] = "rule-token"
			e.auth.mu.Unlock()
			if got := admits(t, tt.ID, nil, tt.ID, "rule-token"); got != tt.Valid {
				t.Errorf("broker: CONNECT enrolling as %q admitted=%v, want %v", tt.ID, got, tt.Valid)
			}

			// The agent: its configuration and CSR check, and the check of what it is issued.
			if err := protocol.ValidateDeviceID(tt.ID); (err == nil) != tt.Valid {
				t.Errorf("agent: ValidateDeviceID(%q) = %v, want valid=%v", tt.ID, err, tt.Valid)
			}
			if caSigns {
				if id, err := protocol.DeviceIDFromCert(leaf); err != nil || id != tt.ID {
					t.Errorf("agent: DeviceIDFromCert(leaf the CA signed for %q) = %q, %v", tt.ID, id, err)
				}
			}
		})
	}
}

// encodable reports whether a certificate can carry id's device URN: x509 writes URIs as
// IA5Strings and refuses control characters.
func encodable(id string) bool {
	for _, c := range []byte(id) {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	_, err := url.Parse(protocol.DeviceURN(id))
	return err == nil
}
