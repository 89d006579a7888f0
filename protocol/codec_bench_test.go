package protocol

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

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

// BenchmarkCodecList compares the codecs on a page of 500 device summaries, as the hub's
// device/list answers.
func BenchmarkCodecList(b *testing.B) {
	list := make([]DeviceSummary, 500)
	for i := range list {
		list[i] = DeviceSummary{ID: fmt.Sprintf("device-%04d", i), State: "active", Online: i%2 == 0,
			NotAfter: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}
	}
	data, err := json.Marshal(list)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode/jsoncodec", func(b *testing.B) {
		for b.Loop() {
			if _, err := jsoncodec.Marshal(list); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode/encoding_json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(list); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/jsoncodec", func(b *testing.B) {
		for b.Loop() {
			var l []DeviceSummary
			if err := jsoncodec.Unmarshal(data, &l); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/encoding_json", func(b *testing.B) {
		for b.Loop() {
			var l []DeviceSummary
			if err := json.Unmarshal(data, &l); err != nil {
				b.Fatal(err)
			}
		}
	})
}
