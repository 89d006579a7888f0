package hass

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

// Hub is what Home Assistant shows about the hub itself. The caller fills it from the
// inventory; every field is plain data.
type Hub struct {
	Version        string    // the hub's version, shown as the device's firmware and origin
	Online         bool      // the hub's broker for agents is serving
	Devices        int       // devices under management
	ExpiringSoon   int       // devices with the expiring or expired problem
	SuccessRate24h float64   // renewals that succeeded in the last 24 h, in percent (0–100); NaN if there were none
	CAExpires      time.Time // expiry of the issuing CA certificate; zero if unknown
	RootExpires    time.Time // expiry of the root CA certificate; zero if unknown
	BrokerExpires  time.Time // expiry of the broker's TLS certificate; zero if unknown
	Problem        string    // a sentence describing the hub's problem; empty when all is well
}

// Device is what Home Assistant shows about one managed device.
type Device struct {
	ID       string // the device id, as in the hub's topics
	Name     string // a display name; the id when empty
	Model    string
	Vendor   string
	Firmware string
	Expires  time.Time // not-after of the active certificate (the revoked one after a revocation); zero if none
	LastSeen time.Time // the device's last message to the hub; zero if never
	// Agent is set for a device with an agent, which a Renew press can command; a device
	// without one (imported) gets no Renew button.
	Agent bool
	// Online is set while the device's agent has a session with the hub; with Agent, every
	// entity of the device is unavailable in Home Assistant while it is not.
	Online bool
	// Family is the device's family (given at token creation), shown as its model when the
	// agent reports none; AgentVersion and Arch are the agent's, shown as the software
	// version (when the device reports no firmware) and the hardware version.
	Family, AgentVersion, Arch string
	// Problems is what is wrong, as the hub's monitor judged it: codes of the one list
	// (monitor.Codes, documented in protocol/README.md "Problems") with their texts. Home
	// Assistant shows the codes in the "reasons" attribute of the device's "Certificate
	// problem" entity and the texts in "details". Empty when all is well.
	Problems []protocol.Problem
}

const (
	nodePrefix   = "hearth_"
	hubObjectID  = "hub"
	originName   = "Hearth"
	originURL    = "https://github.com/hearth-pki/hearth"
	manufacturer = "Hearth"
	maxObjectID  = 48
)

// objectID maps a device id to the part of its discovery topic and unique ids after "hearth_".
// Ids made only of [a-zA-Z0-9_-] (up to 64 bytes) are kept as they are, except "hub", which
// names the hub; any other id is cleaned, cut, and suffixed with a hash of the whole id so that
// distinct ids never share a topic.
func objectID(id string) string {
	clean := id != "" && len(id) <= 64 && id != hubObjectID
	for _, r := range id {
		if !isTopicSafe(r) {
			clean = false
			break
		}
	}
	if clean {
		return id
	}
	var b strings.Builder
	for _, r := range id {
		if b.Len() >= maxObjectID {
			break
		}
		if isTopicSafe(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	sum := sha256.Sum256([]byte(id))
	return b.String() + "_" + hex.EncodeToString(sum[:4])
}

func isTopicSafe(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
}

// entitySlug turns an object id into the lowercase [a-z0-9_] form Home Assistant's entity ids
// take.
func entitySlug(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '_'
	}, s)
}

// topics names the topics of one Publisher.
type topics struct {
	discovery  string // "homeassistant"
	prefix     string // "hearth"
	birthTopic string // "homeassistant/status"
	dashboard  string // the dashboard's URL for configuration_url; "" for none
}

func (t topics) config(oid string) string {
	return t.discovery + "/device/" + nodePrefix + oid + "/config"
}
func (t topics) configFilter() string { return t.discovery + "/device/+/config" }
func (t topics) birth() string        { return t.birthTopic }
func (t topics) state(oid string) string {
	if oid == hubObjectID {
		return t.prefix + "/hass/hub/state"
	}
	return t.prefix + "/hass/device/" + oid + "/state"
}
func (t topics) availability() string      { return t.prefix + "/bridge/state" }
func (t topics) requestFilter() string     { return t.prefix + "/bridge/request/#" }
func (t topics) requestPrefix() string     { return t.prefix + "/bridge/request/" }
func (t topics) response(op string) string { return t.prefix + "/bridge/response/" + op }
func (t topics) renewRequest() string      { return t.requestPrefix() + "device/renew" }
func (t topics) alert() string             { return t.prefix + "/hass/hub/alert" }

// deviceURL is the device's page on the dashboard, "" without a dashboard.
func (t topics) deviceURL(id string) string {
	if t.dashboard == "" {
		return ""
	}
	return strings.TrimSuffix(t.dashboard, "/") + "/devices/" + url.PathEscape(id)
}

// agentVersion names the agent's version as a software version.
func agentVersion(v string) string {
	if v == "" {
		return ""
	}
	return "hearth-agent " + v
}

// configObjectID returns the object id of a Hearth discovery topic, or "" for any other topic.
func configObjectID(t topics, topic string) string {
	rest, ok := strings.CutPrefix(topic, t.discovery+"/device/"+nodePrefix)
	if !ok {
		return ""
	}
	oid, ok := strings.CutSuffix(rest, "/config")
	if !ok || oid == "" || strings.Contains(oid, "/") {
		return ""
	}
	return oid
}

// deviceConfig builds the discovery message of one device.
func deviceConfig(t topics, hubVersion string, d Device) []byte {
	oid := objectID(d.ID)
	state := t.state(oid)
	name := d.Name
	if name == "" {
		name = d.ID
	}

	expires := newComponent(t, oid, "certificate_expires", "sensor", "Certificate expires")
	expires.DeviceClass = "timestamp"
	expires.StateTopic = state
	expires.ValueTemplate = tmplExpires

	problem := newComponent(t, oid, "certificate_problem", "binary_sensor", "Certificate problem")
	problem.DeviceClass = "problem"
	problem.StateTopic = state
	problem.ValueTemplate = tmplProblem
	problem.JSONAttributesTopic = state
	problem.JSONAttributesTemplate = tmplReasons

	renew := newComponent(t, oid, "renew_certificate", "button", "Renew certificate")
	renew.Icon = "mdi:certificate"
	renew.EntityCategory = "config"
	renew.CommandTopic = t.renewRequest()
	renew.PayloadPress = string(mustJSON(map[string]string{"id": d.ID}))

	lastSeen := newComponent(t, oid, "last_seen", "sensor", "Last seen")
	lastSeen.DeviceClass = "timestamp"
	lastSeen.EntityCategory = "diagnostic"
	lastSeen.EnabledByDefault = new(false)
	lastSeen.StateTopic = state
	lastSeen.ValueTemplate = tmplLastSeen

	cmps := map[string]component{
		"certificate_expires": expires,
		"certificate_problem": problem,
		"last_seen":           lastSeen,
	}
	if d.Agent {
		cmps["renew_certificate"] = renew
		for k, c := range cmps {
			cmps[k] = withDeviceAvailability(c, state)
		}
	}
	return mustJSON(discoveryPayload{
		Device: deviceInfo{
			Identifiers:      []string{nodePrefix + oid},
			Name:             name,
			Model:            cmp.Or(d.Model, d.Family),
			Manufacturer:     d.Vendor,
			SWVersion:        cmp.Or(d.Firmware, agentVersion(d.AgentVersion)),
			HWVersion:        d.Arch,
			ViaDevice:        nodePrefix + hubObjectID,
			ConfigurationURL: t.deviceURL(d.ID),
		},
		Origin:     origin{Name: originName, SW: hubVersion, URL: originURL},
		Components: cmps,
	})
}

// deviceStatePayload builds the state message of one device.
func deviceStatePayload(d Device) []byte {
	reasons, details, texts := []string{}, []string{}, []string{}
	for _, p := range d.Problems {
		reasons = append(reasons, p.Code)
		if p.Text != "" {
			details = append(details, p.Code+": "+p.Text)
			texts = append(texts, p.Text)
		}
	}
	if reasons = slices.Compact(slices.Sorted(slices.Values(reasons))); reasons == nil {
		reasons = []string{}
	}
	return mustJSON(deviceState{
		Expires:  timestamp(d.Expires),
		LastSeen: timestamp(d.LastSeen),
		Problem:  len(reasons) > 0,
		Reasons:  reasons,
		Details:  details,
		Text:     strings.Join(texts, "; "),
		Online:   d.Online || !d.Agent,
	})
}

// hubConfig builds the discovery message of the hub.
func hubConfig(t topics, h Hub) []byte {
	state := t.state(hubObjectID)
	measure := func(key, name, icon string) component {
		c := newComponent(t, hubObjectID, key, "sensor", name)
		c.StateClass = "measurement"
		c.Icon = icon
		c.StateTopic = state
		return c
	}

	connectivity := newComponent(t, hubObjectID, "connectivity", "binary_sensor", "Connectivity")
	connectivity.DeviceClass = "connectivity"
	connectivity.EntityCategory = "diagnostic"
	connectivity.StateTopic = state
	connectivity.ValueTemplate = tmplOnline

	devices := measure("managed_devices", "Managed devices", "mdi:devices")
	devices.ValueTemplate = tmplDevices

	expiring := measure("expiring_soon", "Devices with expiring certificates", "mdi:certificate-outline")
	expiring.ValueTemplate = tmplExpiring

	rate := measure("renewal_success_rate", "Renewal success rate (24 h)", "mdi:percent-circle-outline")
	rate.UnitOfMeasurement = "%"
	rate.SuggestedPrecision = new(1)
	rate.ValueTemplate = tmplSuccessRate

	caExpires := newComponent(t, hubObjectID, "ca_expires", "sensor", "CA expires")
	caExpires.DeviceClass = "timestamp"
	caExpires.EntityCategory = "diagnostic"
	caExpires.StateTopic = state
	caExpires.ValueTemplate = tmplCAExpires

	rootExpires := newComponent(t, hubObjectID, "root_ca_expires", "sensor", "Root CA expires")
	rootExpires.DeviceClass = "timestamp"
	rootExpires.EntityCategory = "diagnostic"
	rootExpires.StateTopic = state
	rootExpires.ValueTemplate = tmplRootExpires

	brokerExpires := newComponent(t, hubObjectID, "broker_certificate_expires", "sensor", "Broker certificate expires")
	brokerExpires.DeviceClass = "timestamp"
	brokerExpires.EntityCategory = "diagnostic"
	brokerExpires.StateTopic = state
	brokerExpires.ValueTemplate = tmplBrokerExpires

	problem := newComponent(t, hubObjectID, "problem", "binary_sensor", "Problem")
	problem.DeviceClass = "problem"
	problem.StateTopic = state
	problem.ValueTemplate = tmplProblem
	problem.JSONAttributesTopic = state
	problem.JSONAttributesTemplate = tmplHubReason

	// Alerts (gateway/internal/alert) arrive as events: raised, resolved, and renew_failed
	// for a Renew press the hub refused.
	alerts := newComponent(t, hubObjectID, "alert", "event", "Alert")
	alerts.Icon = "mdi:alert-circle-outline"
	alerts.StateTopic = t.alert()
	alerts.EventTypes = EventTypes()

	return mustJSON(discoveryPayload{
		Device: deviceInfo{
			Identifiers:      []string{nodePrefix + hubObjectID},
			Name:             "Hearth",
			Model:            "Certificate hub",
			Manufacturer:     manufacturer,
			SWVersion:        h.Version,
			ConfigurationURL: t.dashboard,
		},
		Origin: origin{Name: originName, SW: h.Version, URL: originURL},
		Components: map[string]component{
			"connectivity":               connectivity,
			"managed_devices":            devices,
			"expiring_soon":              expiring,
			"renewal_success_rate":       rate,
			"ca_expires":                 caExpires,
			"root_ca_expires":            rootExpires,
			"broker_certificate_expires": brokerExpires,
			"problem":                    problem,
			"alert":                      alerts,
		},
	})
}

// hubStatePayload builds the state message of the hub.
func hubStatePayload(h Hub) []byte {
	var rate *float64
	if !math.IsNaN(h.SuccessRate24h) && !math.IsInf(h.SuccessRate24h, 0) {
		rate = new(math.Round(h.SuccessRate24h*10) / 10)
	}
	return mustJSON(hubState{
		Online:        h.Online,
		Devices:       h.Devices,
		ExpiringSoon:  h.ExpiringSoon,
		SuccessRate:   rate,
		CAExpires:     timestamp(h.CAExpires),
		RootExpires:   timestamp(h.RootExpires),
		BrokerExpires: timestamp(h.BrokerExpires),
		Problem:       h.Problem != "",
		ProblemReason: h.Problem,
	})
}

// timestamp formats t for a timestamp sensor: RFC 3339 in UTC to the second, nil when zero.
func timestamp(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	return new(t.UTC().Truncate(time.Second).Format(time.RFC3339))
}

// mustJSON encodes v, which is always one of this package's payload types and so encodable,
// without HTML escaping (templates are read by people).
func mustJSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("hass: encoding a payload: " + err.Error())
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
