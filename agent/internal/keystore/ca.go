package keystore

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
)

// WriteCA pins chain as the hub's CA chain (ca.pem), replacing any earlier one atomically.
// Every certificate must be a CA certificate. Writing the chain already pinned touches nothing,
// so it is cheap to call on every retained CA message.
func (d *Dir) WriteCA(chain []*x509.Certificate) error {
	if err := checkCAChain(chain); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := writeAtomic(d.path, caName, encodeChain(chain)); err != nil {
		return fmt.Errorf("keystore: write CA: %w", err)
	}
	return nil
}

// CA returns the pinned hub CA chain: ErrNoCA before the first WriteCA, an error wrapping
// ErrCorrupt if ca.pem cannot be parsed.
func (d *Dir) CA() ([]*x509.Certificate, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	data, err := readFile(d.file(caName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, ErrNoCA
	case err != nil:
		return nil, fmt.Errorf("keystore: read %s: %w", caName, err)
	}
	chain, err := decodeChain(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", caName, err)
	}
	return chain, nil
}

// checkCAChain refuses an empty chain and any certificate that is not a CA certificate.
func checkCAChain(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return fmt.Errorf("keystore: write CA: empty chain")
	}
	for i, c := range chain {
		if c == nil {
			return fmt.Errorf("keystore: write CA: certificate %d is nil", i)
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return fmt.Errorf("keystore: write CA: certificate %d (%q) is not a CA certificate", i, c.Subject.CommonName)
		}
	}
	return nil
}
