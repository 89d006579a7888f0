package web

import (
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

//go:embed static
var staticFS embed.FS

// static serves the dashboard's script. The set of files is fixed by the embed; anything
// else is 404.
func (s *server) static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	b, err := staticFS.ReadFile("static/" + name)
	if err != nil || !strings.HasSuffix(name, ".js") {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Write(b)
}

// enrollView is the "Add a device" form's data: a device id to fill in (from ?id=, when a
// revoked device is added again).
type enrollView struct{ ID, Name, Family string }

func (s *server) enrollPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.render(w, r, http.StatusOK, "enroll.html", page{Title: "Add a device", Nav: "enroll",
		Data: enrollView{ID: q.Get("id"), Name: q.Get("name"), Family: q.Get("family")}})
}

// qrSVG draws text as a QR code (error correction level M) in SVG: one path of dark
// modules, the quiet zone included. A phone's camera reads it from the screen.
func qrSVG(text string) (template.HTML, error) {
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return "", fmt.Errorf("qr code: %w", err)
	}
	bm := q.Bitmap()
	n := len(bm)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="qr" viewBox="0 0 %d %d" role="img" aria-label="QR code of the enrollment command" shape-rendering="crispEdges">`, n, n)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n)
	for y, row := range bm {
		for x := 0; x < len(row); {
			if !row[x] {
				x++
				continue
			}
			start := x
			for x < len(row) && row[x] {
				x++
			}
			fmt.Fprintf(&b, "M%d %dh%dv1h-%dz", start, y, x-start, x-start)
		}
	}
	b.WriteString(`"/></svg>`)
	return template.HTML(b.String()), nil
}
