package protocol

import (
	"errors"
	"fmt"

	"github.com/hearth-pki/hearth/protocol/jsoncodec"
)

// MaxMessageSize is the largest payload either side accepts on a hearth topic. The largest
// legitimate message, a chain of a few certificates, is a few KiB.
const MaxMessageSize = 64 << 10

// Message is implemented by every message type of this package.
type Message interface {
	Validate() error
}

// ErrTooLarge is returned by Decode for a payload over MaxMessageSize.
var ErrTooLarge = errors.New("message too large")

// Decode parses data into m and validates it. It refuses a payload over MaxMessageSize
// before parsing, and ignores unknown fields. Errors wrap ErrTooLarge or ErrInvalid; a
// version mismatch is a *VersionError. CodeFor maps an error to its wire code. It parses as
// json.Unmarshal does (package jsoncodec), without linking encoding/json.
func Decode(data []byte, m Message) error {
	if len(data) > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxMessageSize)
	}
	if err := jsoncodec.Unmarshal(data, m); err != nil {
		return invalid("malformed JSON: %v", err)
	}
	return m.Validate()
}

// Encode validates m and returns its JSON form, the bytes json.Marshal would return. It refuses to encode an invalid message, so a
// side never sends what the other would refuse.
func Encode(m Message) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := jsoncodec.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", m, err)
	}
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), MaxMessageSize)
	}
	return b, nil
}

// CodeFor returns the wire code for an error from Decode.
func CodeFor(err error) Code {
	var ve *VersionError
	switch {
	case errors.As(err, &ve):
		return CodeUnsupportedVersion
	case errors.Is(err, ErrTooLarge):
		return CodeTooLarge
	default:
		return CodeBadRequest
	}
}
