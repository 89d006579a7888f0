// Package keystore keeps the agent's identity — its private key and certificate chain — in a
// state directory on the device's flash, with the previous generation kept for rollback, plus
// the pinned hub CA and the agent's small persistent state.
//
// # Layout
//
// The state directory (mode 0700) holds, each file 0600:
//
//	current.pem    the identity in use: the certificate chain (leaf first, "CERTIFICATE"
//	               blocks) followed by the private key (PKCS #8, "PRIVATE KEY")
//	previous.pem   the generation current.pem replaced, same format
//	failed.pem     the generation Rollback (or an Install over a corrupt current.pem) set
//	               aside, kept only for diagnosis and never read back
//	ca.pem         the pinned hub CA chain
//	state.json     the agent's State
//	cert.pem       optional export of the chain for local services (Options.ExportPEM)
//	key.pem        optional export of the private key (Options.ExportPEM)
//	*.tmp          files being written; Open removes any it finds
//
// Key and certificates live in ONE file per generation so that switching generations is a
// single rename(2): a kill -9 or a power loss at any instant leaves current.pem either the old
// generation or the new one, never a half-written file or a key beside someone else's
// certificate. The key is written last so that any truncation of the file loses part of the key
// and is detected, instead of silently dropping an intermediate certificate.
//
// # Invariants
//
//   - Every file is replaced atomically (package atomicfile): write name.tmp (0600), fsync it,
//     rename it over the final name, fsync the directory.
//   - Install writes new.tmp, then links (or copies) current.pem to previous.tmp and renames it
//     to previous.pem, then renames new.tmp to current.pem. At every instant current.pem is a
//     complete, matching key/certificate pair, old or new. (A kill between the two renames
//     leaves previous.pem equal to current.pem, which is harmless: nothing new was installed.)
//   - Every pair read back is validated: the private key matches the leaf's public key and each
//     certificate of the chain is signed by the next one. A current.pem that fails validation is
//     never used: Current returns the previous generation with a *FallbackError describing why.
//   - Open removes leftover *.tmp files and, if current.pem is missing but previous.pem is a valid
//     pair, restores current.pem from it.
//   - cert.pem and key.pem are derived copies, written after the identity and refreshed by Open;
//     they are never read back as truth. A local service may briefly see them mismatched.
//   - Nothing in this package logs or formats private key material: Pair's String, GoString and
//     LogValue print only public facts about the certificate.
//
// # In memory
//
// Memory has the same methods and rules as Dir without any file: for simulated devices
// (hearth-fleet), where thousands share one process and nothing must outlive it.
//
// # Concurrency
//
// The methods of a Dir and of a Memory are safe for concurrent use by multiple goroutines. A
// directory must be owned by one process at a time, through one Dir: the package takes no lock
// across processes, and Current keeps the pair it validated until the Dir itself changes
// current.pem. Functions that do not take a Dir or a Memory hold no state.
package keystore
