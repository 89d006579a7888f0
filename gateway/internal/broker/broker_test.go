package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/hearth-pki/hearth/protocol"
)

// TestNewConfig checks the configurations New refuses.
func TestNewConfig(t *testing.T) {
	pki := newPKI(t)
	auth, rec := newFakeAuth(), newRecorder()
	good := func() Config { return Config{Addr: "127.0.0.1:0", TLS: pki.serverTLSConfig()} }
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"no TLS", func(c *Config) { c.TLS = nil }},
		{"no client CAs", func(c *Config) { c.TLS.ClientCAs = nil }},
		{"unverified client certificates", func(c *Config) { c.TLS.ClientAuth = tls.RequireAnyClientCert }},
		{"requested client certificates", func(c *Config) { c.TLS.ClientAuth = tls.RequestClientCert }},
		{"GetConfigForClient", func(c *Config) {
			c.TLS.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return nil, nil }
		}},
		{"no server certificate", func(c *Config) { c.TLS.Certificates = nil }},
		{"plaintext on all interfaces", func(c *Config) { c.PlainAddr = ":0" }},
		{"plaintext on 0.0.0.0", func(c *Config) { c.PlainAddr = "0.0.0.0:0" }},
		{"plaintext on a name", func(c *Config) { c.PlainAddr = "example.com:1883" }},
		{"small packets", func(c *Config) { c.MaxPacketSize = 1024 }},
		{"negative rate", func(c *Config) { c.PublishRate = -1 }},
		{"negative timeout", func(c *Config) { c.ConnectTimeout = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			tt.edit(&cfg)
			b, err := New(cfg, auth, rec.handle, nil)
			if !errors.Is(err, ErrConfig) {
				if b != nil {
					_ = b.tlsLn.ln.Close()
				}
				t.Errorf("New(%s) = %v, want %v", tt.name, err, ErrConfig)
			}
		})
	}
	t.Run("missing auth", func(t *testing.T) {
		if _, err := New(good(), nil, rec.handle, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("New(nil Auth) = %v, want %v", err, ErrConfig)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		cfg := good()
		b, err := New(cfg, auth, rec.handle, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer b.tlsLn.ln.Close()
		caps := b.srv.Options.Capabilities
		if caps.MaximumPacketSize != DefaultMaxPacketSize || b.cfg.ConnectTimeout != DefaultConnectTimeout ||
			b.cfg.TLS.ClientAuth != tls.VerifyClientCertIfGiven || b.cfg.TLS.MinVersion != tls.VersionTLS12 ||
			caps.MaximumClientWritesPending != clientWritesPending || !b.srv.Options.InlineClient {
			t.Errorf("New(defaults): packet size %d, timeout %v, client auth %v, min TLS %x, writes pending %d, inline %v",
				caps.MaximumPacketSize, b.cfg.ConnectTimeout, b.cfg.TLS.ClientAuth, b.cfg.TLS.MinVersion,
				caps.MaximumClientWritesPending, b.srv.Options.InlineClient)
		}
		if cfg.TLS.ClientAuth != tls.NoClientCert {
			t.Errorf("New changed the caller's tls.Config")
		}
	})
}

// TestPlainListener checks the loopback plaintext listener: admins and enrolling agents
// connect, and no certificate can be presented there.
func TestPlainListener(t *testing.T) {
	e := start(t, func(c *Config) { c.PlainAddr = "127.0.0.1:0" })
	e.auth.tokens["dev-new"] = "tok-123"
	for _, tt := range []struct {
		name, clientID, user, pass string
		role                       Role
	}{
		{"admin", "console", "admin", "admin-secret", RoleAdmin},
		{"enrolling", "dev-new", "dev-new", "tok-123", RoleEnrolling},
		{"bad password", "console", "admin", "wrong", 0},
		{"no credentials", "dev-a", "", "", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := e.clientOpts(tt.clientID, nil)
			opts.Servers = nil
			opts.AddBroker("tcp://" + e.b.PlainAddr().String()).SetUsername(tt.user).SetPassword(tt.pass)
			c, err := connect(t, opts)
			if tt.role == 0 {
				if err == nil {
					t.Fatalf("Connect(%s) over plaintext succeeded, want refused", tt.name)
				}
				return
			}
			if err != nil {
				t.Fatalf("Connect(%s) over plaintext = %v", tt.name, err)
			}
			if got := probe(t, e, c, tt.role, tt.user).from.Role; got != tt.role {
				t.Errorf("role over plaintext = %v, want %v", got, tt.role)
			}
		})
	}
}

// TestRunTwice checks that Run returns once its context ended and refuses a second call.
func TestRunTwice(t *testing.T) {
	pki := newPKI(t)
	b, err := New(Config{Addr: "127.0.0.1:0", TLS: pki.serverTLSConfig()}, newFakeAuth(), newRecorder().handle, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Run(ctx); err != nil {
		t.Errorf("Run(ended context) = %v, want nil", err)
	}
	if err := b.Run(t.Context()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run() = %v, want %v", err, ErrRunning)
	}
}

// TestRunClosesClients checks that ending Run closes live and half-open connections.
func TestRunClosesClients(t *testing.T) {
	pki := newPKI(t)
	b, err := New(Config{Addr: "127.0.0.1:0", TLS: pki.serverTLSConfig()}, newFakeAuth(), newRecorder().handle, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()

	dev := pki.device(t, "dev-a")
	e := &env{b: b, pki: pki, topic: protocol.Topics{}}
	lost := make(chan struct{})
	mustConnect(t, e.clientOpts("dev-a", &dev.cert).SetConnectionLostHandler(func(paho.Client, error) { close(lost) }))
	idle, err := tls.Dial("tcp", b.Addr().String(), &tls.Config{RootCAs: pki.Pool()}) // no CONNECT
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Run did not return")
	}
	select {
	case <-lost:
	case <-time.After(waitFor):
		t.Error("the MQTT client was not disconnected")
	}
	expectClosed(t, idle)
}
