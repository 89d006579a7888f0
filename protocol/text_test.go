package protocol

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	tests := []struct {
		s    string
		max  int
		want string
	}{
		{"", 5, ""},
		{"hello", 5, "hello"},
		{"hello", 4, "hell"},
		{"hello", 0, ""},
		{"hello", -1, ""},
		{"héllo", 2, "h"},       // é is 2 bytes: not split
		{"héllo", 3, "hé"},      // ends right after é
		{"a€b", 3, "a"},         // € is 3 bytes
		{"a€b", 4, "a€"},        // ends right after €
		{"😀😀", 5, "😀"},          // 4-byte runes
		{"\xff\xfe", 1, "\xff"}, // invalid input is cut by bytes
	}
	for _, tt := range tests {
		if got := Clip(tt.s, tt.max); got != tt.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tt.s, tt.max, got, tt.want)
		}
	}
	long := strings.Repeat("é", MaxTextLen) // 2*MaxTextLen bytes
	got := ClipText(long)
	if len(got) != MaxTextLen || !utf8.ValidString(got) {
		t.Errorf("ClipText(%d bytes of é) = %d bytes, valid UTF-8 %v; want %d, true", len(long), len(got), utf8.ValidString(got), MaxTextLen)
	}
	if err := (&Commit{V: Version, RequestID: "r", Serial: "ab", Outcome: OutcomeRolledBack, Time: t0,
		Detail: ClipText(strings.Repeat("x", 5000))}).Validate(); err != nil {
		t.Errorf("a commit with a ClipText detail: Validate() = %v", err)
	}
}
