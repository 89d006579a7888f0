package protocol

import "unicode/utf8"

// Clip returns the longest prefix of s of at most max bytes that does not split a UTF-8
// sequence, so that clipped text stays valid UTF-8 when s was (and a receiver's byte limit,
// such as MaxTextLen, is met). max <= 0 gives "".
func Clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	if max <= 0 {
		return ""
	}
	n := max
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ClipText clips s to MaxTextLen, the limit of the free-text fields (message, detail,
// reason, explanation, health texts): what a side sends there is always accepted.
func ClipText(s string) string { return Clip(s, MaxTextLen) }
