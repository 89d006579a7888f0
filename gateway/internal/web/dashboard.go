package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/hearth-pki/hearth/gateway/internal/authz"
	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// maxForm bounds the body of a form or API POST.
const maxForm = 16 << 10

// exists answers 404 (or 500) and returns false when device id is not in the inventory.
func (s *server) exists(w http.ResponseWriter, r *http.Request, id string) bool {
	_, err := s.cfg.Store.Device(r.Context(), id)
	switch {
	case errors.Is(err, inventory.ErrNotFound):
		s.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("Device %q is not in the inventory.", id))
		return false
	case err != nil:
		s.cfg.Logger.Error("read device", "device", id, "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "The inventory could not be read: "+err.Error())
		return false
	}
	return true
}

// renewForm handles the device page's "Renew now" button.
func (s *server) renewForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "The form could not be read: "+err.Error())
		return
	}
	if !s.validToken(r.PostForm.Get("csrf")) {
		s.cfg.Logger.Warn("renew form refused: bad CSRF token", "remote", r.RemoteAddr, "device", r.PathValue("id"))
		s.errorPage(w, r, http.StatusForbidden, "This form is stale or did not come from the dashboard. Reload the device page and try again.")
		return
	}
	id := r.PathValue("id")
	if !s.exists(w, r, id) {
		return
	}
	if d, err := s.judged(r.Context(), id, s.cfg.Now()); err == nil {
		if a := renewActionFor(d); !a.OK {
			s.errorPage(w, r, http.StatusConflict, "A renewal cannot work for this device. "+a.Why)
			return
		}
	}
	resp := s.renew(r.Context(), s.principal(r), id, "renewal requested on the dashboard")
	if resp.Status != "ok" {
		s.errorPage(w, r, statusOf(resp.Code), "The renewal could not be requested: "+resp.Error)
		return
	}
	s.fleet.invalidate()
	var ren protocol.DeviceRenewed
	_ = json.Unmarshal(resp.Data, &ren)
	sent := ren.CommandID
	if sent == "" {
		sent = "queued"
	}
	loc := root(r) + "devices/" + url.PathEscape(id) + "?renewed=" + url.QueryEscape(sent)
	// Not http.Redirect: it turns a relative Location into an absolute path, which would leave
	// the ingress prefix.
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusSeeOther)
}

// renew asks the admin service to command a renewal; the service records who asked in the
// audit log.
func (s *server) renew(ctx context.Context, p authz.Principal, id, reason string) protocol.BridgeResponse {
	payload, _ := json.Marshal(protocol.DeviceRequest{ID: id, Reason: reason})
	return s.cfg.Admin.DoAs(ctx, p, "device/renew", payload)
}

// tokenView is the token page's data: the token, shown once, and its command as a QR code.
type tokenView struct {
	protocol.TokenCreated
	QR template.HTML
}

// enrollForm creates an enrollment token from the dashboard's "Add a device" form and shows
// it once, with the exact agent command. In the add-on this is how a Home Assistant user
// enrolls a device: the page is behind Home Assistant's login, and the token never travels
// over MQTT.
func (s *server) enrollForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "The form could not be read: "+err.Error())
		return
	}
	if !s.validToken(r.PostForm.Get("csrf")) {
		s.cfg.Logger.Warn("enroll form refused: bad CSRF token", "remote", r.RemoteAddr)
		s.errorPage(w, r, http.StatusForbidden, "This form is stale or did not come from the dashboard. Reload the page and try again.")
		return
	}
	req := protocol.TokenRequest{ID: strings.TrimSpace(r.PostForm.Get("id")), Name: strings.TrimSpace(r.PostForm.Get("name")),
		Family: strings.TrimSpace(r.PostForm.Get("family"))}
	payload, _ := json.Marshal(req)
	resp := s.cfg.Admin.DoAs(r.Context(), s.principal(r), "token/create", payload)
	if resp.Status != "ok" {
		s.errorPage(w, r, statusOf(resp.Code), "The device could not be added: "+resp.Error)
		return
	}
	var tok protocol.TokenCreated
	if err := json.Unmarshal(resp.Data, &tok); err != nil {
		s.errorPage(w, r, http.StatusInternalServerError, "The token could not be read: "+err.Error())
		return
	}
	qr, err := qrSVG(tok.Command)
	if err != nil {
		s.cfg.Logger.Warn("enrollment QR code", "err", err) // the page still shows the command
	}
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, http.StatusOK, "token.html", page{Title: "Enroll " + tok.ID, Nav: "enroll", Data: tokenView{TokenCreated: tok, QR: qr}})
}
