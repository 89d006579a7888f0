package hass

// discoveryPayload is a device-based discovery message.
type discoveryPayload struct {
	Device     deviceInfo           `json:"dev"`
	Origin     origin               `json:"o"`
	Components map[string]component `json:"cmps"`
}

type deviceInfo struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Model        string   `json:"model,omitempty"`
	Manufacturer string   `json:"manufacturer,omitempty"`
	SWVersion    string   `json:"sw_version,omitempty"`
	HWVersion    string   `json:"hw_version,omitempty"`
	ViaDevice    string   `json:"via_device,omitempty"`
	// ConfigurationURL links the device's page in Home Assistant to the hub's dashboard (its
	// ingress panel in the add-on).
	ConfigurationURL string `json:"configuration_url,omitempty"`
}

type origin struct {
	Name string `json:"name"`
	SW   string `json:"sw,omitempty"`
	URL  string `json:"url"`
}

// component is one entity of a device-based discovery message. Full option names are used
// rather than abbreviations, for whoever reads the retained messages.
type component struct {
	Platform               string         `json:"platform"`
	Name                   string         `json:"name"`
	UniqueID               string         `json:"unique_id"`
	DefaultEntityID        string         `json:"default_entity_id"`
	DeviceClass            string         `json:"device_class,omitempty"`
	StateClass             string         `json:"state_class,omitempty"`
	UnitOfMeasurement      string         `json:"unit_of_measurement,omitempty"`
	SuggestedPrecision     *int           `json:"suggested_display_precision,omitempty"`
	EntityCategory         string         `json:"entity_category,omitempty"`
	EnabledByDefault       *bool          `json:"enabled_by_default,omitempty"`
	Icon                   string         `json:"icon,omitempty"`
	StateTopic             string         `json:"state_topic,omitempty"`
	ValueTemplate          string         `json:"value_template,omitempty"`
	JSONAttributesTopic    string         `json:"json_attributes_topic,omitempty"`
	JSONAttributesTemplate string         `json:"json_attributes_template,omitempty"`
	CommandTopic           string         `json:"command_topic,omitempty"`
	PayloadPress           string         `json:"payload_press,omitempty"`
	EventTypes             []string       `json:"event_types,omitempty"`
	Availability           []availability `json:"availability"`
	AvailabilityMode       string         `json:"availability_mode,omitempty"`
	QoS                    int            `json:"qos"`
}

// availability is one entry of an entity's availability list.
type availability struct {
	Topic               string `json:"topic"`
	PayloadAvailable    string `json:"payload_available"`
	PayloadNotAvailable string `json:"payload_not_available"`
	ValueTemplate       string `json:"value_template,omitempty"`
}

// newComponent fills what every entity shares: ids, availability and QoS.
func newComponent(t topics, oid, key, platform, name string) component {
	return component{
		Platform:        platform,
		Name:            name,
		UniqueID:        nodePrefix + oid + "_" + key,
		DefaultEntityID: platform + "." + entitySlug(nodePrefix+oid+"_"+key),
		Availability:    []availability{{Topic: t.availability(), PayloadAvailable: "online", PayloadNotAvailable: "offline"}},
		QoS:             1,
	}
}

// withDeviceAvailability makes c available only while both the hub and the device's agent
// are online (availability_mode all): the second entry reads "online" from the device's
// state, which the hub keeps from the agent's session (its Will makes it offline within the
// agent's keepalive).
func withDeviceAvailability(c component, state string) component {
	c.Availability = append(c.Availability, availability{Topic: state, PayloadAvailable: "online", PayloadNotAvailable: "offline",
		ValueTemplate: tmplAvailable})
	c.AvailabilityMode = "all"
	return c
}

// deviceState is the JSON on hearth/hass/device/<oid>/state:
//
//	{"expires":"2026-05-01T12:00:00Z","last_seen":"2026-04-20T08:00:00Z","problem":true,"reasons":["expiring"],
//	 "details":["expiring: past the end of its renewal window at 2026-04-25T00:00:00Z (class default); …"]}
//
// Times are RFC 3339 in UTC, null when unknown (the value templates then render "None", which
// Home Assistant shows as unknown). reasons (problem codes) is sorted and never null; details
// holds a "code: text" sentence per problem, in the monitor's order, and is never null; text
// is the problems' sentences joined with "; ", for people ("" when all is well).
type deviceState struct {
	Expires  *string  `json:"expires"`
	LastSeen *string  `json:"last_seen"`
	Problem  bool     `json:"problem"`
	Reasons  []string `json:"reasons"`
	Details  []string `json:"details"`
	Text     string   `json:"text"`
	Online   bool     `json:"online"`
}

// hubState is the JSON on hearth/hass/hub/state:
//
//	{"online":true,"devices":12,"expiring_soon":1,"success_rate_24h":97.5,"ca_expires":"2031-01-01T00:00:00Z",
//	 "root_ca_expires":"2036-01-01T00:00:00Z","broker_cert_expires":"2027-01-01T00:00:00Z","problem":false,"problem_reason":""}
//
// The three dates follow rotations and broker certificate renewals: the hub publishes the
// state again after each.
//
// success_rate_24h is a percentage with one decimal, null when no renewal ran in 24 h.
type hubState struct {
	Online        bool     `json:"online"`
	Devices       int      `json:"devices"`
	ExpiringSoon  int      `json:"expiring_soon"`
	SuccessRate   *float64 `json:"success_rate_24h"`
	CAExpires     *string  `json:"ca_expires"`
	RootExpires   *string  `json:"root_ca_expires"`
	BrokerExpires *string  `json:"broker_cert_expires"`
	Problem       bool     `json:"problem"`
	ProblemReason string   `json:"problem_reason"`
}

// The value templates that read the state payloads.
const (
	tmplExpires       = "{{ value_json.expires }}"
	tmplLastSeen      = "{{ value_json.last_seen }}"
	tmplProblem       = "{{ 'ON' if value_json.problem else 'OFF' }}"
	tmplReasons       = "{{ {'reasons': value_json.reasons, 'details': value_json.details, 'text': value_json.text} | tojson }}"
	tmplOnline        = "{{ 'ON' if value_json.online else 'OFF' }}"
	tmplDevices       = "{{ value_json.devices }}"
	tmplExpiring      = "{{ value_json.expiring_soon }}"
	tmplSuccessRate   = "{{ value_json.success_rate_24h }}"
	tmplCAExpires     = "{{ value_json.ca_expires }}"
	tmplRootExpires   = "{{ value_json.root_ca_expires }}"
	tmplBrokerExpires = "{{ value_json.broker_cert_expires }}"
	tmplHubReason     = "{{ {'reason': value_json.problem_reason} | tojson }}"
	tmplAvailable     = "{{ 'online' if value_json.online else 'offline' }}"
)
