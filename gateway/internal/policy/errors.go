package policy

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is the error every *FieldError wraps: errors.Is(err, ErrInvalid)
// tells a caller that the policy text (or a Policy built in code) was refused,
// as opposed to a file that could not be read.
var ErrInvalid = errors.New("invalid policy")

// FieldError is one problem found in a policy: the setting it concerns, written
// as a path into the YAML document (classes[1].lifetime, or classes.high-risk.jitter
// for a built-in class the file does not mention), and what is wrong and allowed.
type FieldError struct {
	// Path is the setting, e.g. "classes[1].lifetime"; empty for the whole document.
	Path string
	// Line is the 1-based line in the YAML text, or 0 when unknown.
	Line int
	// Msg says what is wrong and what is allowed.
	Msg string
}

// Error returns "path: message (line N)".
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// FieldErrors returns every *FieldError inside err (as returned by Parse, Load
// or Validate), in document order, or nil.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			if x := u.Unwrap(); x != nil {
				walk(x)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// join turns a list of field errors into one error (nil when the list is empty).
func join(errs []*FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	es := make([]error, len(errs))
	for i, e := range errs {
		es[i] = e
	}
	return errors.Join(es...)
}
