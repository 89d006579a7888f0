// Package hass makes the hub and every device it manages visible in Home Assistant: it
// publishes MQTT discovery for them on Home Assistant's own broker (the one the Mosquitto
// add-on provides, found through the Supervisor with DiscoverBroker), keeps their states
// current, and carries the bridge API requests that Home Assistant sends on that broker — a
// "Renew certificate" button press among them — to the hub.
//
// # Topics on Home Assistant's broker
//
// With the default prefixes ("homeassistant" for discovery, "hearth" for Hearth):
//
//	homeassistant/device/hearth_hub/config      retained  hub device discovery
//	homeassistant/device/hearth_<oid>/config    retained  one device's discovery
//	hearth/hass/hub/state                       retained  hub state (JSON)
//	hearth/hass/device/<oid>/state              retained  device state (JSON), with "online"
//	hearth/hass/hub/alert                       out       the Alert event entity's events (Publish)
//	hearth/bridge/state                         retained  "online", or "offline" (Will)
//	hearth/bridge/request/<op>                  in        bridge request, handed to Bridge
//	hearth/bridge/response/<op>                 out       the Bridge's reply
//	homeassistant/status                        in        HA's birth message: "online" (Config.BirthTopic,
//	                                                      the same whatever the discovery prefix)
//
// <oid> is the device id when it is made of letters, digits, '_' and '-' (and is not "hub");
// any other id is cleaned and suffixed with a short hash of itself, so that every device gets
// a distinct, valid discovery topic and the id never breaks a topic.
//
// Device-based discovery is used (one config per device with its components under "cmps"),
// with default_entity_id (object_id is gone from Home Assistant), an origin block, and every
// entity's availability tied to hearth/bridge/state — and, for a device with an agent, to its
// own "online" too (availability_mode all). The state payloads and the value
// templates that read them are documented on deviceState and hubState and locked by the
// golden files in testdata/.
//
// # Invariants
//
//   - What is retained on the broker converges to the updates given: UpdateDevice publishes a
//     device's config and state (only the payloads that changed), RemoveDevice clears both
//     topics (an empty retained payload, which makes Home Assistant remove the entities).
//     Retained Hearth configs found on the broker for devices never given (removed while the
//     hub was down) are cleared too, but only after Complete, so a restart never removes
//     entities.
//   - The work of an update is independent of the number of devices: only changed objects
//     are rendered and published, and what is retained is remembered by digest, not payload.
//     Everything is published again only on a new connection (the broker may have lost its
//     retained store) and when Home Assistant announces itself online.
//   - Retained bridge requests are never executed: a request must be sent live; an empty
//     payload (a retained request being cleared) is ignored without a reply. A Renew press
//     the Bridge refuses becomes a renew_failed event.
//
// # Concurrency
//
// New starts nothing. Run owns the MQTT connection and every publication; it runs one
// goroutine for bridge requests besides its own loop. UpdateHub, UpdateDevice, RemoveDevice
// and Complete may be called from any goroutine, before or during Run, and never block on the
// network: changes coalesce, and Run publishes the latest state of each changed object.
// paho's handlers only hand messages over through channels and never block.
package hass
