package broker

import (
	"fmt"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/hearth-pki/hearth/protocol"
)

// grant is what one session may do, computed once at CONNECT from its Identity. It is
// immutable, so the ACL checks mochi runs for every delivered message are a few string
// comparisons.
type grant struct {
	id     Identity
	reads  []string // exact topics the session may subscribe to and receive; nil for admins
	prefix string   // admins: every topic and filter under prefix+"/" is readable
}

// newGrant returns the grant of id under topics.
func newGrant(topics protocol.Topics, id Identity) *grant {
	g := &grant{id: id}
	switch {
	case id.Role == RoleDevice: // a recovery session (Expired) reads the same, publishes only its CSR
		g.reads = []string{
			topics.Device(id.DeviceID, protocol.KindCert),
			topics.Device(id.DeviceID, protocol.KindAck),
			topics.Device(id.DeviceID, protocol.KindCmd),
			topics.Device(id.DeviceID, protocol.KindRenewal),
			topics.CA(),
			topics.CRL(),
		}
	case id.Role == RoleEnrolling || id.Role == RoleRefused:
		g.reads = []string{topics.Device(id.DeviceID, protocol.KindCert), topics.CA()}
	case id.Role == RoleAdmin:
		g.prefix = topics.Prefix() + "/"
	}
	return g
}

// mayRead reports whether the session may subscribe to filter, or receive a message on the
// topic filter. Devices and enrolling sessions name exact topics only: a wildcard filter is
// refused even when it would match only their own topics, so no filter can ever reach
// another device's topics. Admins read anything under the prefix (never "#", "$SYS/…" or
// "$share/…", which do not start with it).
func (g *grant) mayRead(filter string) bool {
	if g.prefix != "" {
		return strings.HasPrefix(filter, g.prefix)
	}
	for _, t := range g.reads {
		if filter == t {
			return true
		}
	}
	return false
}

// mayPublish reports whether the session may publish on the parsed topic t.
func (g *grant) mayPublish(t protocol.Topic) bool {
	switch g.id.Role {
	case RoleDevice:
		if t.DeviceID != g.id.DeviceID {
			return false
		}
		if g.id.Expired {
			return t.Kind == protocol.KindCSR
		}
		switch t.Kind {
		case protocol.KindCSR, protocol.KindCommit, protocol.KindHealth, protocol.KindState:
			return true
		}
	case RoleEnrolling, RoleRefused:
		return t.Kind == protocol.KindCSR && t.DeviceID == g.id.DeviceID
	case RoleAdmin:
		return t.Kind == protocol.KindBridgeRequest
	}
	return false
}

// mayRetain reports whether a message on t that the session may publish is stored as
// retained when it asks for it: only a device's own state is; everything else on hub topics
// is retained by the hub alone.
func mayRetain(t protocol.Topic) bool { return t.Kind == protocol.KindState }

// checkClientID refuses client ids that could take over another identity's session: mochi
// hands a session to whoever connects with its client id. Devices and enrolling sessions use
// their device id, optionally followed by ':' and anything (':' never occurs in device ids),
// or let the broker assign one; nobody may use mochi's inline client id.
func checkClientID(id Identity, clientID string, assigned bool) error {
	if clientID == mqtt.InlineClientId {
		return fmt.Errorf("%w: client id %q is reserved", ErrRefused, clientID)
	}
	if id.Role == RoleAdmin || assigned {
		return nil
	}
	if clientID == id.DeviceID || strings.HasPrefix(clientID, id.DeviceID+":") {
		return nil
	}
	return fmt.Errorf("%w: client id %q does not belong to device %q (use %q or %q)",
		ErrRefused, clientID, id.DeviceID, id.DeviceID, id.DeviceID+":<suffix>")
}

// checkWill accepts a Will only from a device, on its own state topic, with a valid State as
// its payload: mochi publishes (and retains) a Will without any ACL check (mochi issue #503).
func checkWill(topics protocol.Topics, id Identity, willFlag bool, willTopic string, payload []byte) error {
	if !willFlag {
		return nil
	}
	if id.Role == RoleDevice && willTopic == topics.Device(id.DeviceID, protocol.KindState) {
		if err := checkPayload(protocol.KindState, payload); err != nil {
			return fmt.Errorf("%w: Will: %w", ErrRefused, err)
		}
		return nil
	}
	return fmt.Errorf("%w: a %s session may not set a Will on %q", ErrRefused, id.Role, willTopic)
}
