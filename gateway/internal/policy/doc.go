// Package policy is the hub's policy engine: pure decisions about certificates,
// each a function of plain inputs and of a time passed in, each returning a
// reason a person can read (the dashboard shows it).
//
//   - ClassFor chooses a device's class.
//   - Admit decides whether a CSR may be signed, and with which Profile;
//     a refusal is a typed Refusal carrying the wire code front ends answer
//     with (weak_key, expired, policy_denied, …) and naming the rule that
//     refused ("classes.camera.keys").
//   - Window computes when a certificate should be renewed (the window the hub
//     publishes to the agent, in the spirit of ACME ARI, RFC 9773); Due and
//     Window.Phase say where a moment falls in it; Urgency orders the renewal
//     scheduler's work; Backoff spaces retries.
//   - Parse, Load, Default, Validate, Marshal, Hash and Diff read, check, write,
//     identify and compare policies.
//
// The design follows cert-manager (decisions as a chain of small check
// functions, policies/policies.go; renewal time from not-before/not-after,
// pki/renewaltime.go) and certmagic (renewal windows as plain functions of a
// certificate's validity).
//
// # Invariants
//
// A Policy returned by Parse, Load or Default is valid: it holds the built-in
// classes "default" and "high-risk", every device id, tag and family selects at
// most one class, and each class's window opens (even with the largest jitter)
// before its emergency floor. Decisions never read the clock, the disk or a
// random source: the same inputs give the same answer. The jitter of a window
// comes from a hash of the certificate's serial, so a certificate's window never
// moves between calls, restarts or hubs.
//
// # Concurrency
//
// A Policy is not modified by any function of this package; it may be shared by
// any number of goroutines as long as nobody changes it. Swap policies by
// replacing the pointer.
//
// # Class precedence
//
// A device's class is, most specific first: the class listing its device id
// (match.devices), else a class listing one of its tags (match.tags; among
// several, the highest priority, then the first in the list), else the class
// listing its family (match.families), else "default".
//
// # YAML reference
//
// testdata/default.yaml is the default policy written out with a comment on
// every key. Unknown keys, a key set twice, YAML aliases and several documents
// are refused. A key with no value (or ~) is unset. Durations are Go durations
// with one more unit, "d" for 24 hours, which may only lead ("30d", "1d12h",
// "72h", "1m"). Fractions are decimals ("0.66") or ratios ("2/3").
//
//	version: 1              # optional; the only version there is
//	backdate: 1m            # not-before is set this far in the past (0s..1h; 0s: none)
//	classes:                # list; built-in classes not listed keep their settings
//	  - name: camera        # required; lowercase letters, digits, '-'
//	    match:              # not allowed on "default"; never inherited
//	      devices: [cam-1]  # device ids
//	      tags: [outdoor]   # any one of the device's tags
//	      families: [acme]  # the device's family
//	    keys: [p256, p384, ed25519]  # also rsa (at least 2048 bits) or rsa3072 …
//	    lifetime: 30d       # leaf validity, 1h..825d
//	    renew_at: 2/3       # window opens at this fraction of the lifetime, (0, 1)
//	    # renew_before: 72h # … or this long before expiry (not both)
//	    jitter: 0.1         # ±fraction of the interval that places the start, 0..0.5
//	    emergency_floor: 1/20  # renew at once when this fraction is left, (0, 0.5]
//	    rekey: true         # refuse a renewal that keeps the current key
//	    grace: 0s           # renewal allowed this long after expiry (recovery), 0..lifetime
//	    verify: reconnect   # the only mode (commit by reconnect); "local" is refused
//	    priority: normal    # low (25), normal (50), high (75), critical (100) or 0..100
//	    dns_names: []       # patterns for DNS SANs: "*.lan", "{device}.home.arpa"
//	    server_auth: false  # add the serverAuth extended key usage
//
// Inheritance: a setting a class leaves unset takes the value of the "default"
// class, after the file's changes to "default" (a class's match is never
// inherited; renew_at and renew_before are one setting). The built-in
// "high-risk" class sets its own match (tags [high-risk]), lifetime 7d, grace
// 0s and priority high; a file's "high-risk" entry overrides those it names.
//
// The jitter moves the window start by up to ±jitter of the interval that
// places it: with renew_at, the span from not-before to the nominal start
// (30 days × 2/3 ± 10 % = day 18 to 22); with renew_before, the lead time
// before expiry. DNS name patterns match whole labels: "*" (first label only)
// matches one label, "{device}" the lowercased device id; requested names no
// pattern allows are left out of the certificate and listed in the Decision.
package policy
