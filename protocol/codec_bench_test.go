package protocol

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/hearth-pki/hearth/protocol/jsoncodec"
)

// BenchmarkCodec compares the codec behind Encode and Decode with encoding/json on the
// largest common message, a certificate reply.
func BenchmarkCodec(b *testing.B) {
	data, err := os.ReadFile("testdata/cert_issued.json")
	if err != nil {
		b.Fatal(err)
	}
	var m Cert
	if err := json.Unmarshal(data, &m); err != nil {
		b.Fatal(err)
	}
	b.Run("decode/jsoncodec", func(b *testing.B) {
		for b.Loop() {
			var c Cert
			if err := jsoncodec.Unmarshal(data, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/encoding_json", func(b *testing.B) {
		for b.Loop() {
			var c Cert
			if err := json.Unmarshal(data, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode/jsoncodec", func(b *testing.B) {
		for b.Loop() {
			if _, err := jsoncodec.Marshal(&m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode/encoding_json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(&m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
