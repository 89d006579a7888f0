package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Marshal returns p as canonical YAML: version 1, then every class in order with
// every setting written out (nothing left to inheritance), durations in the
// largest whole units ("30d", "1m"), fractions as short decimals or ratios
// ("0.1", "2/3"). Parse(Marshal(p)) equals p for a valid p.
func (p *Policy) Marshal() ([]byte, error) {
	root := mapping(
		"version", scalar("!!int", "1"),
		"backdate", scalar("!!str", formatDuration(p.Backdate)),
	)
	classes := &yaml.Node{Kind: yaml.SequenceNode}
	for i := range p.Classes {
		classes.Content = append(classes.Content, classNode(&p.Classes[i]))
	}
	root.Content = append(root.Content, scalar("!!str", "classes"), classes)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("marshal policy: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal policy: %w", err)
	}
	return buf.Bytes(), nil
}

// Hash identifies the policy's content: "sha256:" and the hex SHA-256 of its
// canonical YAML (Marshal), so `sha256sum` of a marshalled policy gives the same
// digest. Two policies with equal settings have equal hashes, however their
// files were written.
func (p *Policy) Hash() string {
	b, err := p.Marshal()
	if err != nil {
		// Marshal of plain strings and numbers does not fail; if it ever does,
		// the hash must still differ from every real one.
		return "invalid:" + err.Error()
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// classNode writes every setting of c, in the order of the documentation.
func classNode(c *Class) *yaml.Node {
	kv := []any{"name", scalar("!!str", c.Name)}
	if c.Name != DefaultClass {
		m := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
		for _, l := range []struct {
			key  string
			list []string
		}{{"devices", c.Match.Devices}, {"tags", c.Match.Tags}, {"families", c.Match.Families}} {
			if len(l.list) > 0 {
				m.Content = append(m.Content, scalar("!!str", l.key), list(l.list))
			}
		}
		if len(m.Content) > 0 {
			m.Style = 0
		}
		kv = append(kv, "match", m)
	}
	keys := make([]string, len(c.Keys))
	for i, k := range c.Keys {
		keys[i] = k.String()
	}
	kv = append(kv, "keys", list(keys), "lifetime", scalar("!!str", formatDuration(c.Lifetime)))
	if c.RenewBefore != 0 {
		kv = append(kv, "renew_before", scalar("!!str", formatDuration(c.RenewBefore)))
	} else {
		kv = append(kv, "renew_at", fraction(c.RenewAt))
	}
	kv = append(kv,
		"jitter", fraction(c.Jitter),
		"emergency_floor", fraction(c.EmergencyFloor),
		"rekey", scalar("!!bool", strconv.FormatBool(c.Rekey)),
		"grace", scalar("!!str", formatDuration(c.Grace)),
		"verify", scalar("!!str", string(c.Verify)),
		"priority", priorityNode(c.Priority),
		"dns_names", list(c.DNSNames),
		"server_auth", scalar("!!bool", strconv.FormatBool(c.ServerAuth)),
	)
	return mapping(kv...)
}

func mapping(kv ...any) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(kv); i += 2 {
		n.Content = append(n.Content, scalar("!!str", kv[i].(string)), kv[i+1].(*yaml.Node))
	}
	return n
}

func scalar(tag, v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v}
}

func list(items []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, s := range items {
		n.Content = append(n.Content, scalar("!!str", s))
	}
	return n
}

func fraction(x float64) *yaml.Node {
	s := formatFraction(x)
	if strings.Contains(s, "/") {
		return scalar("!!str", s)
	}
	return scalar("!!float", s)
}

func priorityNode(p int) *yaml.Node {
	if s := priorityName(p); s != "" {
		return scalar("!!str", s)
	}
	return scalar("!!int", strconv.Itoa(p))
}

// priorityName returns the level name of p, or "".
func priorityName(p int) string {
	switch p {
	case PriorityLow:
		return "low"
	case PriorityNormal:
		return "normal"
	case PriorityHigh:
		return "high"
	case PriorityCritical:
		return "critical"
	}
	return ""
}
