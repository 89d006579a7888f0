package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Diff lists, for people and the audit log, the settings that differ between
// two policies, one line each in the form "classes.camera.lifetime: 30d -> 14d",
// "classes.legacy: added (match.families [old-cam]; keys [p256, rsa2048])",
// "classes.legacy: removed" or "classes: order changed from [a, b] to [b, a]".
// A nil policy stands for Default(). Equal policies give an empty list.
func Diff(before, after *Policy) []string {
	if before == nil {
		before = Default()
	}
	if after == nil {
		after = Default()
	}
	var out []string
	if before.Backdate != after.Backdate {
		out = append(out, fmt.Sprintf("backdate: %s -> %s", formatDuration(before.Backdate), formatDuration(after.Backdate)))
	}
	if before.CRLURL != after.CRLURL {
		out = append(out, fmt.Sprintf("crl_url: %q -> %q", before.CRLURL, after.CRLURL))
	}
	var common []string
	for i := range before.Classes {
		b := &before.Classes[i]
		a := after.class(b.Name)
		if a == nil {
			out = append(out, fmt.Sprintf("classes.%s: removed", b.Name))
			continue
		}
		common = append(common, b.Name)
		out = append(out, diffClass(b, a)...)
	}
	var base []setting
	if d := after.class(DefaultClass); d != nil {
		base = settingsOf(d)
	}
	var order []string
	for i := range after.Classes {
		a := &after.Classes[i]
		if before.class(a.Name) != nil {
			order = append(order, a.Name)
			continue
		}
		line := fmt.Sprintf("classes.%s: added", a.Name)
		if base != nil {
			var parts []string
			for _, s := range settingsOf(a) {
				if s.key == "match" || !slices.Contains(base, s) {
					parts = append(parts, s.key+" "+s.value)
				}
			}
			if len(parts) > 0 {
				line += " (" + strings.Join(parts, "; ") + ")"
			}
		}
		out = append(out, line)
	}
	// Order decides between classes when a device has tags of several.
	if !slices.Equal(common, order) {
		out = append(out, fmt.Sprintf("classes: order changed from [%s] to [%s]", strings.Join(common, ", "), strings.Join(order, ", ")))
	}
	return out
}

// setting is one class setting in canonical text.
type setting struct{ key, value string }

// settingsOf returns c's settings in documentation order.
func settingsOf(c *Class) []setting {
	window := setting{"renew_at", formatFraction(c.RenewAt)}
	if c.RenewBefore != 0 {
		window = setting{"renew_before", formatDuration(c.RenewBefore)}
	}
	keys := make([]string, len(c.Keys))
	for i, k := range c.Keys {
		keys[i] = k.String()
	}
	priority := priorityName(c.Priority)
	if priority == "" {
		priority = strconv.Itoa(c.Priority)
	}
	return []setting{
		{"match", matchText(c.Match)},
		{"keys", "[" + strings.Join(keys, ", ") + "]"},
		{"lifetime", formatDuration(c.Lifetime)},
		window,
		{"jitter", formatFraction(c.Jitter)},
		{"emergency_floor", formatFraction(c.EmergencyFloor)},
		{"rekey", strconv.FormatBool(c.Rekey)},
		{"grace", formatDuration(c.Grace)},
		{"verify", string(c.Verify)},
		{"priority", priority},
		{"dns_names", "[" + strings.Join(c.DNSNames, ", ") + "]"},
		{"server_auth", strconv.FormatBool(c.ServerAuth)},
	}
}

func matchText(m Match) string {
	var parts []string
	for _, l := range []struct {
		key  string
		list []string
	}{{"devices", m.Devices}, {"tags", m.Tags}, {"families", m.Families}} {
		if len(l.list) > 0 {
			parts = append(parts, l.key+" ["+strings.Join(l.list, ", ")+"]")
		}
	}
	if len(parts) == 0 {
		return "{}"
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// diffClass lists the settings that differ between two classes of one name.
func diffClass(b, a *Class) []string {
	var out []string
	bs, as := settingsOf(b), settingsOf(a)
	for i := range bs {
		if bs[i] == as[i] {
			continue
		}
		if bs[i].key != as[i].key { // renew_at <-> renew_before
			out = append(out, fmt.Sprintf("classes.%s: %s %s -> %s %s", a.Name, bs[i].key, bs[i].value, as[i].key, as[i].value))
			continue
		}
		out = append(out, fmt.Sprintf("classes.%s.%s: %s -> %s", a.Name, bs[i].key, bs[i].value, as[i].value))
	}
	return out
}
