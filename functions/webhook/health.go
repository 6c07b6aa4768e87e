package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gmailwatch/gmailwatch/shared/endpointhealth"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/logging"
)

// EndpointDisabled is the event published when an endpoint is disabled.
const EndpointDisabled = "gmail.endpoint.disabled"

const (
	// healthTTL is how long an instance trusts what it read of an
	// endpoint's disabled flag: an enable takes effect within it.
	healthTTL = 5 * time.Second
	// successEvery bounds how often one instance writes a healthy
	// endpoint's success, so its document is not written per delivery.
	successEvery = 10 * time.Second
)

// HealthBook keeps endpoints' health; *endpointhealth.Book is one.
type HealthBook interface {
	Get(ctx context.Context, name string) (endpointhealth.Health, error)
	Success(ctx context.Context, name string) error
	Failure(ctx context.Context, name string, code int, why string, published time.Time, disableAfter time.Duration) (endpointhealth.Health, error)
	MarkAnnounced(ctx context.Context, name string) error
}

// WithHealth makes h record its outcomes in book, stop when book says the
// endpoint is disabled, and announce a disablement on events.
func (h *Handler) WithHealth(book HealthBook, events *pubsub.Publisher) *Handler {
	h.health, h.announce = book, events
	return h
}

func topicID(full string) string { return full[strings.LastIndex(full, "/")+1:] }

// autoDisabled reports whether the endpoint's health document says it is
// disabled, reading it at most every healthTTL. A failed read delivers:
// the document is a switch, not a gate every event must pass.
func (h *Handler) autoDisabled(ctx context.Context) bool {
	if h.health == nil {
		return false
	}
	h.mu.Lock()
	if h.now().Sub(h.checkedAt) < healthTTL {
		d := h.disabled
		h.mu.Unlock()
		return d
	}
	h.mu.Unlock()
	st, err := h.health.Get(ctx, h.cfg.Name)
	if err != nil && !errors.Is(err, endpointhealth.ErrNotFound) {
		h.log.WarnContext(ctx, "webhook: endpoint health unreadable", "endpoint", h.cfg.Name, "error", err)
		return false
	}
	h.mu.Lock()
	h.disabled, h.checkedAt = st.Disabled, h.now()
	h.mu.Unlock()
	if st.Disabled && !st.Announced {
		h.announceDisabled(ctx, st)
	}
	return st.Disabled
}

// record writes the outcome of a delivery's last attempt.
func (h *Handler) record(ctx context.Context, last attempt, published time.Time) {
	if h.health == nil {
		return
	}
	if class(last) == delivered {
		h.mu.Lock()
		skip := !h.failing && h.now().Sub(h.succeededAt) < successEvery
		h.mu.Unlock()
		if skip {
			return
		}
		if err := h.health.Success(ctx, h.cfg.Name); err != nil {
			h.log.WarnContext(ctx, "webhook: endpoint health not recorded", "endpoint", h.cfg.Name, "error", err)
			return
		}
		h.mu.Lock()
		h.failing, h.succeededAt = false, h.now()
		h.mu.Unlock()
		return
	}
	why := ""
	if last.err != nil {
		why = truncate(logging.Scrub(last.err.Error()), 256)
	}
	st, err := h.health.Failure(ctx, h.cfg.Name, last.status, why, published, h.cfg.DisableAfter)
	if err != nil {
		h.log.WarnContext(ctx, "webhook: endpoint health not recorded", "endpoint", h.cfg.Name, "error", err)
		return
	}
	h.mu.Lock()
	h.failing, h.disabled, h.checkedAt = true, st.Disabled, h.now()
	h.mu.Unlock()
	if st.Disabled && !st.Announced {
		h.announceDisabled(ctx, st)
	}
}

// disabledEvent is the body of gmail.endpoint.disabled.
type disabledEvent struct {
	Version           string    `json:"specversion"`
	Type              string    `json:"type"`
	ID                string    `json:"id"`
	Time              string    `json:"time"`
	Endpoint          string    `json:"endpoint"`
	FailingSince      time.Time `json:"failingSince"`
	LastFailureStatus int       `json:"lastFailureStatus"`
}

// announceDisabled logs the disablement (the alert's entry) and publishes
// its event once; a failed publish is retried at the next push.
func (h *Handler) announceDisabled(ctx context.Context, st endpointhealth.Health) {
	since, at := h.now(), h.now()
	if st.FailingSince != nil {
		since = *st.FailingSince
	}
	if st.DisabledAt != nil {
		at = *st.DisabledAt
	}
	h.log.ErrorContext(ctx, "webhook endpoint disabled", "endpoint", h.cfg.Name, "failingSince", since, "lastFailureStatus", st.LastFailureStatus,
		"consecutiveFailures", st.ConsecutiveFailures)
	if h.announce == nil {
		return
	}
	ev := disabledEvent{Version: events.Version, Type: EndpointDisabled, ID: events.ID(EndpointDisabled, h.cfg.Name, at.UTC().Format(time.RFC3339Nano)),
		Time: at.UTC().Format(time.RFC3339), Endpoint: h.cfg.Name, FailingSince: since.UTC(), LastFailureStatus: st.LastFailureStatus}
	body, _ := json.Marshal(ev)
	attrs := map[string]string{"type": EndpointDisabled, "id": ev.ID, "endpoint": h.cfg.Name, "status": strconv.Itoa(st.LastFailureStatus)}
	if _, err := h.announce.Publish(ctx, &pubsub.Message{Data: body, Attributes: attrs}).Get(ctx); err != nil {
		h.log.WarnContext(ctx, "webhook: endpoint disabled event not published, retried at the next push", "endpoint", h.cfg.Name, "error", err)
		return
	}
	if err := h.health.MarkAnnounced(ctx, h.cfg.Name); err != nil {
		h.log.WarnContext(ctx, "webhook: endpoint disabled event published, not marked", "endpoint", h.cfg.Name, "error", err)
	}
}
