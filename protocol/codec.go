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
	return DecodeWith(data, m, jsoncodec.Unmarshal)
}

// DecodeWith is Decode parsing with unmarshal instead of package jsoncodec. The hub passes
// json.Unmarshal, which parses the same messages the same way (the fuzz targets check it)
// in less time; the agent keeps Decode, which does not link encoding/json.
func DecodeWith(data []byte, m Message, unmarshal func([]byte, any) error) error {
	if len(data) > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxMessageSize)
	}
	if err := unmarshal(data, m); err != nil {
		return invalid("malformed JSON: %v", err)
	}
	return m.Validate()
}

// Encode validates m and returns its JSON form, the bytes json.Marshal would return. It refuses to encode an invalid message, so a
// side never sends what the other would refuse.
func Encode(m Message) ([]byte, error) {
	return EncodeWith(m, jsoncodec.Marshal)
}

// EncodeWith is Encode marshalling with marshal instead of package jsoncodec. The hub
// passes json.Marshal, which returns the same bytes (the fuzz targets check it) in a
// fraction of the time; the agent keeps Encode, which does not link encoding/json.
func EncodeWith(m Message, marshal func(any) ([]byte, error)) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := marshal(m)
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
