package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// newOf returns a fresh zero value of the same message type as m.
func newOf(m Message) Message {
	return reflect.New(reflect.TypeOf(m).Elem()).Interface().(Message)
}

func TestGolden(t *testing.T) {
	for name, m := range examples() {
		t.Run(name, func(t *testing.T) {
			got, err := Encode(m)
			if err != nil {
				t.Fatalf("Encode(%s) = %v", name, err)
			}
			var indented bytes.Buffer
			if err := json.Indent(&indented, got, "", "  "); err != nil {
				t.Fatal(err)
			}
			indented.WriteByte('\n')
			path := filepath.Join("testdata", name+".json")
			if *update {
				if err := os.WriteFile(path, indented.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("reading golden file (run with -update to create): %v", err)
			}
			if !bytes.Equal(indented.Bytes(), want) {
				t.Errorf("Encode(%s) =\n%s\nwant (%s)\n%s", name, indented.Bytes(), path, want)
			}
			if err := Decode(want, newOf(m)); err != nil {
				t.Fatalf("Decode(%s) = %v", path, err)
			}
			back := newOf(m)
			if err := Decode(got, back); err != nil {
				t.Fatalf("Decode(Encode(%s)) = %v", name, err)
			}
			if !reflect.DeepEqual(back, m) {
				t.Errorf("Decode(Encode(%s)) = %+v, want %+v", name, back, m)
			}
			// The hub's codec (encoding/json) sends and reads the same bytes.
			if hub, err := EncodeWith(m, json.Marshal); err != nil || !bytes.Equal(hub, got) {
				t.Errorf("EncodeWith(%s, json.Marshal) = %s, %v; want %s (Encode)", name, hub, err, got)
			}
			fromGolden, hubBack := newOf(m), newOf(m)
			if err := Decode(want, fromGolden); err != nil {
				t.Fatal(err)
			}
			if err := DecodeWith(want, hubBack, json.Unmarshal); err != nil || !reflect.DeepEqual(hubBack, fromGolden) {
				t.Errorf("DecodeWith(%s, json.Unmarshal) = %+v, %v; want %+v (Decode)", path, hubBack, err, fromGolden)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	valid, err := os.ReadFile("testdata/csr_window.json")
	if err != nil {
		t.Fatal(err)
	}
	edit := func(from, to string) []byte {
		t.Helper()
		if !bytes.Contains(valid, []byte(from)) {
			t.Fatalf("golden csr_window.json lacks %q", from)
		}
		return bytes.Replace(valid, []byte(from), []byte(to), 1)
	}
	tests := []struct {
		name string
		in   []byte
		code Code
		want string
	}{
		{"not json", []byte("{"), CodeBadRequest, "unexpected end"},
		{"wrong type", edit(`"v": 1`, `"v": "1"`), CodeBadRequest, "cannot unmarshal"},
		{"version 2", edit(`"v": 1`, `"v": 2`), CodeUnsupportedVersion, "version 2"},
		{"no version", edit(`"v": 1,`, ``), CodeUnsupportedVersion, "version 0"},
		{"bad reason", edit(`"reason": "command"`, `"reason": "whim"`), CodeBadRequest, "reason"},
		{"no replaces", edit(`"replaces": "2b766b0ba9f94b7139437a8fa8cd7096",`, ``), CodeBadRequest, "needs the serial"},
		{"upper serial", edit(`2b766b0ba9f94b7139437a8fa8cd7096`, `2B766B`), CodeBadRequest, "lowercase"},
		{"request id slash", edit(`"request_id": "01JDQ4A1B2"`, `"request_id": "a/b"`), CodeBadRequest, "not allowed"},
		{"certificate not csr", []byte(strings.ReplaceAll(string(valid), "CERTIFICATE REQUEST-----", "CERTIFICATE-----")), CodeBadRequest, "PEM block"},
		{"mangled pem", edit(`-----END CERTIFICATE REQUEST`, `-----END CERTIFICATE`), CodeBadRequest, "no PEM"},
		{"too large", append(bytes.Repeat([]byte(" "), MaxMessageSize), valid...), CodeTooLarge, "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m CSR
			err := Decode(tt.in, &m)
			if err == nil {
				t.Fatalf("Decode(%s) = nil, want an error", tt.name)
			}
			if got := CodeFor(err); got != tt.code {
				t.Errorf("CodeFor(%v) = %q, want %q", err, got, tt.code)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode(%s) = %v, want it to mention %q", tt.name, err, tt.want)
			}
			if tt.code != CodeTooLarge && !errors.Is(err, ErrInvalid) {
				t.Errorf("Decode(%s) = %v, want it to wrap ErrInvalid", tt.name, err)
			}
			// The hub's codec refuses it with the same code.
			if err := DecodeWith(tt.in, &CSR{}, json.Unmarshal); err == nil || CodeFor(err) != tt.code {
				t.Errorf("DecodeWith(%s, json.Unmarshal) = %v (code %q), want code %q", tt.name, err, CodeFor(err), tt.code)
			}
		})
	}
}

func TestUnknownFieldsIgnored(t *testing.T) {
	in := []byte(`{"v":1,"state":"online","battery":87,"future":{"x":[1,2]}}`)
	var s State
	if err := Decode(in, &s); err != nil {
		t.Fatalf("Decode(%s) = %v, want nil", in, err)
	}
	if s.State != Online {
		t.Errorf("State = %q, want online", s.State)
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	if _, err := Encode(&Cert{V: Version, RequestID: "r1"}); err == nil {
		t.Error("Encode(cert without chain, error or hub time) = nil error, want one")
	}
	bad := &Cert{V: Version, RequestID: "r1", HubTime: t0, Chain: chainPEM, Serial: "ab", Error: &Error{Code: CodeBusy}}
	if _, err := Encode(bad); err == nil {
		t.Error("Encode(cert with chain and error) = nil error, want one")
	}
}

func TestCodesAppendOnly(t *testing.T) {
	// The list is append-only: this golden order may only grow at the end.
	want := []Code{"bad_request", "too_large", "unsupported_version", "bad_csr", "identity_mismatch",
		"weak_key", "policy_denied", "unauthorized", "revoked", "busy", "rate_limited", "internal",
		"unknown_request", "not_presented", "expired", "not_found", "token_unknown", "token_used",
		"token_expired", "locked_out", "quota_exceeded", "forbidden", "needs_approval"}
	got := Codes()
	if len(got) < len(want) {
		t.Fatalf("Codes() has %d codes, want at least %d", len(got), len(want))
	}
	for i, c := range want {
		if got[i].Code != c {
			t.Errorf("Codes()[%d] = %q, want %q", i, got[i].Code, c)
		}
	}
	seen := map[Code]bool{}
	for _, c := range got {
		if seen[c.Code] {
			t.Errorf("code %q listed twice", c.Code)
		}
		seen[c.Code] = true
		if c.Retry && c.RetryAfter <= 0 {
			t.Errorf("code %q is retryable without a default retry_after", c.Code)
		}
	}
	if info, ok := Code("from_the_future").Info(); ok || info.Retry {
		t.Errorf("unknown code Info() = %+v, %v; want not known, not retryable", info, ok)
	}
}

// TestREADMEQuotesGolden keeps the specification honest: every golden payload appears in
// README.md exactly as the code encodes it.
func TestREADMEQuotesGolden(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	golden, _ := filepath.Glob("testdata/*.json")
	for _, g := range golden {
		b, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(readme, bytes.TrimSpace(b)) {
			t.Errorf("README.md does not quote %s verbatim", g)
		}
	}
}

// TestHealthLastRequestID: a health report's last_request_id, when present, is a request id;
// one with a slash is refused like any malformed request id, and none is fine (an older
// agent's report).
func TestHealthLastRequestID(t *testing.T) {
	valid, err := os.ReadFile("testdata/health.json")
	if err != nil {
		t.Fatal(err)
	}
	with := func(extra string) []byte {
		return bytes.Replace(valid, []byte(`"v": 1,`), []byte(`"v": 1,`+extra), 1)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"none", valid, true},
		{"a request id with its cause", with(`"last_error": "hub: connect: connection refused", "last_cause": "network", "last_request_id": "0123456789abcdef0123456789abcdef",`), true},
		{"a malformed request id", with(`"last_cause": "network", "last_request_id": "a/b",`), false},
	} {
		var h Health
		err := Decode(tc.in, &h)
		if (err == nil) != tc.ok {
			t.Errorf("%s: Decode = %v, want success %v", tc.name, err, tc.ok)
		}
		if err != nil && CodeFor(err) != CodeBadRequest {
			t.Errorf("%s: CodeFor(%v) = %q, want %q", tc.name, err, CodeFor(err), CodeBadRequest)
		}
	}
}
