package broker

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

// Role is what a session is allowed to be, decided at CONNECT.
type Role int

// The roles. The zero Role is no role: nothing is allowed.
const (
	RoleDevice    Role = iota + 1 // an enrolled agent, authenticated by its client certificate
	RoleEnrolling                 // an agent enrolling with a one-time token
	RoleAdmin                     // a person or tool with admin credentials
	// RoleRefused is an enrollment login that Auth refused with a Refusal: the session is
	// accepted so that the agent can be told why, on its cert topic, and nothing else.
	RoleRefused
)

// String returns the role's name as it appears in logs.
func (r Role) String() string {
	switch r {
	case RoleDevice:
		return "device"
	case RoleEnrolling:
		return "enrolling"
	case RoleAdmin:
		return "admin"
	case RoleRefused:
		return "refused"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// Identity is who a session is, fixed at CONNECT for the session's lifetime.
type Identity struct {
	Role     Role
	DeviceID string // RoleDevice and RoleEnrolling: the device; empty for RoleAdmin
	Serial   string // RoleDevice: the serial of the certificate on this TLS session, lowercase hex
	Username string // the MQTT username as sent, possibly empty for RoleDevice
	Remote   string // the peer's address
	// Conn numbers the connection: the broker numbers them from 1 in the order it accepts
	// them, so a larger Conn is a newer connection.
	Conn uint64
	// Expired marks a RoleDevice session whose certificate had expired at CONNECT (only with
	// Config.AcceptExpired): a recovery session, which may send one CSR and read its answer.
	Expired bool
}

// Sessions is told of each device session (RoleDevice), in the order things happen to it:
// SessionUp once it authenticated (before its CONNACK), Subscribed when it subscribed to its
// command topic, SessionDown when its connection closed. A takeover by the same client id is
// the new session's SessionUp followed by the old one's SessionDown. The calls are made with
// the broker's session registry locked, so that they reach the observer in the order they
// happened: they must not block and must not call the Broker.
type Sessions interface {
	SessionUp(id Identity)
	Subscribed(id Identity)
	SessionDown(id Identity)
}

// Auth answers the broker's questions at CONNECT. Every method is called on a client's
// connect path, with a deadline of Config.ConnectTimeout: answer from memory or with one
// quick SQLite read.
type Auth interface {
	// Certificate decides a client certificate that TLS already verified against the hub
	// CA (with Config.AcceptExpired, possibly expired: Identity.Expired). deviceID is the
	// device it names (protocol.DeviceIDFromCert), serial is lowercase hex. It returns nil
	// to allow (pending, active, superseded within the overlap) and an error to refuse
	// (revoked, abandoned, unknown, superseded past the overlap, quarantined device).
	Certificate(ctx context.Context, deviceID, serial string) error
	// Token decides an enrollment login: username deviceID, password token. It returns nil
	// when the token currently authorizes deviceID to enroll; it should not consume it.
	Token(ctx context.Context, deviceID, token string) error
	// Admin reports whether username and password are an admin's credentials. It is asked
	// first for every login by password, enrollment included: answer false at once for an
	// enrollment token, and take the same time for a username that is no admin's as for one
	// that is (issue 15).
	Admin(ctx context.Context, username, password string) bool
}

// Refusal is what an error from Auth.Token may implement to say why, in the wire's words:
// the broker then tells the agent (protocol/README.md, "Why an enrollment login was
// refused") instead of refusing the CONNECT without a reason.
type Refusal interface {
	error
	// Reason returns the code the agent is told and, for a retryable one, how long to wait.
	Reason() (protocol.Code, time.Duration)
}

type sourceKey struct{}

// Source returns where the CONNECT whose Auth call ctx belongs to comes from: the client's
// IPv4 address, or its IPv6 /64, as text; "" outside such a call. Auth keys its lockouts by it.
func Source(ctx context.Context) string {
	s, _ := ctx.Value(sourceKey{}).(string)
	return s
}

// WithSource returns ctx carrying src, as Source reads it. The broker's Auth calls carry the
// client's source; another caller of an Auth (a test, another front end) sets its own.
func WithSource(ctx context.Context, src string) context.Context {
	return context.WithValue(ctx, sourceKey{}, src)
}

// Login is an enrollment login, accepted or refused, as Config.Logins is told of it.
type Login struct {
	DeviceID string
	Source   string        // where it came from, as Source returns it
	Refused  protocol.Code // the reason the agent is told; "" for an accepted login
	Err      error         // what Auth said, for the log; nil for an accepted login
}

// Handler receives each allowed message an agent or admin sends to the hub: topic kinds
// csr, commit, health and state from devices, csr from enrolling sessions, bridge/request
// from admins. from.Serial is the certificate of the TLS session the message came on.
// The broker calls it synchronously from the sender's read goroutine, before the message is
// acknowledged and delivered: it must return fast (queue slow work) and it sees one
// client's messages in order. payload is the handler's own copy.
type Handler func(ctx context.Context, from Identity, topic protocol.Topic, payload []byte)

// serialOf returns a certificate's serial as lowercase hex without leading zeros, the form
// the inventory and the protocol use.
func serialOf(cert *x509.Certificate) string { return cert.SerialNumber.Text(16) }
