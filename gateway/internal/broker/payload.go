package broker

import (
	"fmt"

	"github.com/hearth-pki/hearth/protocol"
)

// checkPayload checks a device's or enrolling session's message against its topic's schema
// (protocol/README.md, "Messages"): size, JSON, version and the type's rules, as the hub
// would decode it. Admins' bridge requests are checked by the hub's bridge only for size
// here; their bodies depend on the operation.
func checkPayload(kind protocol.Kind, payload []byte) error {
	var m protocol.Message
	switch kind {
	case protocol.KindCSR:
		m = &protocol.CSR{}
	case protocol.KindCommit:
		m = &protocol.Commit{}
	case protocol.KindHealth:
		m = &protocol.Health{}
	case protocol.KindState:
		m = &protocol.State{}
	default:
		if len(payload) > protocol.MaxMessageSize {
			return fmt.Errorf("%w: %d bytes, limit %d", protocol.ErrTooLarge, len(payload), protocol.MaxMessageSize)
		}
		return nil
	}
	return protocol.Decode(payload, m)
}
