// Package jsoncodec encodes and decodes JSON as encoding/json does for the types Hearth
// exchanges and stores, without linking encoding/json.
//
// It exists for the agent's size budget: from Go 1.27 encoding/json is built on
// encoding/json/v2 and links about 0.6 MiB, more than the agent can spend on messages it
// exchanges a few times a day. The hub and the agent encode protocol messages through it
// (protocol.Encode and protocol.Decode), so there is one codec; the hub may still hand the
// same types to encoding/json, which produces the same bytes.
//
// What it honours, as encoding/json does: struct tags `json:"name,omitempty,omitzero"` and
// `json:"-"`, embedded structs (Go's visibility rules), string, bool, integers, floats,
// time.Time and every type with MarshalJSON/UnmarshalJSON or MarshalText/UnmarshalText
// methods, []byte as standard base64, slices, arrays, maps with string keys (sorted on
// output), pointers and interfaces. Encoding escapes <, > and & (and U+2028, U+2029) and
// replaces invalid UTF-8, as json.Marshal does; decoding ignores unknown fields, matches
// names exactly and then case-insensitively, replaces invalid UTF-8 with U+FFFD and refuses
// nesting deeper than 10,000, as json.Unmarshal does. Not supported, because no Hearth type
// uses them: the ",string" option, maps with non-string keys and json.Number.
package jsoncodec
