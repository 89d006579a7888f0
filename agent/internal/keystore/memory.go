package keystore

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"slices"
	"sync"
)

// Memory is a keystore that keeps one device's identity, its previous generation, the pinned
// CA and the State in memory, with the same rules as Dir: Install validates the pair and keeps
// the replaced generation for Rollback, Rollback leaves no previous generation, WriteCA accepts
// only CA certificates. Nothing is written to disk and nothing survives the process.
//
// It exists for simulated devices (hearth-fleet runs thousands in one process, where a state
// directory per device would cost files, fsyncs and file descriptors). The zero value is an
// empty keystore, ready to use. Its methods are safe for concurrent use.
type Memory struct {
	mu    sync.Mutex
	cur   *Pair
	prev  *Pair
	ca    []*x509.Certificate
	state State
}

// Current returns the identity in use, or ErrNoIdentity before the first Install.
func (m *Memory) Current() (Pair, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		return Pair{}, fmt.Errorf("%w: no current generation in memory", ErrNoIdentity)
	}
	return m.cur.clone(), nil
}

// Previous returns the generation the current one replaced, or ErrNoIdentity if there is none
// (before the second Install, and after a Rollback).
func (m *Memory) Previous() (Pair, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.prev == nil {
		return Pair{}, fmt.Errorf("%w: no previous generation in memory", ErrNoIdentity)
	}
	return m.prev.clone(), nil
}

// Install makes key and chain (leaf first) the current generation and the current one the
// previous generation, after the checks of Dir.Install (ErrKeyMismatch, ErrChain). Installing
// the current generation again changes nothing.
func (m *Memory) Install(key crypto.Signer, chain []*x509.Certificate) error {
	p := Pair{Key: key, Chain: slices.Clone(chain)}
	if err := p.check(); err != nil {
		return fmt.Errorf("keystore: install: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur != nil && samePair(*m.cur, p) {
		return nil
	}
	m.prev, m.cur = m.cur, &p
	return nil
}

// Rollback makes the previous generation current again; afterwards there is no previous
// generation. It returns an error wrapping ErrNoIdentity if there is none.
func (m *Memory) Rollback() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.prev == nil {
		return fmt.Errorf("keystore: rollback: %w: no previous generation in memory", ErrNoIdentity)
	}
	m.cur, m.prev = m.prev, nil
	return nil
}

// WriteCA pins chain as the hub's CA chain. Every certificate must be a CA certificate.
func (m *Memory) WriteCA(chain []*x509.Certificate) error {
	if err := checkCAChain(chain); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ca = slices.Clone(chain)
	return nil
}

// CA returns the pinned hub CA chain, or ErrNoCA before the first WriteCA.
func (m *Memory) CA() ([]*x509.Certificate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ca == nil {
		return nil, ErrNoCA
	}
	return slices.Clone(m.ca), nil
}

// LoadState returns the saved State (the zero State before the first SaveState).
func (m *Memory) LoadState() (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state.clone(), nil
}

// SaveState replaces the saved State with s.
func (m *Memory) SaveState(s State) error {
	if s.Pending != nil && s.Pending.RequestID == "" {
		return fmt.Errorf("keystore: save state: pending request without an id")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state = s.clone()
	return nil
}

// samePair reports whether two pairs hold the same certificates and the same public key.
func samePair(x, y Pair) bool {
	if len(x.Chain) != len(y.Chain) {
		return false
	}
	for i := range x.Chain {
		if !x.Chain[i].Equal(y.Chain[i]) {
			return false
		}
	}
	pub, ok := x.Key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(y.Key.Public())
}

// clone returns a copy of s that shares nothing mutable with it.
func (s State) clone() State {
	if s.Pending != nil {
		p := *s.Pending
		s.Pending = &p
	}
	return s
}
