// Package events defines what the system tells the application: one versioned
// JSON message per new Gmail message or user lifecycle change, published to the
// output Pub/Sub topic, with the type, id, user and the application's own
// reference for the user repeated as attributes for subscription filters.
package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"cloud.google.com/go/pubsub/v2"
)

// Version is the schema version carried in every event.
const Version = "1"

// Event types.
const (
	MessageReceived = "gmail.message.received"
	UserConnected   = "gmail.user.connected"
	UserReauth      = "gmail.user.reauth_required"
	UserDisconnect  = "gmail.user.disconnected"
)

// Event is the JSON body of an output message. ID is the idempotency key: the
// same for every delivery of the same fact, so receivers de-duplicate by it.
type Event struct {
	Version      string   `json:"specversion"`
	Type         string   `json:"type"`
	ID           string   `json:"id"`
	Time         string   `json:"time"`             // RFC 3339, when the fact was observed
	User         string   `json:"user"`             // the user key, a hash of the address
	AppRef       string   `json:"appRef,omitempty"` // the application's reference for the user, from its connect link
	EmailAddress string   `json:"emailAddress"`
	Reconnect    string   `json:"reconnect,omitempty"` // reauth_required: the accounts API path that makes a reconnect link
	MessageID    string   `json:"messageId,omitempty"`
	ThreadID     string   `json:"threadId,omitempty"`
	HistoryID    uint64   `json:"historyId,omitempty"`
	LabelIDs     []string `json:"labelIds,omitempty"`
	InternalDate int64    `json:"internalDate,omitempty"` // ms since the epoch, Gmail's receive time
	From         string   `json:"from,omitempty"`
	To           string   `json:"to,omitempty"`
	Subject      string   `json:"subject,omitempty"`
	Date         string   `json:"date,omitempty"` // the Date header as sent
	Snippet      string   `json:"snippet,omitempty"`
}

// ID derives a stable event id from the event type and the facts that make it
// unique (for a message: the user key and Gmail message id).
func ID(typ string, parts ...string) string {
	sum := sha256.Sum256([]byte(typ + "\x00" + strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:16])
}

// Attributes returns the Pub/Sub attributes for e; appRef only when set, so a
// filter `attributes:appRef` selects the users connected by link.
func (e Event) Attributes() map[string]string {
	a := map[string]string{"type": e.Type, "id": e.ID, "user": e.User, "specversion": Version}
	if e.AppRef != "" {
		a["appRef"] = e.AppRef
	}
	return a
}

// ReconnectPath is the accounts API request that returns a reconnect link for
// a user, as a reauth_required event tells it.
func ReconnectPath(userKey string) string { return "POST /accounts/" + userKey + "/reconnect-link" }

// Decode parses an event body, rejecting anything that is not a versioned event.
func Decode(data []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return Event{}, fmt.Errorf("event: %w", err)
	}
	if e.Version != Version || e.Type == "" || e.ID == "" {
		return Event{}, fmt.Errorf("event: missing specversion %q, type or id", Version)
	}
	return e, nil
}

// Publisher publishes events to one topic and waits for the server's answer.
type Publisher struct{ topic *pubsub.Publisher }

// NewPublisher returns a Publisher on topicID of client's project.
func NewPublisher(client *pubsub.Client, topicID string) *Publisher {
	return &Publisher{topic: client.Publisher(topicID)}
}

// Publish sends every event and returns once all are stored by Pub/Sub, or
// the first error. Events are independent: a failed one may be retried with
// the same id.
func (p *Publisher) Publish(ctx context.Context, evs ...Event) error {
	results := make([]*pubsub.PublishResult, len(evs))
	for i, e := range evs {
		e.Version = Version
		body, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("event %s: %w", e.ID, err)
		}
		results[i] = p.topic.Publish(ctx, &pubsub.Message{Data: body, Attributes: e.Attributes()})
	}
	for i, r := range results {
		if _, err := r.Get(ctx); err != nil {
			return fmt.Errorf("publish event %s: %w", evs[i].ID, err)
		}
	}
	return nil
}

// Stop flushes and stops the publisher.
func (p *Publisher) Stop() { p.topic.Stop() }
