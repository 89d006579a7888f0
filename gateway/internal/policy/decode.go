package policy

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The keys each YAML mapping accepts; anything else is refused, so that a typo
// ("lifetme: 7d") is an error rather than a silently ignored setting.
var (
	policyKeys = []string{"version", "backdate", "classes"}
	classKeys  = []string{"name", "match", "keys", "lifetime", "renew_at", "renew_before", "jitter",
		"emergency_floor", "rekey", "grace", "verify", "priority", "dns_names", "server_auth"}
	matchKeys = []string{"devices", "tags", "families"}
)

// rawPolicy is the policy text after decoding, before defaults are applied.
type rawPolicy struct {
	backdate     *time.Duration
	backdateLine int
	classes      []rawClass
}

// rawClass is one entry of the text's classes list.
type rawClass struct {
	index int
	line  int
	// set holds the keys the entry gives a value, with their lines.
	set map[string]int
	c   Class
}

// origin tells the validator where a resolved class's settings came from.
type origin struct {
	path  string         // "classes[2]", or "classes.high-risk" for a built-in not in the text
	line  int            // line of the class entry
	lines map[string]int // line of each key set in the text
	// own reports whether the class sets the key itself (in the text or as a
	// built-in) rather than inheriting it from the default class.
	own func(key string) bool
}

func allFields(string) bool { return true }

func fieldSet(keys []string) func(string) bool {
	return func(k string) bool {
		for _, x := range keys {
			if x == k {
				return true
			}
		}
		return false
	}
}

// origin returns rc's origin; builtin (may be nil) lists keys a built-in sets.
func (rc *rawClass) origin(builtin func(string) bool) origin {
	return origin{
		path:  fmt.Sprintf("classes[%d]", rc.index),
		line:  rc.line,
		lines: rc.set,
		own: func(k string) bool {
			_, ok := rc.set[k]
			return ok || (builtin != nil && builtin(k))
		},
	}
}

// decoder walks the YAML node tree, collecting every error with its path.
type decoder struct {
	errs []*FieldError
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &FieldError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindName names a node's kind for messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

// fields checks that n is a mapping with only allowed, distinct keys and calls
// fn for each key whose value is not null (a null value means "unset").
func (d *decoder) fields(n *yaml.Node, path string, allowed []string, fn func(key string, v *yaml.Node)) {
	if n.Kind == yaml.AliasNode {
		d.fail(n, path, "YAML aliases are not supported")
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping of key: value, got %s", kindName(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "keys must be plain words, got %s", kindName(k))
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			d.fail(k, join2(path, k.Value), "set twice (first at line %d)", prev)
			continue
		}
		seen[k.Value] = k.Line
		if !contains(allowed, k.Value) {
			d.fail(k, path, "unknown key %q (allowed: %s)", k.Value, strings.Join(allowed, ", "))
			continue
		}
		if v.Kind == yaml.AliasNode {
			d.fail(v, join2(path, k.Value), "YAML aliases are not supported")
			continue
		}
		if isNull(v) {
			continue
		}
		fn(k.Value, v)
	}
}

func join2(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// policy decodes the document root (nil: empty document).
func (d *decoder) policy(root *yaml.Node) *rawPolicy {
	raw := &rawPolicy{}
	if root == nil || isNull(root) {
		return raw
	}
	d.fields(root, "", policyKeys, func(key string, v *yaml.Node) {
		switch key {
		case "version":
			if v.Kind != yaml.ScalarNode || v.Value != "1" {
				d.fail(v, key, "%s is not a supported version (this hub reads version 1)", kindName(v))
			}
		case "backdate":
			if dur, ok := d.duration(v, key); ok {
				raw.backdate, raw.backdateLine = &dur, v.Line
			}
		case "classes":
			if v.Kind != yaml.SequenceNode {
				d.fail(v, key, "want a list of classes, got %s", kindName(v))
				return
			}
			for i, cn := range v.Content {
				if rc, ok := d.class(cn, fmt.Sprintf("classes[%d]", i), i); ok {
					raw.classes = append(raw.classes, rc)
				}
			}
		}
	})
	// Names identify classes; two entries with one name would make "which one"
	// a guess.
	first := map[string]*rawClass{}
	for i := range raw.classes {
		rc := &raw.classes[i]
		if prev, dup := first[rc.c.Name]; dup {
			d.errs = append(d.errs, &FieldError{
				Path: fmt.Sprintf("classes[%d].name", rc.index), Line: rc.set["name"],
				Msg: fmt.Sprintf("%q is already the name of classes[%d]", rc.c.Name, prev.index),
			})
			continue
		}
		first[rc.c.Name] = rc
	}
	return raw
}

// class decodes one entry of the classes list.
func (d *decoder) class(n *yaml.Node, path string, index int) (rawClass, bool) {
	rc := rawClass{index: index, line: n.Line, set: map[string]int{}}
	before := len(d.errs)
	d.fields(n, path, classKeys, func(key string, v *yaml.Node) {
		p := path + "." + key
		rc.set[key] = v.Line
		c := &rc.c
		switch key {
		case "name":
			c.Name, _ = d.scalar(v, p)
		case "match":
			d.fields(v, p, matchKeys, func(mk string, mv *yaml.Node) {
				list, _ := d.strings(mv, p+"."+mk)
				switch mk {
				case "devices":
					c.Match.Devices = list
				case "tags":
					c.Match.Tags = list
				case "families":
					c.Match.Families = list
				}
			})
		case "keys":
			list, ok := d.strings(v, p)
			if !ok {
				return
			}
			for i, s := range list {
				k, err := parseKeyRule(s)
				if err != nil {
					d.fail(v.Content[i], fmt.Sprintf("%s[%d]", p, i), "%v", err)
					continue
				}
				c.Keys = append(c.Keys, k)
			}
		case "lifetime":
			c.Lifetime, _ = d.duration(v, p)
		case "renew_at":
			c.RenewAt, _ = d.fraction(v, p)
		case "renew_before":
			c.RenewBefore, _ = d.duration(v, p)
		case "jitter":
			c.Jitter, _ = d.fraction(v, p)
		case "emergency_floor":
			c.EmergencyFloor, _ = d.fraction(v, p)
		case "rekey":
			c.Rekey, _ = d.boolean(v, p)
		case "grace":
			c.Grace, _ = d.duration(v, p)
		case "verify":
			s, _ := d.scalar(v, p)
			c.Verify = VerifyMode(s)
		case "priority":
			c.Priority, _ = d.priority(v, p)
		case "dns_names":
			c.DNSNames, _ = d.strings(v, p)
		case "server_auth":
			c.ServerAuth, _ = d.boolean(v, p)
		}
	})
	if len(d.errs) > before {
		return rc, false
	}
	if _, ok := rc.set["name"]; !ok {
		d.fail(n, path+".name", "missing: every class needs a name")
		return rc, false
	}
	_, at := rc.set["renew_at"]
	_, before2 := rc.set["renew_before"]
	if at && before2 {
		d.fail(n, path, "set renew_at or renew_before, not both")
		return rc, false
	}
	return rc, true
}

// scalar returns a scalar's text.
func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want a single value, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

// strings decodes a list of scalars.
func (d *decoder) strings(n *yaml.Node, path string) ([]string, bool) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a list like [a, b], got %s", kindName(n))
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	ok := true
	for i, e := range n.Content {
		if e.Kind != yaml.ScalarNode || isNull(e) {
			d.fail(e, fmt.Sprintf("%s[%d]", path, i), "want a word, got %s", kindName(e))
			ok = false
			continue
		}
		out = append(out, e.Value)
	}
	return out, ok
}

func (d *decoder) duration(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := d.scalar(n, path)
	if !ok {
		return 0, false
	}
	v, err := parseDuration(s)
	if err != nil {
		d.fail(n, path, "%q is not a duration (use a number and a unit: 30d, 72h, 90m, 1m30s)", s)
		return 0, false
	}
	return v, true
}

func (d *decoder) fraction(n *yaml.Node, path string) (float64, bool) {
	s, ok := d.scalar(n, path)
	if !ok {
		return 0, false
	}
	v, err := parseFraction(s)
	if err != nil {
		d.fail(n, path, "%q is not a fraction (use a number like 0.66 or a ratio like 2/3)", s)
		return 0, false
	}
	return v, true
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		d.fail(n, path, "%s is not true or false", kindName(n))
		return false, false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		d.fail(n, path, "%s is not true or false", kindName(n))
		return false, false
	}
	return b, true
}

func (d *decoder) priority(n *yaml.Node, path string) (int, bool) {
	s, ok := d.scalar(n, path)
	if !ok {
		return 0, false
	}
	if v, err := parsePriority(s); err == nil {
		return v, true
	}
	d.fail(n, path, "%q is not a priority (use low, normal, high, critical or a number from 0 to 100)", s)
	return 0, false
}
