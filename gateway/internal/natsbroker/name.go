package natsbroker

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/gateway/internal/broker"
	"github.com/hearth-pki/hearth/protocol"
)

// A session's identity travels in the name of its NATS user, which the auth callout's user
// JWT sets and the server repeats in its connect and disconnect events. Every replica thus
// learns who a session is, not only the replica that answered its callout:
//
//	hearth|<role>|<conn>|<expired 0 or 1>|<serial>|<device id or user name>
//
// A refused session (broker.RoleRefused) carries "<code>:<retry seconds>" in place of the
// serial: the replica that receives its CSR answers with that code. The last field is last
// because an admin's user name may contain anything, '|' included.
const namePrefix = "hearth|"

// errName is wrapped by every error of parseName.
var errName = errors.New("natsbroker: not a hearth session name")

// session is what the name of a session says.
type session struct {
	id      broker.Identity
	refusal protocol.Code // RoleRefused: the code its CSR is answered with
	retry   time.Duration // RoleRefused: the wait the answer asks for
}

var roleNames = map[broker.Role]string{broker.RoleDevice: "device", broker.RoleEnrolling: "enrolling",
	broker.RoleAdmin: "admin", broker.RoleRefused: "refused"}

// formatName returns the user name of s.
func formatName(s session) string {
	exp, serial := "0", s.id.Serial
	if s.id.Expired {
		exp = "1"
	}
	if s.id.Role == broker.RoleRefused {
		serial = string(s.refusal) + ":" + strconv.Itoa(int(s.retry/time.Second))
	}
	who := s.id.DeviceID
	if s.id.Role == broker.RoleAdmin {
		who = s.id.Username
	}
	return namePrefix + roleNames[s.id.Role] + "|" + strconv.FormatUint(s.id.Conn, 10) + "|" + exp + "|" + serial + "|" + who
}

// parseName reads a session's user name back. Names that are not hearth sessions' (the
// hub's own user, for one) are refused with errName.
func parseName(name string) (session, error) {
	rest, ok := strings.CutPrefix(name, namePrefix)
	if !ok {
		return session{}, errName
	}
	f := strings.SplitN(rest, "|", 5)
	if len(f) != 5 {
		return session{}, fmt.Errorf("%w: %d fields", errName, len(f))
	}
	var s session
	for r, n := range roleNames {
		if n == f[0] {
			s.id.Role = r
		}
	}
	conn, err := strconv.ParseUint(f[1], 10, 64)
	switch {
	case s.id.Role == 0:
		return session{}, fmt.Errorf("%w: role %q", errName, f[0])
	case err != nil || conn == 0:
		return session{}, fmt.Errorf("%w: connection number %q", errName, f[1])
	case f[2] != "0" && f[2] != "1":
		return session{}, fmt.Errorf("%w: expired flag %q", errName, f[2])
	}
	s.id.Conn, s.id.Expired = conn, f[2] == "1"
	if s.id.Role == broker.RoleAdmin {
		s.id.Username = f[4]
		return s, nil
	}
	if err := protocol.ValidateDeviceID(f[4]); err != nil {
		return session{}, fmt.Errorf("%w: %w", errName, err)
	}
	s.id.DeviceID = f[4]
	switch s.id.Role {
	case broker.RoleDevice:
		if f[3] == "" || strings.Trim(f[3], "0123456789abcdef") != "" {
			return session{}, fmt.Errorf("%w: serial %q", errName, f[3])
		}
		s.id.Serial = f[3]
	case broker.RoleRefused:
		code, secs, ok := strings.Cut(f[3], ":")
		n, err := strconv.Atoi(secs)
		if !ok || err != nil || n < 0 || code == "" {
			return session{}, fmt.Errorf("%w: refusal %q", errName, f[3])
		}
		s.refusal, s.retry = protocol.Code(code), time.Duration(n)*time.Second
	default:
		s.id.Username = f[4] // an enrolling session logged in with its device id
	}
	return s, nil
}

// subject returns the NATS subject of an MQTT topic name, as NATS's MQTT gateway converts
// it: '.' becomes "//" and the level separator '/' becomes '.'. Hearth topics have no empty
// levels, the only case where NATS converts differently.
func subject(topic string) string {
	var b strings.Builder
	b.Grow(len(topic) + 8)
	for i := 0; i < len(topic); i++ {
		switch topic[i] {
		case '.':
			b.WriteString("//")
		case '/':
			b.WriteByte('.')
		default:
			b.WriteByte(topic[i])
		}
	}
	return b.String()
}

// topicOf returns the MQTT topic name of a NATS subject that subject produced.
func topicOf(subj string) string {
	var b strings.Builder
	b.Grow(len(subj))
	for i := 0; i < len(subj); i++ {
		switch {
		case subj[i] == '/' && i+1 < len(subj) && subj[i+1] == '/':
			b.WriteByte('.')
			i++
		case subj[i] == '.':
			b.WriteByte('/')
		default:
			b.WriteByte(subj[i])
		}
	}
	return b.String()
}
