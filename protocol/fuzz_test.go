package protocol

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/hearth-pki/hearth/protocol/internal/randvalue"
	"github.com/hearth-pki/hearth/protocol/jsoncodec"
)

// fuzzDecoder checks, for arbitrary input, that decoding never panics and that whatever
// decodes re-encodes to a payload that decodes to the same message.
func fuzzDecoder(f *testing.F, zero func() Message) {
	golden, _ := filepath.Glob("testdata/*.json")
	bridge, _ := filepath.Glob("testdata/bridge/*.json")
	golden = append(golden, bridge...)
	for _, g := range golden {
		b, err := os.ReadFile(g)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		agreesWithEncodingJSON(t, data, zero)
		m := zero()
		if err := Decode(data, m); err != nil {
			return
		}
		enc, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)) = %v", data, err)
		}
		again := zero()
		if err := Decode(enc, again); err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %v", data, err)
		}
		enc2, err := Encode(again)
		if err != nil {
			t.Fatal(err)
		}
		if string(enc) != string(enc2) {
			t.Fatalf("encode is not stable:\n%s\n%s", enc, enc2)
		}
		// Decoding the re-encoded form into a fresh value must give the value it came from
		// once normalised by a round trip (JSON drops monotonic clocks and zones).
		third := zero()
		if err := Decode(enc2, third); err != nil || !reflect.DeepEqual(again, third) {
			t.Fatalf("decode → encode → decode changed %+v into %+v (%v)", again, third, err)
		}
	})
}

// agreesWithEncodingJSON checks that the codec behind Decode and Encode is encoding/json's
// for this message type: data decodes (or fails) as json.Unmarshal decodes it, and a random
// value drawn from data encodes to json.Marshal's bytes.
func agreesWithEncodingJSON(t *testing.T, data []byte, zero func() Message) {
	t.Helper()
	got, want := zero(), zero()
	err := Decode(data, got)
	wantErr := json.Unmarshal(data, want)
	if wantErr == nil && len(data) <= MaxMessageSize {
		wantErr = want.Validate()
	}
	if len(data) > MaxMessageSize {
		wantErr = ErrTooLarge
	}
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("Decode(%q) = %v; encoding/json and Validate: %v", data, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode(%q)\n got %#v\nwant %#v", data, got, want)
	}
	var seed [16]byte
	copy(seed[:], data)
	r := rand.New(rand.NewPCG(uint64(len(data)), uint64(seed[0])|uint64(seed[1])<<8|uint64(seed[2])<<16|uint64(seed[3])<<24))
	v := zero()
	randvalue.Fill(r, reflect.ValueOf(v).Elem(), 0)
	if br, ok := v.(*BridgeResponse); ok && br.Data != nil {
		br.Data = RawJSON(`{"id" : "a<b>","n":[1, 2]}`)
	}
	for _, x := range []any{v, reflect.ValueOf(v).Elem().Interface()} {
		enc, err := jsoncodec.Marshal(x)
		wantEnc, wantErr := json.Marshal(x)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(enc, wantEnc) {
			t.Fatalf("encoding %#v\n got %s, %v\nwant %s, %v", x, enc, err, wantEnc, wantErr)
		}
	}
}

func FuzzCSR(f *testing.F)            { fuzzDecoder(f, func() Message { return new(CSR) }) }
func FuzzCert(f *testing.F)           { fuzzDecoder(f, func() Message { return new(Cert) }) }
func FuzzCommit(f *testing.F)         { fuzzDecoder(f, func() Message { return new(Commit) }) }
func FuzzAck(f *testing.F)            { fuzzDecoder(f, func() Message { return new(Ack) }) }
func FuzzCommand(f *testing.F)        { fuzzDecoder(f, func() Message { return new(Command) }) }
func FuzzRenewalInfo(f *testing.F)    { fuzzDecoder(f, func() Message { return new(RenewalInfo) }) }
func FuzzHealth(f *testing.F)         { fuzzDecoder(f, func() Message { return new(Health) }) }
func FuzzState(f *testing.F)          { fuzzDecoder(f, func() Message { return new(State) }) }
func FuzzBridgeInfo(f *testing.F)     { fuzzDecoder(f, func() Message { return new(BridgeInfo) }) }
func FuzzBridgeDevices(f *testing.F)  { fuzzDecoder(f, func() Message { return new(BridgeDevices) }) }
func FuzzEvent(f *testing.F)          { fuzzDecoder(f, func() Message { return new(Event) }) }
func FuzzDeviceRequest(f *testing.F)  { fuzzDecoder(f, func() Message { return new(DeviceRequest) }) }
func FuzzTokenRequest(f *testing.F)   { fuzzDecoder(f, func() Message { return new(TokenRequest) }) }
func FuzzBridgeResponse(f *testing.F) { fuzzDecoder(f, func() Message { return new(BridgeResponse) }) }
func FuzzUserRequest(f *testing.F)    { fuzzDecoder(f, func() Message { return new(UserRequest) }) }
func FuzzPolicyChangeRequest(f *testing.F) {
	fuzzDecoder(f, func() Message { return new(PolicyChangeRequest) })
}
func FuzzChangeRequest(f *testing.F) { fuzzDecoder(f, func() Message { return new(ChangeRequest) }) }

func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{"hearth/v1/dev/a/csr", "hearth/bridge/request/device/renew", "hearth/v1/ca"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var topics Topics
		tp, err := topics.Parse(s)
		if err != nil {
			return
		}
		var rebuilt string
		switch {
		case tp.DeviceID != "":
			rebuilt = topics.Device(tp.DeviceID, tp.Kind)
		case tp.Kind == KindBridgeRequest:
			rebuilt = topics.BridgeRequest(tp.Op)
		case tp.Kind == KindBridgeResponse:
			rebuilt = topics.BridgeResponse(tp.Op)
		case tp.Kind == KindCA:
			rebuilt = topics.CA()
		case tp.Kind == KindCRL:
			rebuilt = topics.CRL()
		default:
			rebuilt = topics.Bridge(tp.Kind)
		}
		if rebuilt != s {
			t.Fatalf("Parse(%q) = %+v, which builds %q", s, tp, rebuilt)
		}
	})
}
