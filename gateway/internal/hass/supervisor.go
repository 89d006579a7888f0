package hass

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// ErrNoBroker means the Supervisor provides no MQTT service: the Mosquitto add-on is not
// installed or not started. The hub then runs without Home Assistant entities.
var ErrNoBroker = errors.New("home assistant has no mqtt service")

// ErrUnauthorized means the Supervisor refused the token (HTTP 401 or 403): the add-on runs
// without SUPERVISOR_TOKEN or does not declare "services: mqtt:want".
var ErrUnauthorized = errors.New("supervisor refused the token")

// maxSupervisorResponse bounds what DiscoverBroker reads from the Supervisor.
const maxSupervisorResponse = 64 << 10

// Broker is how to reach Home Assistant's MQTT broker, as the Supervisor describes it.
type Broker struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	SSL      bool   `json:"ssl"`
	Username string `json:"username"`
	Password string `json:"password"`
	Protocol string `json:"protocol"` // "3.1.1" or "5"; the publisher always speaks 3.1.1
}

// URL returns the broker's address for the MQTT client: tcp://host:port, or ssl://host:port.
func (b Broker) URL() string {
	scheme := "tcp"
	if b.SSL {
		scheme = "ssl"
	}
	host := b.Host
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]" // an IPv6 literal
	}
	return fmt.Sprintf("%s://%s:%d", scheme, host, b.Port)
}

// LogValue implements slog.LogValuer without the password.
func (b Broker) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", b.URL()),
		slog.String("username", b.Username),
		slog.String("protocol", b.Protocol),
	)
}

// supervisorReply is the Supervisor API's envelope.
type supervisorReply struct {
	Result  string          `json:"result"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// DiscoverBroker asks the Supervisor at baseURL (normally "http://supervisor") for Home
// Assistant's MQTT service with GET /services/mqtt, authenticated by token (the add-on's
// SUPERVISOR_TOKEN). hc may be nil for a client with a 10 s timeout.
//
// It returns ErrNoBroker when the Supervisor answers that no MQTT service exists (HTTP 400 or
// 404, or result "error"), ErrUnauthorized on HTTP 401 or 403, and another error when the
// Supervisor cannot be reached or answers something else; all are wrapped with context.
func DiscoverBroker(ctx context.Context, baseURL, token string, hc *http.Client) (Broker, error) {
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	url := strings.TrimSuffix(baseURL, "/") + "/services/mqtt"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Broker{}, fmt.Errorf("supervisor request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return Broker{}, fmt.Errorf("supervisor: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSupervisorResponse+1))
	if err != nil {
		return Broker{}, fmt.Errorf("supervisor %s: reading the answer: %w", url, err)
	}
	if len(body) > maxSupervisorResponse {
		return Broker{}, fmt.Errorf("supervisor %s: answer larger than %d bytes", url, maxSupervisorResponse)
	}
	return decodeBrokerReply(resp.StatusCode, body)
}

// decodeBrokerReply interprets the Supervisor's answer to GET /services/mqtt.
func decodeBrokerReply(status int, body []byte) (Broker, error) {
	var reply supervisorReply
	jsonErr := json.Unmarshal(body, &reply)
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return Broker{}, fmt.Errorf("supervisor answered HTTP %d: %w", status, ErrUnauthorized)
	case status == http.StatusBadRequest || status == http.StatusNotFound:
		return Broker{}, fmt.Errorf("supervisor answered HTTP %d %q: %w", status, reply.Message, ErrNoBroker)
	case status != http.StatusOK:
		return Broker{}, fmt.Errorf("supervisor answered HTTP %d %q", status, reply.Message)
	case jsonErr != nil:
		return Broker{}, fmt.Errorf("supervisor answer is not JSON: %w", jsonErr)
	case reply.Result != "ok":
		return Broker{}, fmt.Errorf("supervisor answered result %q %q: %w", reply.Result, reply.Message, ErrNoBroker)
	}
	var b Broker
	dec := json.NewDecoder(bytes.NewReader(reply.Data))
	if err := dec.Decode(&b); err != nil {
		return Broker{}, fmt.Errorf("supervisor mqtt service data: %w", err)
	}
	if b.Host == "" || b.Port < 1 || b.Port > 65535 {
		return Broker{}, fmt.Errorf("supervisor mqtt service data: host %q port %d is not an address", b.Host, b.Port)
	}
	return b, nil
}
