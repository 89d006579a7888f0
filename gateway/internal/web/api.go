package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/hearth-pki/hearth/gateway/internal/inventory"
	"github.com/hearth-pki/hearth/protocol"
)

// DefaultEventLimit is the number of events GET api/events returns without ?limit=.
const DefaultEventLimit = 50

// MaxEventLimit is the largest ?limit= GET api/events accepts (admin's own bound).
const MaxEventLimit = 1000

// The JSON API answers a successful operation with the admin operation's data, exactly the
// "data" of the bridge API's response, and a failed one with the whole protocol.BridgeResponse
// (status "error", error, code) and an HTTP status: 404 for an unknown device, 400 for bad
// input, 413 for an oversized body, 500 for the hub's own failures.

// apiDevices answers one page of device/list; the query string carries the request's
// fields: ?limit=&cursor=&state=&family=&class=&online=true|false.
func (s *server) apiDevices(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := protocol.DeviceListRequest{Cursor: q.Get("cursor"), State: q.Get("state"), Family: q.Get("family"), Class: q.Get("class")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.writeResponse(w, apiError(protocol.CodeBadRequest, fmt.Sprintf("limit %q: want a number from 1 to %d", v, protocol.MaxDeviceListLimit)))
			return
		}
		req.Limit = n
	}
	if v := q.Get("online"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.writeResponse(w, apiError(protocol.CodeBadRequest, fmt.Sprintf("online %q: want true or false", v)))
			return
		}
		req.Online = &b
	}
	payload, _ := json.Marshal(req)
	s.writeResponse(w, s.cfg.Admin.DoAs(r.Context(), s.principal(r), "device/list", payload))
}

func (s *server) apiDevice(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if s.apiMissing(w, r, id) {
		return
	}
	payload, _ := json.Marshal(protocol.DeviceRequest{ID: id})
	s.writeResponse(w, s.cfg.Admin.DoAs(r.Context(), s.principal(r), "device/get", payload))
}

// apiRenew commands a renewal. The optional JSON body may give a reason and a transaction.
func (s *server) apiRenew(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Requested-With") == "" {
		s.cfg.Logger.Warn("API renew refused: no X-Requested-With", "remote", r.RemoteAddr)
		s.writeResponse(w, apiError(protocol.CodeUnauthorized,
			"POST requests to the API need an X-Requested-With header (cross-site request defence)"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxForm))
	if err != nil {
		s.writeResponse(w, apiError(protocol.CodeTooLarge, fmt.Sprintf("request body over %d bytes", maxForm)))
		return
	}
	var req protocol.DeviceRequest
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			s.writeResponse(w, apiError(protocol.CodeBadRequest, "request body: "+err.Error()))
			return
		}
	}
	id := r.PathValue("id")
	if s.apiMissing(w, r, id) {
		return
	}
	reason := req.Reason
	if reason == "" {
		reason = "renewal requested through the web API"
	}
	resp := s.renew(r.Context(), s.principal(r), id, reason)
	resp.Transaction = req.Transaction
	s.writeResponse(w, resp)
}

func (s *server) apiEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := DefaultEventLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxEventLimit {
			s.writeResponse(w, apiError(protocol.CodeBadRequest, fmt.Sprintf("limit %q: want a number from 1 to %d", v, MaxEventLimit)))
			return
		}
		limit = n
	}
	payload, _ := json.Marshal(protocol.EventsRequest{ID: q.Get("device"), Limit: limit})
	s.writeResponse(w, s.cfg.Admin.DoAs(r.Context(), s.principal(r), "events", payload))
}

// apiMissing answers 404 and returns true when device id is not in the inventory.
func (s *server) apiMissing(w http.ResponseWriter, r *http.Request, id string) bool {
	_, err := s.cfg.Store.Device(r.Context(), id)
	if errors.Is(err, inventory.ErrNotFound) {
		resp := apiError(protocol.CodeNotFound, fmt.Sprintf("device %q is not in the inventory", id))
		writeJSON(w, http.StatusNotFound, resp)
		return true
	}
	return false // other errors surface from the operation itself
}

func apiError(code protocol.Code, msg string) protocol.BridgeResponse {
	return protocol.BridgeResponse{Status: "error", Error: msg, Code: code}
}

// writeResponse writes resp's data, or resp itself with an error status.
func (s *server) writeResponse(w http.ResponseWriter, resp protocol.BridgeResponse) {
	if resp.Status == "ok" {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(append(resp.Data, '\n'))
		return
	}
	writeJSON(w, statusOf(resp.Code), resp)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error encoding the answer", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// statusOf maps a protocol error code to an HTTP status.
func statusOf(c protocol.Code) int {
	switch c {
	case protocol.CodeInternal:
		return http.StatusInternalServerError
	case protocol.CodeNotFound:
		return http.StatusNotFound
	case protocol.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.CodeUnauthorized:
		return http.StatusForbidden
	case protocol.CodeBusy, protocol.CodeRateLimited:
		return http.StatusTooManyRequests
	default:
		return http.StatusBadRequest
	}
}
