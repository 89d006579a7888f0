package policy

import (
	"fmt"
	"strings"
)

// deviceLabel is the placeholder a DNS name pattern uses for the device id.
const deviceLabel = "{device}"

// checkPattern reports whether pat is a valid DNS name pattern: dot-separated
// labels of letters, digits and '-', where the first label may be "*" (exactly
// one label) and any label may be "{device}" (the device id, lowercased).
func checkPattern(pat string) error {
	if pat == "" || len(pat) > 253 {
		return fmt.Errorf("%q is not a DNS name pattern (1 to 253 characters)", pat)
	}
	labels := strings.Split(pat, ".")
	for i, l := range labels {
		switch {
		case l == "*" && i == 0 && len(labels) > 1:
		case l == deviceLabel:
		case validLabel(strings.ToLower(l)):
		default:
			return fmt.Errorf("%q is not a DNS name pattern: label %q must be letters, digits and '-' (or '*' as the first label, or %s)", pat, l, deviceLabel)
		}
	}
	return nil
}

// validLabel reports whether l is a lowercase LDH label (RFC 1123).
func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// validHostname reports whether name (lowercase) is a plain host name: no
// wildcard, no trailing dot.
func validHostname(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for l := range strings.SplitSeq(name, ".") {
		if !validLabel(l) {
			return false
		}
	}
	return true
}

// matchPattern reports whether the lowercase host name matches pat for device.
func matchPattern(pat, name, device string) bool {
	pl := strings.Split(strings.ToLower(pat), ".")
	nl := strings.Split(name, ".")
	if len(pl) != len(nl) {
		return false
	}
	for i, p := range pl {
		switch p {
		case "*":
		case deviceLabel:
			if !validLabel(device) || nl[i] != device {
				return false
			}
		default:
			if nl[i] != p {
				return false
			}
		}
	}
	return true
}

// filterNames splits requested DNS names into those the patterns allow for the
// device (lowercased, duplicates removed, in request order) and those dropped.
func filterNames(patterns []string, deviceID string, requested []string) (allowed, dropped []string) {
	device := strings.ToLower(deviceID)
	seen := map[string]bool{}
	for _, r := range requested {
		name := strings.ToLower(r)
		if seen[name] {
			continue
		}
		seen[name] = true
		ok := validHostname(name)
		if ok {
			ok = false
			for _, p := range patterns {
				if matchPattern(p, name, device) {
					ok = true
					break
				}
			}
		}
		if ok {
			allowed = append(allowed, name)
		} else {
			dropped = append(dropped, r)
		}
	}
	return allowed, dropped
}
