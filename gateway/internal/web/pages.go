package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/hearth-pki/hearth/protocol"
)

//go:embed templates
var templateFS embed.FS

// parsePages parses the embedded templates. They are part of the binary, so a parse error is
// a programming error caught by every test.
func parsePages() *template.Template {
	return template.Must(template.New("pages").Funcs(template.FuncMap{
		"date":     formatDate,
		"left":     timeLeft,
		"ago":      ago,
		"short":    short,
		"duration": formatDuration,
		"join":     strings.Join,
		"add":      func(a, b int) int { return a + b },
		"percent":  func(f float64) string { return fmt.Sprintf("%.0f %%", 100*f) },
		"stateWord": func(s string) string {
			if s == "quarantined" {
				return "quarantined (revoked)"
			}
			return s
		},
		"stateHelp":   stateHelp,
		"renewalWord": renewalWord,
		"eventHelp": func(t protocol.EventType) string {
			info, _ := t.Info()
			return info.Description
		},
	}).ParseFS(templateFS, "templates/*.html", "templates/*.css"))
}

// stateHelp explains a device state in a sentence (the badge's title).
func stateHelp(state string) string {
	switch state {
	case "active":
		return "the device proved its current certificate by connecting with it"
	case "enrolling":
		return "added with a one-time token; it has not yet connected with its first certificate"
	case "offline":
		return "not connected for a long time"
	case "quarantined":
		return "its certificates are revoked: it may only enroll again, with a new token"
	case "removed":
		return "removed from the inventory"
	}
	return state
}

// renewalWord explains a renewal state in a few words.
func renewalWord(state string) string {
	switch state {
	case "", "idle":
		return "idle: nothing to do until the window opens"
	case "due":
		return "due: inside the window, waiting for the agent"
	case "commanded":
		return "commanded: a renew command was sent"
	case "failing":
		return "failing: the last attempts failed, retrying with backoff"
	}
	return state
}

// page is what every page template receives besides its own data.
type page struct {
	Title   string
	Root    string // relative path to the handler's root, ending in "/"
	Nav     string // the navigation entry of the page: overview, devices, campaigns, ca, policy, audit, home, enroll
	Refresh bool   // reload every 30 s
	Version string
	CA      CAInfo
	Now     time.Time
	CSRF    string // the forms' token (see server.validToken)
	User    string // the logged-in user, for the logout form; empty without a session
	Data    any
}

// render writes the named template, or a plain 500 if it fails before anything was sent.
func (s *server) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Root, p.Version, p.CA, p.CSRF, p.User = root(r), s.cfg.Version, s.caInfo(), s.csrf, whoOf(r).account
	if p.Now.IsZero() {
		p.Now = s.cfg.Now()
	}
	var buf bytes.Buffer
	if err := s.pages.ExecuteTemplate(&buf, name, p); err != nil {
		s.cfg.Logger.Error("render page", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// errorPage shows message with a link back to the dashboard.
func (s *server) errorPage(w http.ResponseWriter, r *http.Request, status int, message string) {
	s.render(w, r, status, "error.html", page{Title: http.StatusText(status), Data: message})
}

// formatDate shows t in UTC to the minute, "—" for the zero time.
func formatDate(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// timeLeft says how long until t: "12 d 4 h left", "expired 3 d ago", "" for the zero time.
func timeLeft(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := t.Sub(now)
	if d <= 0 {
		return "expired " + formatDuration(-d) + " ago"
	}
	return formatDuration(d) + " left"
}

// ago says how long before now t was: "5 min ago", "never" for the zero time.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + formatDuration(-d)
	}
	return formatDuration(d) + " ago"
}

// formatDuration rounds d for people: "3 y 12 d", "12 d 4 h", "5 h 3 min", "42 s", "4 ms".
func formatDuration(d time.Duration) string {
	neg := ""
	if d < 0 {
		neg, d = "-", -d
	}
	day := 24 * time.Hour
	year := 365 * day
	switch {
	case d >= 2*year:
		return fmt.Sprintf("%s%d y %d d", neg, d/year, d%year/day)
	case d >= 2*day:
		return fmt.Sprintf("%s%d d %d h", neg, d/day, d%day/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%s%d h %d min", neg, d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%s%d min", neg, d/time.Minute)
	case d >= time.Second:
		return fmt.Sprintf("%s%d s", neg, d/time.Second)
	default:
		return fmt.Sprintf("%s%d ms", neg, d/time.Millisecond)
	}
}

// short abbreviates a long value (a serial, a fingerprint) for a table cell; the full value
// goes in a title attribute or the JSON API.
func short(s string) string {
	if len(s) <= 24 {
		return s
	}
	return s[:16] + "…"
}
