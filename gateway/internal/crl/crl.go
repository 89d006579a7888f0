// Package crl keeps the hub's certificate revocation list current: it builds the CRL from
// the inventory, signs it with the intermediate, writes it to DATA/crl.pem, publishes it
// retained on MQTT (with the previous intermediate's CRL during a rotation and the root's
// after a compromise, so agents see both), and serves each over HTTP for third-party
// verifiers.
//
// Invariants:
//   - The CRL lists only certificates the hub's intermediate issued (an imported device's
//     certificate from another CA is not the hub's to revoke), revoked or abandoned
//     (issued, never committed: listed as superseded), each with its RFC 5280 reason code,
//     and drops them once they expire (RFC 5280 section 3.3).
//   - CRL numbers only grow: each number is reserved in the inventory before it is used,
//     so a CRL that fails to be written burns its number and the next one is higher.
//   - A CRL is regenerated after every revocation (Changed) and at half its validity, so
//     verifiers never hold one past its nextUpdate; across a restart the one on disk is kept
//     while it is current and lists what the inventory does.
//
// A Publisher is safe for concurrent use; Run is its only goroutine.
package crl

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/atomicfile"
	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
)

// DefaultValidity is the time from a CRL's thisUpdate to its nextUpdate.
const DefaultValidity = 7 * 24 * time.Hour

// retryAfter is how long a failed regeneration waits before it is tried again.
const retryAfter = time.Minute

// Store is what the publisher needs of the inventory.
type Store interface {
	CRLEntries(ctx context.Context, issuer string, now time.Time) ([]inventory.Certificate, error)
	NextCRLNumber(ctx context.Context) (*big.Int, error)
}

// Signer signs CRLs: the hub's CA.
type Signer interface {
	CRL(entries []ca.Revoked, number *big.Int, now time.Time, validity time.Duration) ([]byte, error)
	Intermediate() *x509.Certificate
}

// PreviousSigner is a Signer during an intermediate rotation: the previous intermediate
// (nil outside one) signs the CRL of the certificates it issued.
type PreviousSigner interface {
	Previous() *x509.Certificate
	PreviousCRL(entries []ca.Revoked, number *big.Int, now time.Time, validity time.Duration) ([]byte, error)
}

// Config configures a Publisher. Store, CA and Path are required.
type Config struct {
	Store Store
	CA    Signer
	// Path is the CRL's file, DATA/crl.pem.
	Path string
	// PreviousPath is the file of the previous intermediate's CRL during a rotation, and of
	// its last one after (kept until it expires), DATA/crl-previous.pem; "" keeps none.
	PreviousPath string
	// RootPath is the file of the root's CRL (intermediates revoked after a compromise),
	// DATA/crl-root.pem; "" keeps none.
	RootPath string
	// Publish sends the crl topic's payload (the current CRL, then the previous
	// intermediate's and the root's while they are current) to the broker, retained.
	Publish func(pem []byte) error
	// Validity is the time from thisUpdate to nextUpdate; default DefaultValidity.
	Validity time.Duration
	// Now is the hub clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Publisher keeps the CRL current. Create it with New, run it with Run.
type Publisher struct {
	cfg  Config
	kick chan struct{}

	mu      sync.Mutex // held while a CRL is built, so numbers are used in order
	current *x509.RevocationList
	pem     []byte
	// prev is the previous intermediate's CRL (during a rotation, or its last one until it
	// expires), root the root's; each nil when there is none.
	prev, root *doc
}

// doc is a CRL as parsed and as served.
type doc struct {
	l   *x509.RevocationList
	pem []byte
}

// New returns a Publisher. It starts nothing.
func New(cfg Config) (*Publisher, error) {
	if cfg.Store == nil || cfg.CA == nil || cfg.Path == "" {
		return nil, errors.New("crl: Store, CA and Path are required")
	}
	if cfg.Validity <= 0 {
		cfg.Validity = DefaultValidity
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Publish == nil {
		cfg.Publish = func([]byte) error { return nil }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Publisher{cfg: cfg, kick: make(chan struct{}, 1)}, nil
}

// Changed asks for a new CRL: certificates were revoked. It never blocks; calls that come
// while a CRL is being built are folded into the next one.
func (p *Publisher) Changed() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run publishes the CRL at start (the one on disk if it is current, else a new one), then a
// new one after each Changed and at half the validity of the last, until ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	next := p.start(ctx)
	timer := time.NewTimer(next)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
		case <-timer.C:
		}
		timer.Reset(p.refresh(ctx))
	}
}

// start publishes the CRL on disk when it is still current and lists what the inventory
// does, else a new one, and returns how long until the next one is due.
func (p *Publisher) start(ctx context.Context) time.Duration {
	now := p.cfg.Now()
	p.mu.Lock()
	p.prev, p.root = p.loadDoc(p.cfg.PreviousPath, now), p.loadDoc(p.cfg.RootPath, now)
	if err := p.regeneratePrevious(ctx, now); err != nil {
		p.cfg.Logger.Error("regenerate the previous intermediate's CRL", "err", err)
	}
	p.mu.Unlock()
	if old, raw, ok := p.load(); ok {
		entries, err := p.entries(ctx, now)
		if err == nil && now.Before(p.refreshAt(old)) && sameSerials(old, entries) {
			p.mu.Lock()
			p.current, p.pem = old, raw
			p.publish(now)
			p.mu.Unlock()
			p.cfg.Logger.Info("CRL on disk is current", "number", old.Number, "next_update", old.NextUpdate)
			return p.refreshAt(old).Sub(now)
		}
	}
	return p.refresh(ctx)
}

// refresh regenerates the CRL and returns how long until the next one is due.
func (p *Publisher) refresh(ctx context.Context) time.Duration {
	l, err := p.Regenerate(ctx)
	if err != nil {
		p.cfg.Logger.Error("regenerate the CRL", "err", err, "retry_in", retryAfter)
		return retryAfter
	}
	return max(p.refreshAt(l).Sub(p.cfg.Now()), time.Second)
}

// refreshAt is when a new CRL replaces l: half-way to its nextUpdate.
func (p *Publisher) refreshAt(l *x509.RevocationList) time.Time {
	return l.ThisUpdate.Add(l.NextUpdate.Sub(l.ThisUpdate) / 2)
}

// Regenerate builds, signs, stores and publishes a new CRL now, and returns it. Its number
// is reserved in the inventory first: if anything after fails, the number is never used.
func (p *Publisher) Regenerate(ctx context.Context) (*x509.RevocationList, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	certs, err := p.entries(ctx, now)
	if err != nil {
		return nil, err
	}
	number, err := p.cfg.Store.NextCRLNumber(ctx)
	if err != nil {
		return nil, fmt.Errorf("reserve a CRL number: %w", err)
	}
	entries := p.revoked(certs)
	raw, err := p.cfg.CA.CRL(entries, number, now, p.cfg.Validity)
	if err != nil {
		return nil, err
	}
	l, err := parse(raw)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(p.cfg.Path, raw, 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", p.cfg.Path, err)
	}
	p.current, p.pem = l, raw
	perr := p.regeneratePrevious(ctx, now)
	p.publish(now)
	p.cfg.Logger.Info("CRL published", "number", number, "entries", len(entries), "next_update", l.NextUpdate)
	if perr != nil {
		return nil, perr
	}
	return l, nil
}

// bundle is what the crl topic carries (protocol/README.md, "Raw payloads"): the current
// intermediate's CRL first (what an agent reading one block takes), then the previous
// intermediate's and the root's while they are current at now. p.mu is held.
func (p *Publisher) bundle(now time.Time) []byte {
	if p.pem == nil {
		return nil
	}
	b := bytes.Clone(p.pem)
	for _, d := range []*doc{p.prev, p.root} {
		if d != nil && now.Before(d.l.NextUpdate) {
			b = append(b, d.pem...)
		}
	}
	return b
}

// publish sends the bundle to the crl topic, once there is a current CRL. p.mu is held.
func (p *Publisher) publish(now time.Time) {
	b := p.bundle(now)
	if b == nil {
		return
	}
	if err := p.cfg.Publish(b); err != nil {
		p.cfg.Logger.Warn("publish the CRL", "err", err)
	}
}

func (p *Publisher) entries(ctx context.Context, now time.Time) ([]inventory.Certificate, error) {
	return p.entriesOf(ctx, p.cfg.CA.Intermediate(), now)
}

// entriesOf lists the revoked certificates issuer issued.
func (p *Publisher) entriesOf(ctx context.Context, issuer *x509.Certificate, now time.Time) ([]inventory.Certificate, error) {
	certs, err := p.cfg.Store.CRLEntries(ctx, issuer.Subject.String(), now)
	if err != nil {
		return nil, fmt.Errorf("list revoked certificates: %w", err)
	}
	return certs, nil
}

// revoked turns inventory certificates into CRL entries.
func (p *Publisher) revoked(certs []inventory.Certificate) []ca.Revoked {
	entries := make([]ca.Revoked, 0, len(certs))
	for _, c := range certs {
		n, ok := new(big.Int).SetString(c.Serial, 16)
		if !ok || n.Sign() <= 0 {
			p.cfg.Logger.Warn("certificate with a serial the CRL cannot list", "serial", c.Serial)
			continue
		}
		entries = append(entries, ca.Revoked{Serial: n, At: c.RevokedAt, Reason: c.RevokeCode})
	}
	return entries
}

// load reads the CRL on disk; ok is false when there is none, or it does not parse or was
// not signed by the intermediate.
func (p *Publisher) load() (*x509.RevocationList, []byte, bool) {
	raw, err := os.ReadFile(p.cfg.Path)
	if err != nil {
		return nil, nil, false
	}
	l, err := parse(raw)
	if err != nil || l.CheckSignatureFrom(p.cfg.CA.Intermediate()) != nil {
		p.cfg.Logger.Warn("CRL on disk ignored", "path", p.cfg.Path, "err", err)
		return nil, nil, false
	}
	return l, raw, true
}

// parse decodes a PEM CRL.
func parse(raw []byte) (*x509.RevocationList, error) {
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "X509 CRL" {
		return nil, errors.New("crl: not a PEM X509 CRL")
	}
	l, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("crl: %w", err)
	}
	return l, nil
}

// sameSerials reports whether l lists exactly the serials of certs.
func sameSerials(l *x509.RevocationList, certs []inventory.Certificate) bool {
	if len(l.RevokedCertificateEntries) != len(certs) {
		return false
	}
	have := make([]string, len(certs))
	for i, e := range l.RevokedCertificateEntries {
		have[i] = e.SerialNumber.Text(16)
	}
	want := make([]string, len(certs))
	for i, c := range certs {
		n, _ := new(big.Int).SetString(c.Serial, 16)
		if n == nil {
			return false
		}
		want[i] = n.Text(16)
	}
	slices.Sort(have)
	slices.Sort(want)
	return slices.Equal(have, want)
}

// Current returns the PEM of the CRL last published, or nil before the first.
func (p *Publisher) Current() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.pem)
}

// ServeHTTP serves the current CRL for third-party verifiers, without login: PEM
// (application/x-pem-file) for a path ending in ".pem", else DER (application/pkix-crl,
// RFC 5280 section 4.2.1.13's form for HTTP distribution points). A path starting with
// /crl-previous serves the previous intermediate's CRL, /crl-root the root's. Before the
// first CRL (or when there is no such CRL) it answers 503 (404).
func (p *Publisher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	raw, l := p.pem, p.current
	var d *doc
	kept := strings.HasPrefix(r.URL.Path, "/crl-previous") || strings.HasPrefix(r.URL.Path, "/crl-root")
	if kept {
		d = p.root
		if strings.HasPrefix(r.URL.Path, "/crl-previous") {
			d = p.prev
		}
	}
	p.mu.Unlock()
	if kept {
		if d == nil {
			http.Error(w, "no such CRL: there is none to serve now", http.StatusNotFound)
			return
		}
		raw, l = d.pem, d.l
	}
	if l == nil {
		http.Error(w, "the CRL is not published yet", http.StatusServiceUnavailable)
		return
	}
	h := w.Header()
	h.Set("Last-Modified", l.ThisUpdate.UTC().Format(http.TimeFormat))
	h.Set("Expires", l.NextUpdate.UTC().Format(http.TimeFormat))
	h.Set("Cache-Control", "public, max-age=300")
	body := l.Raw
	h.Set("Content-Type", "application/pkix-crl")
	if len(r.URL.Path) >= 4 && r.URL.Path[len(r.URL.Path)-4:] == ".pem" {
		body = raw
		h.Set("Content-Type", "application/x-pem-file")
	}
	_, _ = w.Write(body)
}
