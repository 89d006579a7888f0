package keystore

import "errors"

// ErrNoIdentity means the directory holds no generation of the requested kind: no current.pem
// and no previous.pem for Current, no previous.pem for Previous and Rollback.
var ErrNoIdentity = errors.New("keystore: no identity")

// ErrKeyMismatch means a private key does not belong to the leaf certificate it was paired with.
var ErrKeyMismatch = errors.New("keystore: private key does not match the leaf certificate")

// ErrChain means a certificate chain is not a chain: some certificate is not signed by the one
// that follows it.
var ErrChain = errors.New("keystore: broken certificate chain")

// ErrCorrupt means a file in the directory exists but cannot be used: truncated, not the
// expected format, or a pair that fails validation.
var ErrCorrupt = errors.New("keystore: corrupt file")

// ErrNoCA means no pinned CA chain has been written yet.
var ErrNoCA = errors.New("keystore: no pinned CA")

// ErrUnsupportedAlgorithm means a key algorithm is unknown or cannot be stored.
var ErrUnsupportedAlgorithm = errors.New("keystore: unsupported key algorithm")

// ErrExport means the identity itself was installed, but writing the optional cert.pem/key.pem
// copies failed. The next Open retries the export.
var ErrExport = errors.New("keystore: exporting cert.pem/key.pem failed")

// FallbackError reports that current.pem could not be used and that Current returned the
// previous generation instead. The Pair returned alongside it is valid and usable; Rollback
// makes the fallback permanent on disk.
//
// Err describes what is wrong with current.pem; it wraps ErrCorrupt or ErrNoIdentity, so
// callers should test for *FallbackError with errors.As before testing those sentinels.
type FallbackError struct {
	Err error
}

// Error describes why the current generation was not used.
func (e *FallbackError) Error() string {
	return "keystore: current identity unusable, using previous generation: " + e.Err.Error()
}

// Unwrap returns the reason current.pem was not used.
func (e *FallbackError) Unwrap() error { return e.Err }
