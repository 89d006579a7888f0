package hub

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
	"github.com/hearth-pki/hearth/gateway/internal/testkit/hubkit"
)

// TestCADatesFollowBrokerCertificate: when the broker's certificate is renewed while the hub
// runs, Home Assistant's hub state carries its new expiry at once (the renewal is an event;
// nothing polls), and the dashboard's CA state is the new certificate.
func TestCADatesFollowBrokerCertificate(t *testing.T) {
	haAddr := testkit.StartMosquitto(t).Addr
	clock := testkit.NewClock(time.Now().Truncate(time.Second))
	cfg := hubkit.Config(t, fmt.Sprintf("home_assistant:\n  discovery: true\n  broker: mqtt://%s\n", haAddr))
	watcher := watchHA(t, haAddr)
	h := runHub(t, cfg, Options{Version: "test", Now: clock.Now})
	const state = "hearth/hass/hub/state"
	stamp := func(ts time.Time) string { return ts.UTC().Truncate(time.Second).Format(time.RFC3339) }
	before := h.serverCert.Current()
	watcher.wait(t, state, func(p string) bool {
		return strings.Contains(p, `"broker_cert_expires":"`+stamp(before.NotAfter)+`"`) &&
			strings.Contains(p, `"root_ca_expires":"`+stamp(h.ca.Root().NotAfter)+`"`) &&
			strings.Contains(p, `"ca_expires":"`+stamp(h.ca.Intermediate().NotAfter)+`"`)
	})

	clock.Add(250 * 24 * time.Hour) // past two thirds of the broker certificate's lifetime
	if renewed, err := h.serverCert.Renew(clock.Now()); !renewed || err != nil {
		t.Fatalf("Renew() = %v, %v; want renewed", renewed, err)
	}
	after := h.serverCert.Current()
	if stamp(after.NotAfter) == stamp(before.NotAfter) {
		t.Fatal("the renewed certificate expires when the old one did")
	}
	watcher.wait(t, state, func(p string) bool { return strings.Contains(p, `"broker_cert_expires":"`+stamp(after.NotAfter)+`"`) })

	// The dashboard's CA state (web.Config.CAState, read at each page) is the new one.
	if got := h.webCA(); got.BrokerSerial != after.SerialNumber.Text(16) || !got.BrokerNotAfter.Equal(after.NotAfter) {
		t.Errorf("dashboard CA = broker %s until %v; want the renewed %x until %v", got.BrokerSerial, got.BrokerNotAfter, after.SerialNumber, after.NotAfter)
	}
}
