// Package servercert keeps the hub's own TLS server certificate — the one the broker
// presents to agents — current while the hub runs.
//
// A Keeper holds one certificate at a time and hands it to every new TLS handshake through
// tls.Config.GetCertificate. Run renews it at RenewAt (two thirds into its lifetime) with a
// fresh key and swaps it in atomically: handshakes that already finished keep the session
// they have (a TLS session does not depend on the server certificate after the handshake), so
// connected agents stay connected, and every later handshake gets the new certificate. The
// key lives only in memory; every start of the hub mints a fresh certificate for the
// configured host names. Reissue replaces it at once (after an intermediate rotation), and
// SetHosts with one for other host names.
//
// Concurrency: GetCertificate and Current are safe for concurrent use with each other and
// with Run and Renew; renewals are serialised.
package servercert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Issuer mints a server certificate for hosts, valid from now; its Leaf must be set.
// ca.CA.ServerCertificate is one.
type Issuer func(hosts []string, now time.Time) (tls.Certificate, error)

// Config is what a Keeper needs. Hosts and Issue are required.
type Config struct {
	// Hosts are the DNS names and IP addresses the certificate names (config.Hostnames).
	Hosts []string
	// Issue mints each certificate.
	Issue Issuer
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Changed, if set, is called with each certificate put in service after the first (a
	// renewal, a reissue, new host names), once it is: the hub tells the dashboard's and
	// Home Assistant's CA dates. It is called with the Keeper's lock held: it may read
	// Current, not renew.
	Changed func(leaf *x509.Certificate)
	// Logger receives one line per renewal; default discards.
	Logger *slog.Logger
}

// Timing of Run: it re-checks at least every maxWait (so a clock that jumps, as after a
// suspend, is noticed within the hour), waits at least minWait between renewals (so a
// certificate clamped short by an expiring intermediate does not renew in a loop), and after
// a failed renewal retries with backoff from minWait up to maxWait.
const (
	maxWait = time.Hour
	minWait = time.Minute
)

// Keeper holds the current server certificate and renews it. The zero value is not usable;
// use New.
type Keeper struct {
	cfg Config
	cur atomic.Pointer[tls.Certificate]
	mu  sync.Mutex // serialises renewals
}

// New mints the first certificate and returns a Keeper serving it. It starts no goroutine.
func New(cfg Config) (*Keeper, error) {
	if len(cfg.Hosts) == 0 {
		return nil, errors.New("server certificate: no host names")
	}
	if cfg.Issue == nil {
		return nil, errors.New("server certificate: no issuer")
	}
	cfg.Hosts = slices.Clone(cfg.Hosts)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	k := &Keeper{cfg: cfg}
	if _, err := k.issue(cfg.Now()); err != nil {
		return nil, err
	}
	return k, nil
}

// GetCertificate returns the current certificate; it is tls.Config.GetCertificate.
func (k *Keeper) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.cur.Load(), nil
}

// Current returns the current certificate's leaf. It must not be modified.
func (k *Keeper) Current() *x509.Certificate { return k.cur.Load().Leaf }

// RenewAt is when a certificate is renewed: two thirds of the way from its not-before to its
// not-after, so a renewal that keeps failing has a third of the lifetime (four months of a
// year) to be noticed and fixed before agents refuse the hub.
func RenewAt(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(life / 3 * 2)
}

// Renew renews the certificate if it is due at now (RenewAt) and reports whether it did. On
// error the current certificate stays in service.
func (k *Keeper) Renew(now time.Time) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if now.Before(RenewAt(k.Current())) {
		return false, nil
	}
	old := k.Current()
	leaf, err := k.issueLocked(now)
	if err != nil {
		return false, err
	}
	k.cfg.Logger.Info("broker certificate renewed", "serial", leaf.SerialNumber.Text(16),
		"not_after", leaf.NotAfter.UTC(), "previous_serial", old.SerialNumber.Text(16), "previous_not_after", old.NotAfter.UTC())
	return true, nil
}

// Reissue replaces the certificate now, due or not: after an intermediate rotation, so the
// broker presents a certificate of the intermediate in force (issue 12). On error the
// current certificate stays in service.
func (k *Keeper) Reissue(now time.Time) (*x509.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reissueLocked(now, "reissued")
}

// SetHosts replaces the certificate now with one for hosts (a hostnames change, without a
// restart). On error the current certificate and host names stay in service.
func (k *Keeper) SetHosts(hosts []string, now time.Time) (*x509.Certificate, error) {
	if len(hosts) == 0 {
		return nil, errors.New("server certificate: no host names")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.cfg.Hosts
	k.cfg.Hosts = slices.Clone(hosts)
	leaf, err := k.reissueLocked(now, "reissued for new host names")
	if err != nil {
		k.cfg.Hosts = old
	}
	return leaf, err
}

// Hosts returns the host names the certificate is issued for.
func (k *Keeper) Hosts() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.cfg.Hosts)
}

func (k *Keeper) reissueLocked(now time.Time, what string) (*x509.Certificate, error) {
	old := k.Current()
	leaf, err := k.issueLocked(now)
	if err != nil {
		return nil, err
	}
	k.cfg.Logger.Info("broker certificate "+what, "serial", leaf.SerialNumber.Text(16), "hosts", k.cfg.Hosts,
		"issuer", leaf.Issuer.String(), "previous_serial", old.SerialNumber.Text(16))
	return leaf, nil
}

func (k *Keeper) issue(now time.Time) (*x509.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.issueLocked(now)
}

func (k *Keeper) issueLocked(now time.Time) (*x509.Certificate, error) {
	c, err := k.cfg.Issue(k.cfg.Hosts, now)
	if err != nil {
		return nil, fmt.Errorf("broker certificate: %w", err)
	}
	if c.Leaf == nil {
		return nil, errors.New("broker certificate: issuer returned no leaf")
	}
	first := k.cur.Load() == nil
	k.cur.Store(&c)
	if !first && k.cfg.Changed != nil {
		k.cfg.Changed(c.Leaf)
	}
	return c.Leaf, nil
}

// Run renews the certificate whenever it is due until ctx ends, then returns nil. A failed
// renewal is logged and retried with backoff; the current certificate stays in service.
func (k *Keeper) Run(ctx context.Context) error {
	retry := time.Duration(0)
	for {
		wait := min(RenewAt(k.Current()).Sub(k.cfg.Now()), maxWait)
		if retry > 0 {
			wait = retry
		}
		wait = max(wait, minWait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if _, err := k.Renew(k.cfg.Now()); err != nil {
			retry = min(max(2*retry, minWait), maxWait)
			k.cfg.Logger.Error("broker certificate not renewed; the current one stays in service",
				"err", err, "not_after", k.Current().NotAfter.UTC(), "retry_in", retry)
			continue
		}
		retry = 0
	}
}
