package device

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearth-pki/hearth/agent/internal/testkit"
	"github.com/hearth-pki/hearth/protocol"
)

func TestEnroll(t *testing.T) {
	for _, tc := range []struct {
		name        string
		presentRoot bool // false: the root comes from the retained CA topic
	}{
		{"root in handshake", true},
		{"root from CA topic", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.presentRoot)
			if !tc.presentRoot {
				e.hub.PublishCA()
			}
			cfg := e.config("thermostat-1")
			cfg.KeyAlgorithm = "ed25519"
			if err := Enroll(t.Context(), cfg, "token-1", e.ca.Fingerprint()); err != nil {
				t.Fatalf("Enroll() = %v", err)
			}
			csr := recv(t, e.hub.CSRs, "CSR")
			if csr.Reason != protocol.ReasonEnroll || csr.Replaces != "" {
				t.Errorf("CSR reason %q replaces %q, want enroll and none", csr.Reason, csr.Replaces)
			}
			commit := recv(t, e.hub.Commits, "commit")
			pair := onDisk(t, cfg.Dir)
			if commit.Outcome != protocol.OutcomeCommitted || commit.Serial != pair.Serial() || commit.RequestID != csr.RequestID {
				t.Errorf("commit = %+v, want committed serial %s request %s", commit, pair.Serial(), csr.RequestID)
			}
			if got := pair.Algorithm(); got != "ed25519" {
				t.Errorf("key algorithm = %q, want ed25519", got)
			}
			if st := loadState(t, cfg.Dir); st.Pending != nil || st.LastKnownGood.IsZero() {
				t.Errorf("state after enroll = %+v, want no pending request and a last known good time", st)
			}
			// Run needs no flags: config.json holds the hub and the id.
			a, err := New(Config{Dir: cfg.Dir})
			if err != nil {
				t.Fatalf("New(dir only) = %v", err)
			}
			if a.cfg.HubURL != e.broker.URL || a.cfg.DeviceID != "thermostat-1" || a.cfg.KeyAlgorithm != "ed25519" {
				t.Errorf("config from config.json = %q %q %q", a.cfg.HubURL, a.cfg.DeviceID, a.cfg.KeyAlgorithm)
			}
			st, err := ReadStatus(Config{Dir: cfg.Dir})
			if err != nil || !st.Enrolled || st.Serial != pair.Serial() || !st.ChainOK || st.Expired {
				t.Errorf("ReadStatus() = %+v, %v; want enrolled, serial %s, chain ok, not expired", st, err, pair.Serial())
			}
		})
	}
}

func TestEnrollRefusesWrongFingerprint(t *testing.T) {
	for _, tc := range []struct {
		name        string
		presentRoot bool
	}{
		{"root in handshake", true},
		{"root from CA topic", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.presentRoot)
			if !tc.presentRoot {
				e.hub.PublishCA()
			}
			cfg := e.config("thermostat-1")
			other := testkit.NewCA(t, "Other")
			err := Enroll(t.Context(), cfg, "token-1", other.Fingerprint())
			if !errors.Is(err, ErrFingerprintMismatch) {
				t.Fatalf("Enroll(wrong fingerprint) = %v, want ErrFingerprintMismatch", err)
			}
			if _, err := os.Stat(cfg.Dir); !errors.Is(err, os.ErrNotExist) {
				entries, _ := os.ReadDir(cfg.Dir)
				t.Errorf("state directory exists after a refused enrollment (%v): %v", err, entries)
			}
			select {
			case c := <-e.hub.CSRs:
				t.Errorf("the hub received a CSR despite the mismatch: %+v", c)
			default:
			}
		})
	}
}

func TestEnrollRefusedByHub(t *testing.T) {
	e := newEnv(t, true)
	e.hub.SetBehaviour(testkit.ErrorReply)
	e.hub.SetErrorCode(protocol.CodeUnauthorized)
	cfg := e.config("thermostat-1")
	err := Enroll(t.Context(), cfg, "wrong-token", e.ca.Fingerprint())
	var he *HubError
	if !errors.As(err, &he) || he.Code != string(protocol.CodeUnauthorized) {
		t.Fatalf("Enroll(refused) = %v, want a HubError unauthorized", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "current.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("current.pem exists after a refused enrollment: %v", err)
	}
	if _, err := New(Config{Dir: cfg.Dir}); !errors.Is(err, ErrNotEnrolled) {
		t.Errorf("New() after a refused enrollment = %v, want ErrNotEnrolled", err)
	}
}

func TestEnrollBadInput(t *testing.T) {
	for _, tc := range []struct {
		name        string
		cfg         Config
		token, fp   string
		wantErrLike string
	}{
		{"no token", Config{HubURL: "mqtts://127.0.0.1:1", DeviceID: "d"}, "", "SHA256:" + zeros, "token"},
		{"bad fingerprint", Config{HubURL: "mqtts://127.0.0.1:1", DeviceID: "d"}, "t", "SHA256:abc", "fingerprint"},
		{"plain mqtt", Config{HubURL: "mqtt://127.0.0.1:1", DeviceID: "d"}, "t", "SHA256:" + zeros, "scheme"},
		{"bad id", Config{HubURL: "mqtts://127.0.0.1:1", DeviceID: "Bad/Id"}, "t", "SHA256:" + zeros, "device id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Dir = filepath.Join(t.TempDir(), "d")
			err := Enroll(t.Context(), tc.cfg, tc.token, tc.fp)
			if err == nil {
				t.Fatalf("Enroll(%s) = nil, want an error about %s", tc.name, tc.wantErrLike)
			}
			if _, serr := os.Stat(tc.cfg.Dir); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("Enroll(%s) created the state directory", tc.name)
			}
		})
	}
}

const zeros = "0000000000000000000000000000000000000000000000000000000000000000"
