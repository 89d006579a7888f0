package hass

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// supervisor serves GET /services/mqtt like the Home Assistant Supervisor, answering status
// and body to requests that carry token.
func supervisor(t *testing.T, token string, status int, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/services/mqtt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"result":"error","message":"Unauthorized"}`))
			return
		}
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

const mqttService = `{"result":"ok","data":{"addon":"core_mosquitto","host":"core-mosquitto","port":1883,"ssl":false,"protocol":"3.1.1","username":"addons","password":"s3cret"}}`

func TestDiscoverBroker(t *testing.T) {
	srv := supervisor(t, "tok", http.StatusOK, mqttService)
	got, err := DiscoverBroker(t.Context(), srv.URL+"/", "tok", srv.Client())
	if err != nil {
		t.Fatalf("DiscoverBroker() error: %v", err)
	}
	want := Broker{Host: "core-mosquitto", Port: 1883, Username: "addons", Password: "s3cret", Protocol: "3.1.1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DiscoverBroker() mismatch (-want +got):\n%s", diff)
	}
	if got.URL() != "tcp://core-mosquitto:1883" {
		t.Errorf("Broker.URL() = %q, want tcp://core-mosquitto:1883", got.URL())
	}
}

func TestDiscoverBrokerErrors(t *testing.T) {
	tests := []struct {
		name   string
		token  string
		status int
		body   string
		want   error // nil: an error that is neither sentinel
	}{
		{"bad token", "wrong", http.StatusOK, mqttService, ErrUnauthorized},
		{"forbidden", "tok", http.StatusForbidden, `{"result":"error","message":"No access"}`, ErrUnauthorized},
		{"no service (400)", "tok", http.StatusBadRequest, `{"result":"error","message":"Service not enabled"}`, ErrNoBroker},
		{"no service (404)", "tok", http.StatusNotFound, `404: Not Found`, ErrNoBroker},
		{"no service (result error)", "tok", http.StatusOK, `{"result":"error","message":"No mqtt service"}`, ErrNoBroker},
		{"server error", "tok", http.StatusInternalServerError, `{}`, nil},
		{"not JSON", "tok", http.StatusOK, `<html>`, nil},
		{"no host", "tok", http.StatusOK, `{"result":"ok","data":{"port":1883}}`, nil},
		{"bad port", "tok", http.StatusOK, `{"result":"ok","data":{"host":"h","port":70000}}`, nil},
		{"null data", "tok", http.StatusOK, `{"result":"ok","data":null}`, nil},
		{"port as a string", "tok", http.StatusOK, `{"result":"ok","data":{"host":"h","port":"1883"}}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := supervisor(t, "tok", tt.status, tt.body)
			got, err := DiscoverBroker(t.Context(), srv.URL, tt.token, nil)
			if err == nil {
				t.Fatalf("DiscoverBroker() = %+v, want an error", got)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("DiscoverBroker() error = %v, want %v", err, tt.want)
			}
			if tt.want == nil && (errors.Is(err, ErrNoBroker) || errors.Is(err, ErrUnauthorized)) {
				t.Errorf("DiscoverBroker() error = %v, want neither ErrNoBroker nor ErrUnauthorized", err)
			}
		})
	}
}

func TestDiscoverBrokerUnreachable(t *testing.T) {
	srv := supervisor(t, "tok", http.StatusOK, mqttService)
	srv.Close()
	if _, err := DiscoverBroker(t.Context(), srv.URL, "tok", nil); err == nil || errors.Is(err, ErrNoBroker) {
		t.Errorf("DiscoverBroker(closed server) error = %v, want a connection error", err)
	}
}

func TestBrokerURL(t *testing.T) {
	tests := []struct {
		b    Broker
		want string
	}{
		{Broker{Host: "core-mosquitto", Port: 1883}, "tcp://core-mosquitto:1883"},
		{Broker{Host: "core-mosquitto", Port: 8883, SSL: true}, "ssl://core-mosquitto:8883"},
		{Broker{Host: "fd00::1", Port: 1883}, "tcp://[fd00::1]:1883"},
	}
	for _, tt := range tests {
		if got := tt.b.URL(); got != tt.want {
			t.Errorf("%+v.URL() = %q, want %q", tt.b, got, tt.want)
		}
	}
}

// FuzzDecodeBrokerReply checks that no Supervisor answer panics and that an accepted one is an
// address.
func FuzzDecodeBrokerReply(f *testing.F) {
	f.Add(200, []byte(mqttService))
	f.Add(400, []byte(`{"result":"error"}`))
	f.Add(200, []byte(`{"result":"ok","data":{"host":"h","port":1}}`))
	f.Add(200, []byte(`{"result":"ok","data":[]}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		b, err := decodeBrokerReply(status, body)
		if err == nil && (b.Host == "" || b.Port < 1 || b.Port > 65535) {
			t.Errorf("decodeBrokerReply(%d, %q) = %+v, accepted without an address", status, body, b)
		}
	})
}

func TestBrokerLogValueHidesThePassword(t *testing.T) {
	var b strings.Builder
	broker := Broker{Host: "core-mosquitto", Port: 1883, Username: "addons", Password: "s3cret"}
	slog.New(slog.NewTextHandler(&b, nil)).Info("broker", "broker", broker)
	if strings.Contains(b.String(), "s3cret") || !strings.Contains(b.String(), "tcp://core-mosquitto:1883") {
		t.Errorf("logging a Broker wrote %s, want its URL and no password", b.String())
	}
}
