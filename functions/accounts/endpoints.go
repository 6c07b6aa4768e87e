package accounts

import (
	"errors"
	"net/http"
	"regexp"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/endpointhealth"
)

// The webhook endpoints' health, as the webhook function records it
// (shared/endpointhealth):
//
//	GET  /endpoints                 every endpoint that has been pushed an event
//	GET  /endpoints/{name}          one endpoint
//	POST /endpoints/{name}/enable   resume an endpoint disabled after failing
//
// The backlog itself is Pub/Sub's, known to Cloud Monitoring only
// (num_undelivered_messages on the endpoint's subscription, alerted in
// terraform/monitoring.tf); oldestUndeliveredAgeSeconds is a lower bound on
// its age: the oldest event that failed since the endpoint last delivered.

// endpointView is one endpoint in the API.
type endpointView struct {
	endpointhealth.Health
	State                       string `json:"state"` // healthy, failing or disabled
	OldestUndeliveredAgeSeconds int64  `json:"oldestUndeliveredAgeSeconds,omitempty"`
}

func (h *Handler) endpointView(e endpointhealth.Health) endpointView {
	v := endpointView{Health: e, State: "healthy"}
	switch {
	case e.Disabled:
		v.State = "disabled"
	case e.ConsecutiveFailures > 0:
		v.State = "failing"
	}
	if e.OldestUndelivered != nil {
		v.OldestUndeliveredAgeSeconds = int64(h.now().Sub(*e.OldestUndelivered) / time.Second)
	}
	return v
}

var endpointNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$|^default$`)

// endpointNamed answers 400 or 404 and false when the path names no endpoint.
func (h *Handler) endpointNamed(w http.ResponseWriter, r *http.Request) (string, bool) {
	if h.endpoints == nil {
		fail(w, http.StatusNotFound, "this deployment has no webhook endpoints")
		return "", false
	}
	name := r.PathValue("name")
	if !endpointNameRE.MatchString(name) {
		fail(w, http.StatusBadRequest, "name: "+clip(name)+" is not an endpoint name (lowercase letters, digits and -)")
		return "", false
	}
	return name, true
}

func (h *Handler) listEndpoints(w http.ResponseWriter, r *http.Request) {
	if h.endpoints == nil {
		fail(w, http.StatusNotFound, "this deployment has no webhook endpoints")
		return
	}
	all, err := h.endpoints.List(r.Context())
	if err != nil {
		h.internal(w, r, err)
		return
	}
	out := struct {
		Endpoints []endpointView `json:"endpoints"`
	}{Endpoints: []endpointView{}}
	for _, e := range all {
		out.Endpoints = append(out.Endpoints, h.endpointView(e))
	}
	reply(w, http.StatusOK, out)
}

func (h *Handler) getEndpoint(w http.ResponseWriter, r *http.Request) {
	name, ok := h.endpointNamed(w, r)
	if !ok {
		return
	}
	e, err := h.endpoints.Get(r.Context(), name)
	h.answerEndpoint(w, r, e, err)
}

func (h *Handler) enableEndpoint(w http.ResponseWriter, r *http.Request) {
	name, ok := h.endpointNamed(w, r)
	if !ok {
		return
	}
	e, err := h.endpoints.Enable(r.Context(), name)
	if err == nil {
		h.log.InfoContext(r.Context(), "webhook endpoint enabled", "endpoint", name)
	}
	h.answerEndpoint(w, r, e, err)
}

func (h *Handler) answerEndpoint(w http.ResponseWriter, r *http.Request, e endpointhealth.Health, err error) {
	switch {
	case errors.Is(err, endpointhealth.ErrNotFound):
		fail(w, http.StatusNotFound, "no such endpoint, or it has not been pushed an event yet")
	case err != nil:
		h.internal(w, r, err)
	default:
		reply(w, http.StatusOK, h.endpointView(e))
	}
}
