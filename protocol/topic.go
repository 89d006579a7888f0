package protocol

import (
	"errors"
	"fmt"
	"strings"
)

// Kind names what a topic carries.
type Kind string

// The topic kinds. Device kinds live under "<prefix>/v1/dev/<id>/<kind>".
const (
	KindCSR     Kind = "csr"     // agent → hub: a certificate signing request
	KindCert    Kind = "cert"    // hub → agent: the issued chain, or an error
	KindCommit  Kind = "commit"  // agent → hub: the outcome of an install
	KindAck     Kind = "ack"     // hub → agent: the hub's answer to a commit
	KindCmd     Kind = "cmd"     // hub → agent: a command (renew, report, rekey)
	KindRenewal Kind = "renewal" // hub → agent, retained: the suggested renewal window
	KindHealth  Kind = "health"  // agent → hub: a health report
	KindState   Kind = "state"   // agent (Will), retained: online or offline

	KindCA  Kind = "ca"  // hub, retained: the CA chain (PEM)
	KindCRL Kind = "crl" // hub, retained: the current CRL (PEM)

	KindBridgeState    Kind = "bridge/state"    // hub (Will), retained: online or offline
	KindBridgeInfo     Kind = "bridge/info"     // hub, retained: version and settings
	KindBridgeDevices  Kind = "bridge/devices"  // hub, retained: the fleet's counts (KindBridgeDevice: one device)
	KindBridgeEvent    Kind = "bridge/event"    // hub: renewal, revocation and alert events
	KindBridgeRequest  Kind = "bridge/request"  // admin → hub: "<prefix>/bridge/request/<op>"
	KindBridgeResponse Kind = "bridge/response" // hub → admin: "<prefix>/bridge/response/<op>"
)

// deviceKinds lists the kinds that exist once per device, in the order of the spec.
var deviceKinds = []Kind{KindCSR, KindCert, KindCommit, KindAck, KindCmd, KindRenewal, KindHealth, KindState}

// DeviceKinds returns the kinds that exist once per device.
func DeviceKinds() []Kind { return append([]Kind(nil), deviceKinds...) }

// IsDeviceKind reports whether k is a per-device kind.
func IsDeviceKind(k Kind) bool {
	for _, d := range deviceKinds {
		if d == k {
			return true
		}
	}
	return false
}

// ErrTopic is wrapped by every error of Topics.Parse.
var ErrTopic = errors.New("not a hearth topic")

// Topics builds and parses topic names under one prefix. The zero value uses DefaultPrefix.
type Topics struct {
	prefix string
}

// NewTopics returns Topics for prefix, which must be one or more topic levels of
// [a-zA-Z0-9_-] separated by '/', with no wildcard and no leading or trailing '/'.
func NewTopics(prefix string) (Topics, error) {
	if prefix == "" {
		return Topics{}, nil
	}
	for _, level := range strings.Split(prefix, "/") {
		if level == "" || len(level) > 64 {
			return Topics{}, fmt.Errorf("topic prefix %q: empty or over-long level", prefix)
		}
		for _, r := range level {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				return Topics{}, fmt.Errorf("topic prefix %q: character %q not allowed", prefix, r)
			}
		}
	}
	return Topics{prefix: prefix}, nil
}

// Prefix returns the prefix in use.
func (t Topics) Prefix() string {
	if t.prefix == "" {
		return DefaultPrefix
	}
	return t.prefix
}

func (t Topics) versioned() string { return fmt.Sprintf("%s/v%d", t.Prefix(), Version) }

// Device returns the topic of kind k for device id, e.g. "hearth/v1/dev/thermostat-1/csr".
func (t Topics) Device(id string, k Kind) string {
	return t.versioned() + "/dev/" + id + "/" + string(k)
}

// DeviceFilter returns the filter matching every topic of device id.
func (t Topics) DeviceFilter(id string) string { return t.versioned() + "/dev/" + id + "/#" }

// AllDevices returns the filter matching kind k of every device, e.g. "hearth/v1/dev/+/csr".
func (t Topics) AllDevices(k Kind) string { return t.versioned() + "/dev/+/" + string(k) }

// CA returns the retained CA chain topic.
func (t Topics) CA() string { return t.versioned() + "/ca" }

// CRL returns the retained CRL topic.
func (t Topics) CRL() string { return t.versioned() + "/crl" }

// Bridge returns a hub topic of kind k (KindBridgeState, Info, Devices or Event).
func (t Topics) Bridge(k Kind) string { return t.Prefix() + "/" + string(k) }

// BridgeRequest returns the request topic of admin operation op, e.g. "device/renew".
func (t Topics) BridgeRequest(op string) string { return t.Prefix() + "/bridge/request/" + op }

// BridgeResponse returns the response topic of admin operation op.
func (t Topics) BridgeResponse(op string) string { return t.Prefix() + "/bridge/response/" + op }

// Topic is a parsed topic name.
type Topic struct {
	Kind     Kind
	DeviceID string // set for device kinds
	Op       string // set for bridge requests and responses
}

// Parse parses a concrete topic name (no wildcards). Errors wrap ErrTopic.
func (t Topics) Parse(topic string) (Topic, error) {
	rest, ok := strings.CutPrefix(topic, t.Prefix()+"/")
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q lacks prefix %q", ErrTopic, topic, t.Prefix())
	}
	if strings.ContainsAny(rest, "+#") {
		return Topic{}, fmt.Errorf("%w: %q contains a wildcard", ErrTopic, topic)
	}
	if op, ok := strings.CutPrefix(rest, "bridge/request/"); ok {
		if err := ValidateOp(op); err != nil {
			return Topic{}, fmt.Errorf("%w: %w", ErrTopic, err)
		}
		return Topic{Kind: KindBridgeRequest, Op: op}, nil
	}
	if op, ok := strings.CutPrefix(rest, "bridge/response/"); ok {
		if err := ValidateOp(op); err != nil {
			return Topic{}, fmt.Errorf("%w: %w", ErrTopic, err)
		}
		return Topic{Kind: KindBridgeResponse, Op: op}, nil
	}
	switch k := Kind(rest); k {
	case KindBridgeState, KindBridgeInfo, KindBridgeDevices, KindBridgeEvent:
		return Topic{Kind: k}, nil
	}
	if tp, ok, err := parseBridgeDevice(rest); ok {
		if err != nil {
			return Topic{}, fmt.Errorf("%w: %w", ErrTopic, err)
		}
		return tp, nil
	}
	v, ok := strings.CutPrefix(rest, fmt.Sprintf("v%d/", Version))
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q is not a version %d topic", ErrTopic, topic, Version)
	}
	switch Kind(v) {
	case KindCA, KindCRL:
		return Topic{Kind: Kind(v)}, nil
	}
	dev, ok := strings.CutPrefix(v, "dev/")
	if !ok {
		return Topic{}, fmt.Errorf("%w: unknown topic %q", ErrTopic, topic)
	}
	id, kind, ok := strings.Cut(dev, "/")
	if !ok || !IsDeviceKind(Kind(kind)) {
		return Topic{}, fmt.Errorf("%w: unknown device topic %q", ErrTopic, topic)
	}
	if err := ValidateDeviceID(id); err != nil {
		return Topic{}, fmt.Errorf("%w: %w", ErrTopic, err)
	}
	return Topic{Kind: Kind(kind), DeviceID: id}, nil
}

// ValidateOp checks a bridge operation name: one or two levels of [a-z0-9_-], e.g. "device/renew".
func ValidateOp(op string) error {
	levels := strings.Split(op, "/")
	if len(levels) > 2 {
		return fmt.Errorf("bridge operation %q has more than two levels", op)
	}
	for _, l := range levels {
		if l == "" || len(l) > 32 {
			return fmt.Errorf("bridge operation %q: empty or over-long level", op)
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				return fmt.Errorf("bridge operation %q: character %q not allowed", op, r)
			}
		}
	}
	return nil
}
