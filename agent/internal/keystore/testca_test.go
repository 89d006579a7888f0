package keystore

import (
	"crypto"
	"crypto/x509"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/agent/internal/testkit"
)

// testEpoch is a fixed issuance time so that certificates are deterministic apart from keys.
var testEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// newTestCA returns a throwaway two-tier CA (root → intermediate) valid from testEpoch.
func newTestCA(tb testing.TB) *testkit.CA {
	tb.Helper()
	return testkit.NewCAAt(tb, "Test", testEpoch)
}

// issue returns the chain [leaf, intermediate] for key: a dev-1 certificate with the given
// serial, valid for 30 days from testEpoch.
func issue(tb testing.TB, ca *testkit.CA, key crypto.Signer, serial int64) []*x509.Certificate {
	tb.Helper()
	leaf := ca.IssueSerial(tb, key.Public(), "dev-1", serial, testEpoch, testEpoch.AddDate(0, 0, 30))
	return []*x509.Certificate{leaf, ca.Intermediate}
}

// newPair returns a fresh P-256 key and its chain with the given serial.
func newPair(tb testing.TB, ca *testkit.CA, serial int64) Pair {
	tb.Helper()
	key := testkit.NewKey(tb)
	return Pair{Key: key, Chain: issue(tb, ca, key, serial)}
}
