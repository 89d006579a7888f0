package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Subject is what the policy knows of a device when it chooses its class.
type Subject struct {
	// DeviceID is the device's identity (certificate URI SAN / CN).
	DeviceID string
	// Family is the device model or firmware family, as recorded at enrollment.
	Family string
	// Tags are the labels an admin gave the device.
	Tags []string
}

// Reason explains a decision: the rule that made it and a sentence for people.
type Reason struct {
	// Rule is the setting that decided, e.g. "classes.camera.match.tags".
	Rule string
	// Text is the explanation shown on the dashboard.
	Text string
}

// String returns the explanation.
func (r Reason) String() string { return r.Text }

// ClassFor returns the class of a device and why. Precedence, most specific
// first:
//
//  1. a class whose match.devices lists the device id;
//  2. a class whose match.tags lists one of the device's tags; when the device
//     has tags of several classes, the one with the highest priority (so a lock
//     also tagged "outdoor" stays high-risk), then the first in the policy;
//  3. the class whose match.families lists the device's family;
//  4. the default class.
//
// A device id, tag or family is listed by one class at most (Validate enforces
// it), so only a device carrying tags of two classes of equal priority depends
// on class order.
// The returned class belongs to p and must not be modified.
func (p *Policy) ClassFor(s Subject) (*Class, Reason) {
	if s.DeviceID != "" {
		for i := range p.Classes {
			c := &p.Classes[i]
			if slices.Contains(c.Match.Devices, s.DeviceID) {
				return c, Reason{
					Rule: "classes." + c.Name + ".match.devices",
					Text: fmt.Sprintf("class %q: it lists device %q by id", c.Name, s.DeviceID),
				}
			}
		}
	}
	var tagged *Class
	var tag string
	for i := range p.Classes {
		c := &p.Classes[i]
		if tagged != nil && c.Priority <= tagged.Priority {
			continue
		}
		for _, t := range c.Match.Tags {
			if slices.Contains(s.Tags, t) {
				tagged, tag = c, t
				break
			}
		}
	}
	if tagged != nil {
		return tagged, Reason{
			Rule: "classes." + tagged.Name + ".match.tags",
			Text: fmt.Sprintf("class %q: the device is tagged %q", tagged.Name, tag),
		}
	}
	if s.Family != "" {
		for i := range p.Classes {
			c := &p.Classes[i]
			if slices.Contains(c.Match.Families, s.Family) {
				return c, Reason{
					Rule: "classes." + c.Name + ".match.families",
					Text: fmt.Sprintf("class %q: the device is of family %q", c.Name, s.Family),
				}
			}
		}
	}
	c := p.class(DefaultClass)
	if c == nil {
		// Only a Policy that fails Validate lacks it; fall back to the shipped
		// default rather than returning nil.
		d := builtinDefault()
		c = &d
	}
	what := fmt.Sprintf("device %q", s.DeviceID)
	if s.Family != "" {
		what += fmt.Sprintf(", its family %q", s.Family)
	}
	if len(s.Tags) > 0 {
		what += fmt.Sprintf(", its tags [%s]", strings.Join(s.Tags, ", "))
	}
	return c, Reason{
		Rule: "classes." + DefaultClass,
		Text: fmt.Sprintf("class %q: no other class lists %s", DefaultClass, what),
	}
}

// ClassHash identifies how p assigns classes: "classes:" and the hex SHA-256 of what
// ClassFor reads — each class's name, priority and match lists, in order. Two policies with
// equal ClassHash give every device the same class, whatever their other settings, so a
// class stored with the ClassHash it was chosen under (the inventory's devices.class, issue
// 14) is known to be the policy's as long as the hashes agree, and a policy change that
// leaves the classes alone (a lifetime, a window) does not make any stored class stale.
func (p *Policy) ClassHash() string {
	h := sha256.New()
	field := func(s string) {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	list := func(ss []string) {
		field(strconv.Itoa(len(ss)))
		for _, s := range ss {
			field(s)
		}
	}
	for i := range p.Classes {
		c := &p.Classes[i]
		field(c.Name)
		field(strconv.Itoa(c.Priority))
		list(c.Match.Devices)
		list(c.Match.Tags)
		list(c.Match.Families)
	}
	return "classes:" + hex.EncodeToString(h.Sum(nil))
}
