package keystore

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/log"
	"github.com/hearth-pki/hearth/protocol"
)

// Pair is one generation of the agent's identity: a private key and the certificate chain
// issued for it, leaf first. Pairs returned by this package are validated: the key matches the
// leaf and each certificate is signed by the next.
type Pair struct {
	// Key is the private key. Never log it: Pair's own String and LogValue leave it out.
	Key crypto.Signer
	// Chain is the certificate chain, leaf first, as the hub returned it.
	Chain []*x509.Certificate
}

// Leaf returns the first certificate of the chain, or nil if the chain is empty.
func (p Pair) Leaf() *x509.Certificate {
	if len(p.Chain) == 0 {
		return nil
	}
	return p.Chain[0]
}

// Serial returns the leaf's serial number in lowercase hexadecimal, or "" without a leaf.
func (p Pair) Serial() string {
	leaf := p.Leaf()
	if leaf == nil || leaf.SerialNumber == nil {
		return ""
	}
	return leaf.SerialNumber.Text(16)
}

// Algorithm returns the key's algorithm, or "" if it is none of the ones GenerateKey makes.
func (p Pair) Algorithm() protocol.KeyAlgorithm {
	if p.Key == nil {
		return ""
	}
	return algorithmOf(p.Key.Public())
}

// TLSCertificate returns the pair as a tls.Certificate for a client's GetClientCertificate.
func (p Pair) TLSCertificate() tls.Certificate {
	c := tls.Certificate{PrivateKey: p.Key, Leaf: p.Leaf()}
	for _, cert := range p.Chain {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c
}

// String describes the pair by its leaf (serial, subject, expiry); it never prints the key.
func (p Pair) String() string {
	leaf := p.Leaf()
	if leaf == nil {
		return "keystore.Pair{}"
	}
	return fmt.Sprintf("keystore.Pair{serial=%s subject=%q not_after=%s alg=%s}",
		p.Serial(), leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.RFC3339), p.Algorithm())
}

// GoString is String, so that %#v does not print the private key either.
func (p Pair) GoString() string { return p.String() }

// LogValue makes the logger log the pair as its public facts, never the key.
func (p Pair) LogValue() log.Value {
	leaf := p.Leaf()
	if leaf == nil {
		return log.GroupValue()
	}
	return log.GroupValue(
		log.String("serial", p.Serial()),
		log.String("subject", leaf.Subject.CommonName),
		log.String("issuer", leaf.Issuer.CommonName),
		log.Time("not_after", leaf.NotAfter.UTC()),
		log.String("alg", string(p.Algorithm())),
	)
}

// check validates a pair: a key, at least one certificate, the key matching the leaf
// (ErrKeyMismatch) and each certificate signed by the next (ErrChain).
func (p Pair) check() error {
	if p.Key == nil {
		return fmt.Errorf("keystore: pair has no private key")
	}
	if len(p.Chain) == 0 {
		return fmt.Errorf("keystore: pair has no certificate")
	}
	for i, c := range p.Chain {
		if c == nil {
			return fmt.Errorf("keystore: certificate %d of the chain is nil", i)
		}
	}
	pub, ok := p.Key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(p.Chain[0].PublicKey) {
		return fmt.Errorf("%w (leaf serial %s)", ErrKeyMismatch, p.Serial())
	}
	for i := range len(p.Chain) - 1 {
		if err := p.Chain[i].CheckSignatureFrom(p.Chain[i+1]); err != nil {
			return fmt.Errorf("%w: certificate %d (%q) is not signed by certificate %d (%q): %w",
				ErrChain, i, p.Chain[i].Subject.CommonName, i+1, p.Chain[i+1].Subject.CommonName, err)
		}
	}
	return nil
}

// Block types of the files this package writes.
const (
	blockCert = "CERTIFICATE"
	blockKey  = "PRIVATE KEY"
)

// encodeChain returns the chain as concatenated "CERTIFICATE" blocks, leaf first.
func encodeChain(chain []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range chain {
		b.Write(pem.EncodeToMemory(&pem.Block{Type: blockCert, Bytes: c.Raw}))
	}
	return b.Bytes()
}

// encodeKey returns key as a PKCS #8 "PRIVATE KEY" block.
func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: key of type %T cannot be stored as PKCS #8: %w", ErrUnsupportedAlgorithm, key, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: blockKey, Bytes: der}), nil
}

// encodeBundle returns the file format of one generation: the chain, then the key. The key is
// last so that a truncated file always lacks (part of) the key and fails to load.
func encodeBundle(p Pair) ([]byte, error) {
	key, err := encodeKey(p.Key)
	if err != nil {
		return nil, err
	}
	return append(encodeChain(p.Chain), key...), nil
}

// decodeBundle parses and validates one generation written by encodeBundle. Every failure wraps
// ErrCorrupt.
func decodeBundle(data []byte) (Pair, error) {
	blocks, err := decodePEM(data)
	if err != nil {
		return Pair{}, err
	}
	var p Pair
	for i, b := range blocks {
		switch b.Type {
		case blockCert:
			if p.Key != nil {
				return Pair{}, fmt.Errorf("%w: certificate after the private key (block %d)", ErrCorrupt, i)
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return Pair{}, fmt.Errorf("%w: certificate %d: %w", ErrCorrupt, len(p.Chain), err)
			}
			p.Chain = append(p.Chain, c)
		case blockKey:
			if p.Key != nil {
				return Pair{}, fmt.Errorf("%w: more than one private key", ErrCorrupt)
			}
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return Pair{}, fmt.Errorf("%w: private key: %w", ErrCorrupt, err)
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return Pair{}, fmt.Errorf("%w: private key of type %T cannot sign", ErrCorrupt, k)
			}
			p.Key = s
		default:
			return Pair{}, fmt.Errorf("%w: unexpected PEM block %q", ErrCorrupt, b.Type)
		}
	}
	if p.Key == nil {
		return Pair{}, fmt.Errorf("%w: no private key (truncated?)", ErrCorrupt)
	}
	if err := p.check(); err != nil {
		return Pair{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return p, nil
}

// decodeChain parses a file of "CERTIFICATE" blocks only. Every failure wraps ErrCorrupt.
func decodeChain(data []byte) ([]*x509.Certificate, error) {
	blocks, err := decodePEM(data)
	if err != nil {
		return nil, err
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrCorrupt)
	}
	chain := make([]*x509.Certificate, 0, len(blocks))
	for i, b := range blocks {
		if b.Type != blockCert {
			return nil, fmt.Errorf("%w: unexpected PEM block %q", ErrCorrupt, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %w", ErrCorrupt, i, err)
		}
		chain = append(chain, c)
	}
	return chain, nil
}

var pemBegin = []byte("-----BEGIN ")

// decodePEM splits data into PEM blocks strictly: only whitespace may surround them, and a block
// that does not decode is an error rather than skipped (pem.Decode alone skips junk, which would
// hide a damaged block).
func decodePEM(data []byte) ([]*pem.Block, error) {
	var blocks []*pem.Block
	rest := data
	for {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) == 0 {
			return blocks, nil
		}
		if !bytes.HasPrefix(rest, pemBegin) {
			return nil, fmt.Errorf("%w: unexpected data after PEM block %d (truncated or damaged?)", ErrCorrupt, len(blocks))
		}
		b, next := pem.Decode(rest)
		if b == nil || bytes.Count(rest[:len(rest)-len(next)], pemBegin) != 1 {
			return nil, fmt.Errorf("%w: PEM block %d does not decode (truncated or damaged?)", ErrCorrupt, len(blocks))
		}
		if len(b.Headers) != 0 {
			return nil, fmt.Errorf("%w: PEM block %d has headers", ErrCorrupt, len(blocks))
		}
		blocks = append(blocks, b)
		rest = next
	}
}
