package crl

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/atomicfile"
)

// During an intermediate rotation (issue 12) the previous intermediate still vouches for the
// certificates it issued, so it signs their CRL too (PreviousPath, served at crl-previous):
// regenerated with the current one. When it is retired, FinalPrevious signs its last CRL,
// valid until the previous intermediate itself expires, and that file is kept and served
// until then. An intermediate revoked after a compromise is listed on the root's CRL
// (RootCRL, RootPath, served at crl-root). Each is published on the crl topic after the
// current CRL while it is current, so agents still on the previous intermediate learn of
// their revocation and every agent of the intermediate's.

// regeneratePrevious signs a new CRL with the previous intermediate. p.mu is held.
func (p *Publisher) regeneratePrevious(ctx context.Context, now time.Time) error {
	return p.signPrevious(ctx, now, p.cfg.Validity)
}

// FinalPrevious signs the previous intermediate's last CRL, valid until that intermediate
// expires, and keeps it (PreviousPath): call it before the CA retires the intermediate.
func (p *Publisher) FinalPrevious(ctx context.Context) error {
	ps, ok := p.cfg.CA.(PreviousSigner)
	if !ok || ps.Previous() == nil {
		return errors.New("crl: no previous intermediate")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// To the second, as the CRL's thisUpdate: nextUpdate is then the intermediate's notAfter.
	now := p.cfg.Now().UTC().Truncate(time.Second)
	if err := p.signPrevious(ctx, now, max(ps.Previous().NotAfter.Sub(now), time.Hour)); err != nil {
		return err
	}
	p.publish(now)
	return nil
}

func (p *Publisher) signPrevious(ctx context.Context, now time.Time, validity time.Duration) error {
	ps, ok := p.cfg.CA.(PreviousSigner)
	if !ok || ps.Previous() == nil {
		return nil
	}
	certs, err := p.entriesOf(ctx, ps.Previous(), now)
	if err != nil {
		return err
	}
	number, err := p.cfg.Store.NextCRLNumber(ctx)
	if err != nil {
		return fmt.Errorf("reserve a CRL number: %w", err)
	}
	raw, err := ps.PreviousCRL(p.revoked(certs), number, now, validity)
	if err != nil {
		return err
	}
	d, err := p.keep(p.cfg.PreviousPath, raw)
	if err != nil {
		return err
	}
	p.prev = d
	p.cfg.Logger.Info("previous intermediate's CRL signed", "number", number, "entries", len(certs), "next_update", d.l.NextUpdate)
	return nil
}

// RootCRL reserves a CRL number, has sign make the root's CRL with it, and keeps and serves
// the result (RootPath, crl-root).
func (p *Publisher) RootCRL(ctx context.Context, sign func(number *big.Int, now time.Time) ([]byte, error)) (*x509.RevocationList, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	number, err := p.cfg.Store.NextCRLNumber(ctx)
	if err != nil {
		return nil, fmt.Errorf("reserve a CRL number: %w", err)
	}
	raw, err := sign(number, p.cfg.Now())
	if err != nil {
		return nil, err
	}
	d, err := p.keep(p.cfg.RootPath, raw)
	if err != nil {
		return nil, err
	}
	p.root = d
	p.publish(p.cfg.Now())
	return d.l, nil
}

// keep parses raw and writes it to path (when set).
func (p *Publisher) keep(path string, raw []byte) (*doc, error) {
	l, err := parse(raw)
	if err != nil {
		return nil, err
	}
	if path != "" {
		if err := atomicfile.WriteFile(path, raw, 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
	}
	return &doc{l: l, pem: raw}, nil
}

// loadDoc reads a kept CRL from path, if there is one that has not expired at now.
func (p *Publisher) loadDoc(path string, now time.Time) *doc {
	if path == "" {
		return nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	l, err := parse(raw)
	if err != nil || !now.Before(l.NextUpdate) {
		return nil
	}
	return &doc{l: l, pem: raw}
}

// Previous returns the PEM of the previous intermediate's CRL served now, or nil.
func (p *Publisher) Previous() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.prev == nil {
		return nil
	}
	return p.prev.pem
}

// Root returns the PEM of the root's CRL served now, or nil.
func (p *Publisher) Root() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.root == nil {
		return nil
	}
	return p.root.pem
}
