package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
)

// Names of the built-in classes. Both always exist; a policy file changes them by
// declaring a class with the same name.
const (
	// DefaultClass is the class of every device no other class matches, and the
	// class every other class inherits unset settings from.
	DefaultClass = "default"
	// HighRiskClass is the class for locks, alarms and other safety devices:
	// 7-day certificates, no renewal after expiry, scheduled first. It matches
	// devices tagged "high-risk" unless the file gives it another match.
	HighRiskClass = "high-risk"
)

// Key algorithm names, as written in a class's keys list and in CSRInfo.KeyAlgorithm: the
// families of the protocol's key names (protocol.KeyAlgorithm.Family), "rsa" for every RSA
// size.
const (
	KeyP256    = "p256"
	KeyP384    = "p384"
	KeyEd25519 = "ed25519"
	KeyRSA     = "rsa"
)

// MinRSABits is the smallest RSA modulus any class may allow (NIST SP 800-131A).
const MinRSABits = 2048

// Named priority levels. Priority is 0..100; a higher number is renewed first.
const (
	PriorityLow      = 25
	PriorityNormal   = 50
	PriorityHigh     = 75
	PriorityCritical = 100
)

// VerifyMode says how an agent proves a renewed certificate works before the
// hub makes it active.
type VerifyMode string

// VerifyReconnect is the only verify mode: the agent reconnects presenting the
// new certificate and commits on that session, and the hub activates the
// certificate only when the session presents the committed serial (protocol
// README, "Renewal: two phases, commit by reconnect").
//
// There is deliberately no "local" mode (the agent checks chain and key and
// commits without reconnecting): the wire protocol cannot express it, and it
// would let the hub activate a certificate no TLS session ever proved, so the
// broker could refuse the device's next connection with nothing to roll back
// to. Parse refuses "verify: local" instead of accepting a setting that would
// have no effect (issue 9).
const VerifyReconnect VerifyMode = "reconnect"

// MaxSize is the largest policy text Parse and Load accept.
const MaxSize = 1 << 20

// Policy is the hub's issuance and renewal policy: a backdate and a list of device
// classes. Build one with Parse, Load or Default; a Policy built or changed in code
// should pass Validate. A Policy is read-only once in use: its methods are safe for
// concurrent use as long as nobody modifies it.
type Policy struct {
	// Backdate is subtracted from not-before so that devices whose clock runs a
	// little behind accept a new certificate at once. 0 means no backdate: an
	// unset backdate is resolved to one minute by Parse, not by a zero value.
	Backdate time.Duration
	// Classes in the order that breaks ties between tag matches (see ClassFor).
	// It always holds DefaultClass (first, after Parse) and HighRiskClass.
	Classes []Class
}

// Class is the policy for one class of devices.
type Class struct {
	// Name identifies the class in rules and on the dashboard.
	Name string
	// Match selects the devices of the class. DefaultClass has none.
	Match Match
	// Keys are the key algorithms a CSR may use.
	Keys []KeyRule
	// Lifetime is the validity of a leaf certificate.
	Lifetime time.Duration
	// RenewAt is the fraction of the lifetime after which the renewal window
	// opens; zero when RenewBefore is used instead.
	RenewAt float64
	// RenewBefore opens the renewal window this long before expiry; zero when
	// RenewAt is used instead.
	RenewBefore time.Duration
	// Jitter spreads the window start by ±Jitter of the interval that defines it,
	// deterministically per certificate serial.
	Jitter float64
	// EmergencyFloor is the fraction of the lifetime left at which a certificate
	// is renewed at once, whatever the window and backoff say.
	EmergencyFloor float64
	// Rekey refuses a renewal whose CSR carries the current certificate's key.
	Rekey bool
	// Grace is how long after expiry a certificate may still be renewed
	// (recovery); zero means never.
	Grace time.Duration
	// Verify is how the agent proves a new certificate before the hub activates
	// it; always VerifyReconnect. The setting is kept so that policy files
	// written from the old reference ("verify: reconnect") still parse and hash
	// the same.
	Verify VerifyMode
	// Priority orders renewals: 0..100, higher first.
	Priority int
	// DNSNames are the patterns a DNS SAN requested in a CSR must match to be put
	// in the leaf ("*" matches one label, "{device}" the device id). Empty: none.
	DNSNames []string
	// ServerAuth adds the serverAuth extended key usage (devices that also serve TLS).
	ServerAuth bool
}

// Match selects devices: by explicit device id, by any of the device's tags, or by
// its family. See ClassFor for precedence.
type Match struct {
	Devices  []string
	Tags     []string
	Families []string
}

// KeyRule allows one key algorithm; MinBits is the smallest RSA modulus (RSA only).
type KeyRule struct {
	Algorithm string
	MinBits   int
}

// String returns the rule as written in YAML: "p256", "ed25519", "rsa2048".
func (k KeyRule) String() string {
	if k.Algorithm == KeyRSA {
		return fmt.Sprintf("rsa%d", k.MinBits)
	}
	return k.Algorithm
}

// Default returns the built-in policy (gateway/README.md, "Policy"; annotated in
// testdata/default.yaml): P-256, P-384 and Ed25519 keys; 30-day certificates renewed from
// 2/3 of their lifetime ±10 %; an emergency floor at 1/20 left; a new key on every renewal;
// no renewal after expiry; verify by reconnect; a one-minute backdate; and the high-risk
// class (7 days, first).
func Default() *Policy {
	p, _ := resolve(nil)
	return p
}

// builtinDefault is the default class as shipped.
func builtinDefault() Class {
	return Class{
		Name: DefaultClass,
		Keys: []KeyRule{
			{Algorithm: KeyP256}, {Algorithm: KeyP384}, {Algorithm: KeyEd25519},
		},
		Lifetime:       30 * 24 * time.Hour,
		RenewAt:        2.0 / 3.0,
		Jitter:         0.1,
		EmergencyFloor: 1.0 / 20.0,
		Rekey:          true,
		Grace:          0,
		Verify:         VerifyReconnect,
		Priority:       PriorityNormal,
	}
}

// applyHighRisk sets the high-risk class's own settings on c: those named in
// highRiskKeys. The others come from the (resolved) default class.
func applyHighRisk(c *Class) {
	c.Name = HighRiskClass
	c.Match = Match{Tags: []string{HighRiskClass}}
	c.Lifetime = 7 * 24 * time.Hour
	c.Grace = 0
	c.Priority = PriorityHigh
}

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", path, err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", path, err)
	}
	return p, nil
}

// Parse decodes and validates a policy written in YAML (see the package
// documentation for the format). Empty text gives Default(). Unset settings take
// the default class's value (or the built-in class's). Every problem found is
// reported, each as a *FieldError naming the setting; they wrap ErrInvalid.
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxSize {
		return nil, join([]*FieldError{{Msg: fmt.Sprintf("policy is %d bytes, more than the %d allowed", len(data), MaxSize)}})
	}
	root, ferr := parseYAML(data)
	if ferr != nil {
		return nil, join([]*FieldError{ferr})
	}
	var d decoder
	raw := d.policy(root)
	if len(d.errs) > 0 {
		return nil, join(d.errs)
	}
	p, origins := resolve(raw)
	if errs := validate(p, origins, raw.backdateLine); len(errs) > 0 {
		return nil, join(errs)
	}
	return p, nil
}

// parseYAML returns the single document's root node, or nil for an empty text.
func parseYAML(data []byte) (root *yaml.Node, ferr *FieldError) {
	// yaml.v3 is a large parser of untrusted text; a panic in it must not take
	// the hub down, so it becomes an error here.
	defer func() {
		if r := recover(); r != nil {
			root, ferr = nil, &FieldError{Msg: fmt.Sprintf("not valid YAML: parser failed: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, &FieldError{Msg: "not valid YAML: " + err.Error()}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &FieldError{Line: extra.Line, Msg: "more than one YAML document (remove the '---' separator)"}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// resolve builds the Policy from decoded text (nil: no text) and returns, for
// each class, where its settings came from (for error messages).
func resolve(raw *rawPolicy) (*Policy, []origin) {
	if raw == nil {
		raw = &rawPolicy{}
	}
	p := &Policy{Backdate: time.Minute}
	if raw.backdate != nil {
		p.Backdate = *raw.backdate
	}
	byName := map[string]*rawClass{}
	for i := range raw.classes {
		byName[raw.classes[i].c.Name] = &raw.classes[i]
	}

	def := builtinDefault()
	defOrigin := origin{path: "classes." + DefaultClass, own: allFields}
	if rc := byName[DefaultClass]; rc != nil {
		overlay(&def, rc)
		defOrigin = rc.origin(allFields)
	}
	high := cloneClass(def)
	applyHighRisk(&high)
	highRiskKeys := fieldSet([]string{"match", "lifetime", "grace", "priority"})
	highOrigin := origin{path: "classes." + HighRiskClass, own: highRiskKeys}
	if rc := byName[HighRiskClass]; rc != nil {
		overlay(&high, rc)
		highOrigin = rc.origin(highRiskKeys)
	}

	// The default class comes first wherever the text puts it (it has no
	// match, so its place decides nothing), then the high-risk class if the
	// text does not place it, then the text's classes in order.
	p.Classes = append(p.Classes, def)
	origins := []origin{defOrigin}
	if byName[HighRiskClass] == nil {
		p.Classes = append(p.Classes, high)
		origins = append(origins, highOrigin)
	}
	for i := range raw.classes {
		rc := &raw.classes[i]
		switch rc.c.Name {
		case DefaultClass:
		case HighRiskClass:
			p.Classes = append(p.Classes, high)
			origins = append(origins, highOrigin)
		default:
			c := cloneClass(def)
			c.Name = rc.c.Name
			c.Match = Match{} // a match is never inherited
			overlay(&c, rc)
			p.Classes = append(p.Classes, c)
			origins = append(origins, rc.origin(nil))
		}
	}
	for i := range p.Classes {
		normalize(&p.Classes[i])
	}
	return p, origins
}

// normalize makes empty lists nil, so that a class written "dns_names: []"
// equals one that does not mention dns_names.
func normalize(c *Class) {
	for _, l := range []*[]string{&c.Match.Devices, &c.Match.Tags, &c.Match.Families, &c.DNSNames} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if len(c.Keys) == 0 {
		c.Keys = nil
	}
}

// overlay copies onto dst the settings rc sets.
func overlay(dst *Class, rc *rawClass) {
	src := rc.c
	for key := range rc.set {
		switch key {
		case "match":
			dst.Match = cloneMatch(src.Match)
		case "keys":
			dst.Keys = slices.Clone(src.Keys)
		case "lifetime":
			dst.Lifetime = src.Lifetime
		case "renew_at", "renew_before":
			// The window is one setting written two ways: setting either
			// replaces the inherited one.
			dst.RenewAt, dst.RenewBefore = src.RenewAt, src.RenewBefore
		case "jitter":
			dst.Jitter = src.Jitter
		case "emergency_floor":
			dst.EmergencyFloor = src.EmergencyFloor
		case "rekey":
			dst.Rekey = src.Rekey
		case "grace":
			dst.Grace = src.Grace
		case "verify":
			dst.Verify = src.Verify
		case "priority":
			dst.Priority = src.Priority
		case "dns_names":
			dst.DNSNames = slices.Clone(src.DNSNames)
		case "server_auth":
			dst.ServerAuth = src.ServerAuth
		}
	}
}

// cloneClass returns a deep copy of c.
func cloneClass(c Class) Class {
	c.Match = cloneMatch(c.Match)
	c.Keys = slices.Clone(c.Keys)
	c.DNSNames = slices.Clone(c.DNSNames)
	return c
}

func cloneMatch(m Match) Match {
	return Match{Devices: slices.Clone(m.Devices), Tags: slices.Clone(m.Tags), Families: slices.Clone(m.Families)}
}

// class returns the class named name, or nil.
func (p *Policy) class(name string) *Class {
	for i := range p.Classes {
		if p.Classes[i].Name == name {
			return &p.Classes[i]
		}
	}
	return nil
}
