package issuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/ca"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/gateway/internal/policy"
	"github.com/hearth-pki/hearth/gateway/internal/secret"
	"github.com/hearth-pki/hearth/protocol"
)

// enrolled enrolls device through Issue with a token, commits it, and returns its
// certificate, issued with key.
func (f *fixture) enrolled(t *testing.T, device string, key *ecdsa.PrivateKey) inventory.Certificate {
	t.Helper()
	tok := f.token(t, device)
	res, err := f.iss.Issue(t.Context(), Request{DeviceID: device, RequestID: "enroll-" + device, CSR: csrFor(t, key, device),
		Auth: AuthToken, TokenHash: secret.HashToken(tok), Reason: protocol.ReasonEnroll})
	if err != nil {
		t.Fatalf("Issue(enroll %s) = %v", device, err)
	}
	if _, _, err := f.store.Activate(t.Context(), device, res.Cert.Serial, f.now); err != nil {
		t.Fatal(err)
	}
	return res.Cert
}

// TestIssueRefusals runs each refusal through the pipeline itself and checks the wire code
// and, where there is one, the typed cause a caller can branch on.
func TestIssueRefusals(t *testing.T) {
	key := p256(t).(*ecdsa.PrivateKey)
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// req builds the request on a fixture where "plug" is enrolled (key) and active.
		req       func(t *testing.T, f *fixture, plug inventory.Certificate) Request
		code      protocol.Code
		wantCause error // errors.Is target, or nil
		policy    bool  // the cause is a *policy.Refusal
	}{
		{"bad device id", func(t *testing.T, f *fixture, _ inventory.Certificate) Request {
			return Request{DeviceID: "Plug!", RequestID: "r", CSR: csrFor(t, p256(t), ""), Auth: AuthAdmin}
		}, protocol.CodeBadRequest, nil, false},
		{"bad request id", func(t *testing.T, f *fixture, _ inventory.Certificate) Request {
			return Request{DeviceID: "printer", RequestID: "", CSR: csrFor(t, p256(t), ""), Auth: AuthAdmin}
		}, protocol.CodeBadRequest, nil, false},
		{"not a CSR", func(t *testing.T, f *fixture, _ inventory.Certificate) Request {
			return Request{DeviceID: "printer", RequestID: "r", CSR: "junk", Auth: AuthAdmin}
		}, protocol.CodeBadCSR, nil, false},
		{"identity", func(t *testing.T, f *fixture, _ inventory.Certificate) Request {
			return Request{DeviceID: "printer", RequestID: "r", CSR: csrFor(t, p256(t), "plug"), Auth: AuthAdmin}
		}, protocol.CodeIdentityMismatch, ca.ErrIdentity, false},
		{"curve the CA does not sign", func(t *testing.T, f *fixture, _ inventory.Certificate) Request {
			return Request{DeviceID: "printer", RequestID: "r", CSR: csrFor(t, p521, ""), Auth: AuthAdmin}
		}, protocol.CodeWeakKey, ca.ErrUnsupportedKey, false},
		{"token renews", func(t *testing.T, f *fixture, plug inventory.Certificate) Request {
			return Request{DeviceID: "cam", RequestID: "r", CSR: csrFor(t, p256(t), "cam"), Auth: AuthToken,
				TokenHash: secret.HashToken(f.token(t, "cam")), Reason: protocol.ReasonWindow, Replaces: plug.Serial}
		}, protocol.CodeUnauthorized, nil, false},
		{"used token", func(t *testing.T, f *fixture, _ inventory.Certificate) Request {
			tok := f.token(t, "cam")
			if _, err := f.iss.Issue(t.Context(), Request{DeviceID: "cam", RequestID: "e1", CSR: csrFor(t, p256(t), "cam"), Auth: AuthToken,
				TokenHash: secret.HashToken(tok), Reason: protocol.ReasonEnroll}); err != nil {
				t.Fatal(err)
			}
			return Request{DeviceID: "cam", RequestID: "e2", CSR: csrFor(t, p256(t), "cam"), Auth: AuthToken,
				TokenHash: secret.HashToken(tok), Reason: protocol.ReasonEnroll}
		}, protocol.CodeUnauthorized, inventory.ErrTokenUsed, false},
		{"unknown device", func(t *testing.T, f *fixture, plug inventory.Certificate) Request {
			return Request{DeviceID: "ghost", RequestID: "r", CSR: csrFor(t, p256(t), ""), Auth: AuthCertificate,
				Reason: protocol.ReasonWindow, Replaces: plug.Serial}
		}, protocol.CodeUnauthorized, nil, false},
		{"device enrolls again", func(t *testing.T, f *fixture, _ inventory.Certificate) Request {
			return Request{DeviceID: "plug", RequestID: "r", CSR: csrFor(t, p256(t), ""), Auth: AuthCertificate, Reason: protocol.ReasonEnroll}
		}, protocol.CodePolicyDenied, nil, false},
		{"replaces another device's serial", func(t *testing.T, f *fixture, _ inventory.Certificate) Request {
			other := f.enrolled(t, "cam", p256(t).(*ecdsa.PrivateKey))
			return Request{DeviceID: "plug", RequestID: "r", CSR: csrFor(t, p256(t), ""), Auth: AuthCertificate,
				Reason: protocol.ReasonWindow, Replaces: other.Serial}
		}, protocol.CodePolicyDenied, nil, false},
		{"revoked certificate", func(t *testing.T, f *fixture, plug inventory.Certificate) Request {
			if _, err := f.store.RevokeDevice(t.Context(), "plug", "test", f.now); err != nil {
				t.Fatal(err)
			}
			return Request{DeviceID: "plug", RequestID: "r", CSR: csrFor(t, p256(t), ""), Auth: AuthCertificate,
				Reason: protocol.ReasonWindow, Replaces: plug.Serial}
		}, protocol.CodeRevoked, nil, false},
		{"superseded certificate renews", func(t *testing.T, f *fixture, plug inventory.Certificate) Request {
			res, err := f.iss.Issue(t.Context(), Request{DeviceID: "plug", RequestID: "r1", CSR: csrFor(t, p256(t), ""), Auth: AuthCertificate,
				Reason: protocol.ReasonWindow, Replaces: plug.Serial})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.store.Commit(t.Context(), "plug", "r1", res.Cert.Serial, false, f.now); err != nil {
				t.Fatal(err)
			}
			return Request{DeviceID: "plug", RequestID: "r2", CSR: csrFor(t, p256(t), ""), Auth: AuthCertificate,
				Reason: protocol.ReasonWindow, Replaces: plug.Serial}
		}, protocol.CodeRevoked, nil, false},
		{"same key", func(t *testing.T, f *fixture, plug inventory.Certificate) Request {
			return Request{DeviceID: "plug", RequestID: "r", CSR: csrFor(t, key, ""), Auth: AuthCertificate,
				Reason: protocol.ReasonWindow, Replaces: plug.Serial}
		}, protocol.CodePolicyDenied, nil, true},
		{"key the class does not allow", func(t *testing.T, f *fixture, plug inventory.Certificate) Request {
			return Request{DeviceID: "plug", RequestID: "r", CSR: csrFor(t, rsaKey(t, 2048), ""), Auth: AuthCertificate,
				Reason: protocol.ReasonWindow, Replaces: plug.Serial}
		}, protocol.CodeWeakKey, nil, true},
		{"expired beyond grace", func(t *testing.T, f *fixture, plug inventory.Certificate) Request {
			f.now = plug.NotAfter.Add(time.Hour)
			return Request{DeviceID: "plug", RequestID: "r", CSR: csrFor(t, p256(t), ""), Auth: AuthCertificate,
				Reason: protocol.ReasonRecovery, Replaces: plug.Serial}
		}, protocol.CodeExpired, nil, true},
		{"admin on an agent device", func(t *testing.T, f *fixture, _ inventory.Certificate) Request {
			return Request{DeviceID: "plug", RequestID: "r", CSR: csrFor(t, p256(t), ""), Auth: AuthAdmin}
		}, protocol.CodePolicyDenied, nil, false},
		{"rate limited", func(t *testing.T, f *fixture, plug inventory.Certificate) Request {
			f.iss = New(Config{CA: f.ca, Store: f.store, Policy: func() *policy.Policy { return f.pol }, Pub: f.pub,
				Now: func() time.Time { return f.now }, Rate: 0.001, Burst: 1})
			if _, err := f.iss.Issue(t.Context(), Request{DeviceID: "printer", RequestID: "first", CSR: csrFor(t, p256(t), ""), Auth: AuthAdmin}); err != nil {
				t.Fatal(err)
			}
			return Request{DeviceID: "plug", RequestID: "r", CSR: csrFor(t, p256(t), ""), Auth: AuthCertificate,
				Reason: protocol.ReasonWindow, Replaces: plug.Serial}
		}, protocol.CodeRateLimited, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			plug := f.enrolled(t, "plug", key)
			req := tt.req(t, f, plug)
			before, _ := f.store.Certificates(t.Context(), req.DeviceID)
			res, err := f.iss.Issue(t.Context(), req)
			var r *Refusal
			if !errors.As(err, &r) {
				t.Fatalf("Issue() = %+v, %v; want a *Refusal %s", res, err, tt.code)
			}
			if r.Code != tt.code || r.Reason == "" {
				t.Errorf("Issue() refusal = %s %q, want %s with a reason", r.Code, r.Reason, tt.code)
			}
			if tt.wantCause != nil && !errors.Is(err, tt.wantCause) {
				t.Errorf("Issue() = %v, want it to wrap %v", err, tt.wantCause)
			}
			var pr *policy.Refusal
			if errors.As(err, &pr) != tt.policy {
				t.Errorf("Issue() = %v: wraps a *policy.Refusal = %v, want %v", err, !tt.policy, tt.policy)
			}
			if after, _ := f.store.Certificates(t.Context(), req.DeviceID); len(after) != len(before) {
				t.Errorf("a refused request recorded a certificate: %d before, %d after", len(before), len(after))
			}
		})
	}
}

// TestIssueQuota checks the per-device quota (issue 15, item 4): one device asking for
// certificates in a loop gets QuotaPerHour of them, then quota_exceeded with the time until
// the next, while another device is not held; an hour/QuotaPerHour later it gets one more.
func TestIssueQuota(t *testing.T) {
	f := newFixture(t)
	f.iss = New(Config{CA: f.ca, Store: f.store, Policy: func() *policy.Policy { return f.pol }, Pub: f.pub,
		Now: func() time.Time { return f.now }, QuotaPerHour: 4})
	plug := f.enrolled(t, "plug", p256(t).(*ecdsa.PrivateKey)) // the enrollment is the first of the 4
	issued := 1
	var refusal *Refusal
	for i := range 50 {
		_, err := f.iss.Issue(t.Context(), Request{DeviceID: "plug", RequestID: fmt.Sprintf("loop-%d", i), CSR: csrFor(t, p256(t), ""),
			Auth: AuthCertificate, Reason: protocol.ReasonWindow, Replaces: plug.Serial})
		if err == nil {
			issued++
			continue
		}
		if !errors.As(err, &refusal) || refusal.Code != protocol.CodeQuotaExceeded {
			t.Fatalf("request %d = %v, want issued or quota_exceeded", i, err)
		}
	}
	if issued != 4 {
		t.Errorf("a device asking 51 times got %d certificates, want its quota 4", issued)
	}
	if refusal == nil || refusal.RetryAfter != 15*time.Minute {
		t.Errorf("quota refusal = %+v, want retry after 15m0s (an hour / 4)", refusal)
	}
	certs, _ := f.store.Certificates(t.Context(), "plug")
	if len(certs) != 4 {
		t.Errorf("the inventory holds %d certificates of the device, want 4", len(certs))
	}
	f.enrolled(t, "printer", p256(t).(*ecdsa.PrivateKey)) // another device is not held
	f.now = f.now.Add(15 * time.Minute)
	if _, err := f.iss.Issue(t.Context(), Request{DeviceID: "plug", RequestID: "later", CSR: csrFor(t, p256(t), ""),
		Auth: AuthCertificate, Reason: protocol.ReasonWindow, Replaces: plug.Serial}); err != nil {
		t.Errorf("a request a quarter of an hour later = %v, want issued", err)
	}
}

// TestIssueBackdate checks the policy's backdate reaches the leaf exactly, 0 included
// (issue 9: a zero backdate became one minute in the CA).
func TestIssueBackdate(t *testing.T) {
	for _, tt := range []struct {
		name     string
		policy   string
		backdate time.Duration
	}{
		{"unset", "", time.Minute},
		{"zero", "backdate: 0s\n", 0},
		{"five minutes", "backdate: 5m\n", 5 * time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.now = f.now.Add(1500 * time.Millisecond)
			var err error
			if f.pol, err = policy.Parse([]byte(tt.policy)); err != nil {
				t.Fatal(err)
			}
			res, err := f.iss.Issue(t.Context(), Request{DeviceID: "printer", RequestID: "r", CSR: csrFor(t, p256(t), ""), Auth: AuthAdmin})
			if err != nil {
				t.Fatalf("Issue() = %v", err)
			}
			b, _ := pem.Decode([]byte(res.Chain))
			leaf, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if want := f.now.Truncate(time.Second).Add(-tt.backdate); !leaf.NotBefore.Equal(want) || !res.Cert.NotBefore.Equal(want) {
				t.Errorf("not-before = %v (recorded %v), want %v", leaf.NotBefore, res.Cert.NotBefore, want)
			}
		})
	}
}

// TestIssueReplay checks a request id answered once is answered with the same certificate,
// whatever the new CSR says, and nothing is signed again.
func TestIssueReplay(t *testing.T) {
	f := newFixture(t)
	req := Request{DeviceID: "printer", RequestID: "sign-1", CSR: csrFor(t, p256(t), ""), Auth: AuthAdmin}
	first, err := f.iss.Issue(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	req.CSR = csrFor(t, p256(t), "")
	again, err := f.iss.Issue(t.Context(), req)
	if err != nil || !again.Replayed || again.Cert.Serial != first.Cert.Serial || again.Chain != first.Chain {
		t.Errorf("Issue(same request id) = %+v, %v; want a replay of %s", again, err, first.Cert.Serial)
	}
	if certs, _ := f.store.Certificates(t.Context(), "printer"); len(certs) != 1 {
		t.Errorf("after a replay the device has %d certificates, want 1", len(certs))
	}
}

// TestHandleCSRExpired checks the MQTT front end answers a recovery past the grace with
// expired, the code the spec gives it (it used to say policy_denied).
func TestHandleCSRExpired(t *testing.T) {
	f := newFixture(t)
	plug := f.enrolled(t, "plug", p256(t).(*ecdsa.PrivateKey))
	f.now = plug.NotAfter.Add(time.Hour)
	req := &protocol.CSR{V: 1, RequestID: "rec1", CSR: csrFor(t, p256(t), "plug"), Reason: protocol.ReasonRecovery, Replaces: plug.Serial, Time: f.now}
	f.iss.HandleCSR(t.Context(), Sender{DeviceID: "plug", Serial: plug.Serial}, encode(t, req))
	var reply protocol.Cert
	f.pub.last(t, topics.Device("plug", protocol.KindCert), &reply)
	if reply.Error == nil || reply.Error.Code != protocol.CodeExpired {
		t.Fatalf("recovery past the grace: reply = %+v, want expired", reply)
	}
	atts, _ := f.store.Attempts(t.Context(), "plug", 1)
	if len(atts) != 1 || atts[0].ErrorCode != string(protocol.CodeExpired) || atts[0].Cause != protocol.CauseExpired || atts[0].Detail == "" {
		t.Errorf("latest attempt = %+v, want a failure with code and cause expired, and the refusal's text", atts)
	}
}

func rsaKey(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestTokenUsedPublished checks that an enrollment's issuance publishes token.used after
// cert.issued (issue 16: token events appear on bridge/event), and a renewal does not.
func TestTokenUsedPublished(t *testing.T) {
	f := newFixture(t)
	var got []protocol.EventType
	f.iss = New(Config{CA: f.ca, Store: f.store, Policy: func() *policy.Policy { return f.pol }, Pub: f.pub,
		Now: func() time.Time { return f.now }, Notify: func(e protocol.Event) {
			if _, err := protocol.Encode(&e); err != nil {
				t.Errorf("event %s does not encode: %v", e.Type, err)
			}
			got = append(got, e.Type)
		}})
	plug := f.enrolled(t, "plug", p256(t).(*ecdsa.PrivateKey))
	if _, err := f.iss.Issue(t.Context(), Request{DeviceID: "plug", RequestID: "renew", CSR: csrFor(t, p256(t), ""),
		Auth: AuthCertificate, Reason: protocol.ReasonWindow, Replaces: plug.Serial}); err != nil {
		t.Fatal(err)
	}
	want := []protocol.EventType{protocol.EventCertIssued, protocol.EventTokenUsed, protocol.EventCertIssued}
	if !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}
