// Package ca is the hub's two-tier certificate authority: a self-signed root
// that signs one intermediate, and the intermediate that signs device leaves,
// the broker's TLS server certificate and the CRL.
//
// # Keys and certificates
//
// Both CA keys are ECDSA P-256. The root is valid for 10 years (CA:TRUE,
// keyCertSign|cRLSign); the intermediate for 5 years, with path length 0 so it
// can sign only end-entity certificates, and extended key usage clientAuth and
// serverAuth, the only purposes of what it signs, so verifiers that check EKU
// nesting (Go, OpenSSL) refuse anything else a stolen intermediate key might
// mint. It carries no name constraints, because none fits every certificate it
// must sign (issue 15; TestNameConstraintsDoNotFit shows each with Go and
// openssl):
//
//   - URI: a device leaf's only name is urn:hearth:device:ID. An RFC 5280
//     §4.2.1.10 URI constraint names a host, and a URN has none: with any URI
//     constraint Go refuses every device leaf ("URI with empty host") and
//     openssl too ("unsupported or invalid name syntax").
//   - IP: the default hostnames put every global unicast address of the machine
//     in the broker's certificate, public IPv6 addresses included; permitting
//     only the private ranges refuses it ("permitted subtree violation"). An
//     excluded range is either one a hostname may hold, and breaks it the same
//     way, or one no TLS server has (multicast, reserved), and protects nothing.
//   - DNS: the broker's names are whatever the operator sets in hostnames
//     (a public name for devices outside the LAN included), and device leaves
//     may carry the DNS names their policy class allows; both change during the
//     intermediate's five years, and RFC 5280 has no "public names" subtree to
//     exclude. Permitting only today's names would break the broker at the
//     next change of hostnames or the policy.
//
// What bounds a stolen intermediate key is its extended key usage (TLS client
// and server only) and path length 0. CA certificates are backdated by one
// hour to tolerate clock skew.
//
// An opened CA holds only the intermediate key, as a crypto.Signer. The root
// key signs nothing but intermediates, so Load checks root.key's shape and
// never decrypts it: it stays encrypted on disk while the hub runs. Leaves take
// only the public key from a CSR and, from its DNS names, those the policy.Profile
// allows: never the CSR's subject, extensions, IP, e-mail or URI names. A
// device leaf names its device twice, as CN and as the URI SAN
// protocol.DeviceURN(id), and protocol.DeviceIDFromCert requires both to agree.
// Device ids follow protocol.ValidateDeviceID, the rule the broker and the
// agent apply: the CA never signs an id they would refuse.
//
// # Files
//
// A CA lives in one directory (by convention <data>/ca, see Dir), mode 0700:
//
//	root.pem          root certificate (PEM "CERTIFICATE")
//	intermediate.pem  intermediate certificate
//	root.key          root private key, encrypted (format below)
//	intermediate.key  intermediate private key, encrypted
//	passphrase        legacy only: moved out as described under Passphrase
//	previous.pem      during an intermediate rotation: the replaced intermediate
//	previous.key      and its key, still trusted until RetirePrevious
//	next.pem/next.key a rotation's staged intermediate (only between its steps)
//	previous-root.pem during a root rotation: the replaced root, still trusted
//	cross.pem         and the certificate by which it vouches for root.pem
//	next-root.*       a root rotation's staged root (only between its steps)
//
// Every file is 0600 and written atomically: a temporary file in the same
// directory, fsync, rename, fsync of the directory. Init writes root.pem
// last, after the directory holding the other three has been synced: root.pem
// is the commit marker. A directory without root.pem is not initialized, and
// Init overwrites whatever a crashed earlier Init left there (those files were
// never used, since no Load can succeed without root.pem). A directory with
// root.pem but a missing or damaged other file is reported as ErrCorrupt and
// never overwritten.
//
// # Private keys at rest
//
// A CA private key file is one PEM block of type "HEARTH ENCRYPTED PRIVATE
// KEY" with these headers (in any order in the file):
//
//	Version:    1
//	Key:        root | intermediate
//	KDF:        PBKDF2-SHA256
//	Iterations: decimal iteration count (600000 unless InitWithIterations chose)
//	Salt:       base64 (standard, padded) of a random 16-byte salt
//	Cipher:     AES-256-GCM
//	Nonce:      base64 of a random 12-byte GCM nonce
//
// The body is AES-256-GCM(key, nonce, PKCS#8 DER of the private key), tag
// appended, where key = PBKDF2-HMAC-SHA256(passphrase, salt, iterations, 32).
// The additional authenticated data is the headers Version, Key, KDF,
// Iterations, Salt and Cipher, each as "Name: value\n", in that order,
// so a file cannot be relabelled (root for intermediate) or downgraded to
// fewer iterations without failing authentication. Only the standard library
// is needed to read it.
//
// Both key files of one CA share the salt and iteration count (each has its
// own nonce), so opening a CA derives one key: about 0.12 s on an x86 core
// with SHA extensions at 600,000 iterations, the OWASP 2023 figure for
// PBKDF2-HMAC-SHA256. The count is read from the file, so a later version can
// raise it without breaking existing CAs. Authentication failure is reported
// as ErrWrongPassphrase: GCM cannot tell a wrong passphrase from a ciphertext
// altered on disk.
//
// # Passphrase
//
// ResolvePassphrase picks the passphrase, in order: a passphrase file named by
// the operator, the HEARTH_CA_PASSPHRASE value, the legacy fallback file
// <data>/ca/passphrase (moved into the store when one is configured), the
// passphrase store outside the data directory, or a passphrase generated into
// the store (32 random bytes, base64, mode 0600) when no CA exists yet. A file
// or store inside the data directory is refused (ErrPassphraseBesideKeys):
// encryption at rest protects against a leaked backup or copied data
// directory only when the passphrase is not in it.
//
// # Fingerprints
//
// Fingerprint returns the root's fingerprint in the protocol's written form
// (protocol.Fingerprint: the SHA-256 of its DER encoding); agents pin it.
// protocol.ParseFingerprint reads it back, also as openssl x509 -fingerprint
// prints it.
//
// # Intermediate rotation
//
// RotateIntermediate decrypts the root key (with the passphrase given at that
// moment), signs a new intermediate, named IntermediateCommonName plus its
// creation time so the two are told apart by issuer name, and puts it in force
// crash-safely (see rotate.go: a crash leaves the old or the new one in force,
// never a mix). The replaced one is Previous: still in the bundle ChainPEM and
// the Intermediates pool, still signing its own CRL (PreviousCRL), until
// RetirePrevious, once no device uses it. RootCRL signs, with the root key, a
// CRL revoking intermediates (an intermediate compromise). RotateRoot does the
// same with a new root above the new intermediate, and a cross-certificate (the
// new root's subject and key signed by the old root) through which agents
// pinned to the old root verify the new chain and move their pin; the old root
// is PreviousRoot, trusted by Roots and RootPool until RetirePrevious
// (rootrotate.go).
//
// # Concurrency
//
// A *CA is safe for concurrent use. Its state (certificates, keys) is
// immutable and replaced as a whole by RotateIntermediate and RetirePrevious,
// so every method works on one generation. Init and
// ResolvePassphrase's generation are not safe against a second process
// initializing the same directory at the same moment.
package ca
