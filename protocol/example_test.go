package protocol

import (
	"time"
)

var (
	t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

	csrPEM = `-----BEGIN CERTIFICATE REQUEST-----
MIIBFDCBuwIBADAaMRgwFgYDVQQDDA90aGVybW9zdGF0LWhhbGwwWTATBgcqhkjO
PQIBBggqhkjOPQMBBwNCAASWakJ0NXrbA6kSi7O891Bn0h6qP1Z0B4isvtPOyrPC
ADTUiCrsxVpRT/RWGMGkEncqfJRMGXpnj57tuYbB0ElioD8wPQYJKoZIhvcNAQkO
MTAwLjAsBgNVHREEJTAjhiF1cm46aGVhcnRoOmRldmljZTp0aGVybW9zdGF0LWhh
bGwwCgYIKoZIzj0EAwIDSAAwRQIgFUHGv+nIrJ1ABjg1zMCXZkjWopJ/ijUMthWt
5Xh+FHICIQDcB4YBIp4OPGB+iWNrxVtU9BPxcL77l7u0djD9Rx4fOg==
-----END CERTIFICATE REQUEST-----
`
	chainPEM = `-----BEGIN CERTIFICATE-----
MIIB7zCCAZWgAwIBAgIQWm1fN2yXq9uF0m3v0u2bCDAKBggqhkjOPQQDAjAyMQ8w
DQYDVQQKDAZIZWFydGgxHzAdBgNVBAMMFkhlYXJ0aCBJbnRlcm1lZGlhdGUgQ0Ew
HhcNMjYxMTI2MDAxNDM2WhcNMjYxMjI2MDAxNDM2WjAaMRgwFgYDVQQDDA90aGVy
bW9zdGF0LWhhbGwwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASWakJ0NXrbA6kS
i7O891Bn0h6qP1Z0B4isvtPOyrPCADTUiCrsxVpRT/RWGMGkEncqfJRMGXpnj57t
uYbB0Elio4GkMIGhMAwGA1UdEwEB/wQCMAAwDgYDVR0PAQH/BAQDAgeAMBMGA1Ud
JQQMMAoGCCsGAQUFBwMCMCwGA1UdEQQlMCOGIXVybjpoZWFydGg6ZGV2aWNlOnRo
ZXJtb3N0YXQtaGFsbDAdBgNVHQ4EFgQUvrbW2j7cq9MgW45WQ/Y0/LRfT2MwHwYD
VR0jBBgwFoAUGkT5+0plc6hRL6Cqru+Mq2CLI8MwCgYIKoZIzj0EAwIDSAAwRQIg
J6Z3aEZvefhWu/Sx6Wrxobnw5JAFES0RM+vRh75o5fwCIQDJhZ7DGzLoauIK9K1/
v6A7vKUgZFbbur9Fw1/TWjLrKg==
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIBtzCCAV6gAwIBAgIIHy49TFtqeYgwCgYIKoZIzj0EAwIwKjEPMA0GA1UECgwG
SGVhcnRoMRcwFQYDVQQDDA5IZWFydGggUm9vdCBDQTAeFw0yNjExMjYwMDE0MzZa
Fw0zMTExMjUwMDE0MzZaMDIxDzANBgNVBAoMBkhlYXJ0aDEfMB0GA1UEAwwWSGVh
cnRoIEludGVybWVkaWF0ZSBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABDKy
EIxZ4AiR9qHFzxc8br/RMWkaLRvp4W2IADnd564rFCS08I4T1SM8OT8YG05tPCEH
uVdOSf+Hf0n1MPBA9eCjZjBkMBIGA1UdEwEB/wQIMAYBAf8CAQAwDgYDVR0PAQH/
BAQDAgEGMB0GA1UdDgQWBBQaRPn7SmVzqFEvoKqu74yrYIsjwzAfBgNVHSMEGDAW
gBQzhXUhtAl8wZauo5Pe9DsafH3myTAKBggqhkjOPQQDAgNHADBEAiAsqQS2Z2pQ
+Hn9htpuzlOFMo6CxEzVfBs+rp7D4wMJgwIgI5JPc3uIwHaG7M6BQzs+iQakynQY
iJNxW+hOF5cBjuM=
-----END CERTIFICATE-----
`
)

// examples returns one example of every message, by golden file name. The same payloads are
// quoted in README.md.
func examples() map[string]Message {
	renewal := &RenewalInfo{
		V: Version, Serial: "5a6d5f376c97abdb85d26defd2ed9b08",
		WindowStart: t0.Add(20 * 24 * time.Hour), WindowEnd: t0.Add(28*24*time.Hour + 12*time.Hour),
		RetryAfter: 21600, Explanation: "2/3 of a 30-day lifetime, jitter +4.1%", HubTime: t0,
	}
	return map[string]Message{
		"csr_enroll": &CSR{V: Version, RequestID: "01JDQ3Z8K4", CSR: csrPEM, Reason: ReasonEnroll, Time: t0},
		"csr_window": &CSR{V: Version, RequestID: "01JDQ4A1B2", CSR: csrPEM, Reason: ReasonCommand,
			Replaces: "2b766b0ba9f94b7139437a8fa8cd7096", CommandID: "cmd-7f3a", Time: t0},
		"cert_issued": &Cert{V: Version, RequestID: "01JDQ4A1B2", Chain: chainPEM,
			Serial: "5a6d5f376c97abdb85d26defd2ed9b08", Renewal: renewal, HubTime: t0},
		"cert_error": &Cert{V: Version, RequestID: "01JDQ4A1B2", HubTime: t0, Error: &Error{Code: CodeBusy,
			Message: "request 01JDQ3Z8K4 of this device is in flight", RetryAfter: 5}},
		"commit_committed": &Commit{V: Version, RequestID: "01JDQ4A1B2", Serial: "5a6d5f376c97abdb85d26defd2ed9b08",
			Outcome: OutcomeCommitted, Time: t0, Hook: &HookRun{ExitCode: 0, Output: "nginx reloaded"}, Attempt: 1},
		"commit_rolled_back": &Commit{V: Version, RequestID: "01JDQ4A1B2", Serial: "2b766b0ba9f94b7139437a8fa8cd7096",
			Outcome: OutcomeRolledBack, Failed: "5a6d5f376c97abdb85d26defd2ed9b08",
			Detail: "reconnect with the new certificate refused: not authorized", Time: t0, Attempt: 1,
			Cause: CauseReconnectRefused},
		"ack": &Ack{V: Version, RequestID: "01JDQ4A1B2", Serial: "5a6d5f376c97abdb85d26defd2ed9b08", HubTime: t0},
		"ack_error": &Ack{V: Version, RequestID: "01JDQ4A1B2", HubTime: t0, Error: &Error{Code: CodeNotPresented,
			Message: "the TLS session presents serial 2b766b0ba9f94b7139437a8fa8cd7096", RetryAfter: 5}},
		"cmd_renew": &Command{V: Version, CommandID: "cmd-7f3a", Action: ActionRenew, Reason: "renewal window reached",
			Deadline: t0.Add(10 * time.Minute), HubTime: t0},
		"renewal": renewal,
		"health": &Health{V: Version, Serial: "5a6d5f376c97abdb85d26defd2ed9b08", Issuer: "CN=Hearth Intermediate CA,O=Hearth",
			NotBefore: t0.Add(-time.Minute), NotAfter: t0.Add(30 * 24 * time.Hour), ChainOK: true, KeyAlgorithm: KeyP256,
			KeyStorage: "file", DeviceTime: t0.Add(2 * time.Second), ClockTrusted: true, SkewSeconds: 2,
			AgentVersion: "0.1.0", NextRenewal: t0.Add(21 * 24 * time.Hour), Manufacturer: "Acme", Model: "Smart Plug 2", Arch: "armv7"},
		"state_online":  &State{V: Version, State: Online, AgentVersion: "0.1.0"},
		"state_offline": &State{V: Version, State: Offline},
		"bridge_info": &BridgeInfo{V: Version, Version: "0.1.0", Protocol: Version,
			CAFingerprint: "SHA256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			Broker:        "mqtts://hearth.local:8883", CAExpires: t0.Add(10 * 365 * 24 * time.Hour), Started: t0},
		"bridge_devices": &BridgeDevices{V: Version, Total: 12, Online: 10,
			States:       map[string]int{"active": 11, "enrolling": 1},
			WithProblems: 1, Problems: map[string]int{"expiring": 1}, Updated: t0},
		"bridge_device": &BridgeDevice{V: Version, DeviceSummary: DeviceSummary{ID: "lock-front", Name: "Front door lock",
			Family: "lock", Class: "high-risk", State: "active", Online: true, Serial: "2b766b0ba9f94b7139437a8fa8cd7096",
			NotAfter: t0.Add(30 * time.Hour), RenewalState: "commanded", LastSeen: t0,
			Problems: []string{"expiring"}, ProblemDetails: []Problem{{Code: "expiring",
				Text: "past the end of its renewal window at 2026-11-25T09:48:00Z (class high-risk); the certificate expires 2026-11-26T18:00:00Z"}}}},
		"request_device_list": &DeviceListRequest{Transaction: "l2", Limit: 100, Cursor: DeviceCursor("thermostat-hall"), State: "active"},
		"event": &Event{V: Version, Type: EventCertActivated, Time: t0, DeviceID: "thermostat-hall",
			Message: "certificate 5a6d5f37… is active; 2b766b0b… superseded", Data: map[string]string{"serial": "5a6d5f376c97abdb85d26defd2ed9b08"}},
		"request_device_renew": &DeviceRequest{Transaction: "auto-42", ID: "thermostat-hall"},
		"request_token_create": &TokenRequest{Transaction: "t1", ID: "camera-door", Name: "Front door camera", Family: "camera", TTL: "24h"},
		"response_ok": &BridgeResponse{Transaction: "auto-42", Status: "ok",
			Data: RawJSON(`{"id":"thermostat-hall","command_id":"cmd-7f3a"}`)},
		"response_error": &BridgeResponse{Transaction: "auto-42", Status: "error", Error: "device \"nope\" is not in the inventory", Code: CodeNotFound},
	}
}
