package policy

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The scalar notations of the policy text, each with its reader and writer;
// every writer's output reads back to the same value.

// parseDuration reads a Go duration ("72h", "1m30s") with one more unit, "d" for
// 24 hours, which may only lead: "30d", "1d12h".
func parseDuration(s string) (time.Duration, error) {
	days, rest, hasDays := strings.Cut(s, "d")
	if !hasDays {
		return time.ParseDuration(s)
	}
	n, err := strconv.ParseUint(days, 10, 32)
	if err != nil || days == "" || days[0] == '+' {
		return 0, fmt.Errorf("bad day count in %q", s)
	}
	const maxDays = math.MaxInt64 / int64(24*time.Hour)
	if n > uint64(maxDays) {
		return 0, fmt.Errorf("duration %q is too long", s)
	}
	v := time.Duration(n) * 24 * time.Hour
	if rest == "" {
		return v, nil
	}
	r, err := time.ParseDuration(rest)
	if err != nil || r < 0 || rest[0] == '+' {
		return 0, fmt.Errorf("bad duration %q", s)
	}
	if v > math.MaxInt64-r {
		return 0, fmt.Errorf("duration %q is too long", s)
	}
	return v + r, nil
}

// parseFraction reads a finite decimal ("0.66") or a ratio of integers ("2/3").
func parseFraction(s string) (float64, error) {
	if num, den, ok := strings.Cut(s, "/"); ok {
		a, err1 := strconv.ParseUint(num, 10, 32)
		b, err2 := strconv.ParseUint(den, 10, 32)
		if err1 != nil || err2 != nil || b == 0 || num[0] == '+' || den[0] == '+' {
			return 0, fmt.Errorf("bad ratio %q", s)
		}
		return float64(a) / float64(b), nil
	}
	// Decimal notation only: strconv also reads hex floats, "inf" and "nan".
	for _, r := range s {
		if !strings.ContainsRune("0123456789.eE+-", r) {
			return 0, fmt.Errorf("bad number %q", s)
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("bad number %q", s)
	}
	return v, nil
}

// parsePriority reads a level name or an integer.
func parsePriority(s string) (int, error) {
	switch s {
	case "low":
		return PriorityLow, nil
	case "normal":
		return PriorityNormal, nil
	case "high":
		return PriorityHigh, nil
	case "critical":
		return PriorityCritical, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || s[0] == '+' {
		return 0, fmt.Errorf("bad priority %q", s)
	}
	return v, nil
}

// parseKeyRule reads "p256", "p384", "ed25519", "rsa" (2048 bits at least) or
// "rsaN" (N bits at least).
func parseKeyRule(s string) (KeyRule, error) {
	switch s {
	case KeyP256, KeyP384, KeyEd25519:
		return KeyRule{Algorithm: s}, nil
	case KeyRSA:
		return KeyRule{Algorithm: KeyRSA, MinBits: MinRSABits}, nil
	}
	if bits, ok := strings.CutPrefix(s, KeyRSA); ok && bits != "" && bits[0] >= '0' && bits[0] <= '9' {
		if n, err := strconv.Atoi(bits); err == nil {
			return KeyRule{Algorithm: KeyRSA, MinBits: n}, nil
		}
	}
	return KeyRule{}, fmt.Errorf("%q is not a key algorithm (use p256, p384, ed25519, rsa, or rsa3072 for RSA of at least 3072 bits)", s)
}

// formatDuration writes d in whole days first ("30d", "1d12h", "1m", "90s"),
// the form parseDuration reads back exactly.
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	if d < 0 {
		if d == math.MinInt64 {
			return d.String()
		}
		return "-" + formatDuration(-d)
	}
	var b strings.Builder
	day := 24 * time.Hour
	if days := d / day; days > 0 {
		fmt.Fprintf(&b, "%dd", days)
		d -= days * day
	}
	if d > 0 {
		s := d.String() // "1h0m0s", "1m30s", "1.5s"
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		b.WriteString(s)
	}
	return b.String()
}

// formatFraction writes x as a short decimal ("0.1", "0.05") when one exists,
// else as a ratio of small integers that is exactly x ("2/3"), else in full.
func formatFraction(x float64) string {
	s := strconv.FormatFloat(x, 'f', -1, 64)
	if len(s) <= 8 || math.IsNaN(x) || math.IsInf(x, 0) || x < 0 || x > 1 {
		return s
	}
	for den := 2; den <= 1000; den++ {
		num := math.Round(x * float64(den))
		if num/float64(den) == x {
			return fmt.Sprintf("%d/%d", int(num), den)
		}
	}
	return s
}
