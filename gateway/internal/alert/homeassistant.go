package alert

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// DefaultSupervisorAPI is Home Assistant Core's API through the Supervisor's proxy, open to
// an add-on with homeassistant_api: true and its SUPERVISOR_TOKEN.
const DefaultSupervisorAPI = "http://supervisor/core/api"

// ServicePersistent is HomeAssistant.Service's default: a persistent notification in Home
// Assistant's sidebar, created when an alert is raised and dismissed when it is resolved.
const ServicePersistent = "persistent_notification"

// HomeAssistant calls a Home Assistant notification service through the Supervisor's Core
// API proxy (POST <API>/services/<domain>/<service>).
type HomeAssistant struct {
	// API is Core's API base. Default DefaultSupervisorAPI.
	API   string
	Token string // SUPERVISOR_TOKEN
	// Service is ServicePersistent (the default), or a notify service such as
	// "notify.mobile_app_phone" (its resolution is a second message).
	Service string
	Client  *http.Client
	Retry   Retry
}

// Name implements Route.
func (h *HomeAssistant) Name() string { return "home_assistant" }

// Send implements Route.
func (h *HomeAssistant) Send(ctx context.Context, n Notification) error {
	api, service, client := h.API, h.Service, h.Client
	if api == "" {
		api = DefaultSupervisorAPI
	}
	if service == "" {
		service = ServicePersistent
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	var path string
	var body any
	id := "hearth_" + strings.NewReplacer("/", "_", " ", "_").Replace(n.ID)
	switch {
	case service == ServicePersistent && n.State == StateResolved:
		path, body = "/services/persistent_notification/dismiss", map[string]string{"notification_id": id}
	case service == ServicePersistent:
		path, body = "/services/persistent_notification/create", map[string]string{"notification_id": id, "title": n.Title, "message": n.Message}
	default:
		domain, name, _ := strings.Cut(service, ".")
		path = "/services/" + domain + "/" + name
		body = map[string]any{"title": n.Title, "message": n.Message, "data": map[string]any{
			"tag": id, "hearth": n, // a mobile app replaces the notification with the same tag
		}}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return post(ctx, client, h.Retry, strings.TrimSuffix(api, "/")+path, b, func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+h.Token)
	})
}
