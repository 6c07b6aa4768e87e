// Package events defines what the system tells the application: one versioned
// JSON message per mailbox change (a message received or sent, its labels
// changed, it was trashed or deleted) or user lifecycle change, published to
// the output Pub/Sub topic in order per user (the user key is the ordering
// key), with the type, id, user and the application's own reference for the
// user repeated as attributes for subscription filters.
package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/mailbody"
)

// Version is the schema version carried in every event.
const Version = "1"

// Event types.
const (
	MessageReceived      = "gmail.message.received"
	MessageSent          = "gmail.message.sent"
	MessageLabelsChanged = "gmail.message.labels_changed"
	MessageDeleted       = "gmail.message.deleted"
	UserConnected        = "gmail.user.connected"
	UserReauth           = "gmail.user.reauth_required"
	UserDisconnect       = "gmail.user.disconnected"
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
	// received and sent with MESSAGE_CONTENT text or full: the decoded
	// body, bounded, and in full the HTML and the attachments' metadata.
	Content *mailbody.Content `json:"content,omitempty"`

	// gmail.message.labels_changed: what one history record changed. LabelIDs
	// is then the set that resulted, absent when the message was deleted
	// for good before history was read (Gmail no longer shows its labels).
	LabelsAdded   []string `json:"labelsAdded,omitempty"`
	LabelsRemoved []string `json:"labelsRemoved,omitempty"`
	// gmail.message.deleted: Trash (moved to the trash, can still be
	// restored) or Permanent (deleted for good).
	Deletion string `json:"deletion,omitempty"`
}

// Deletion kinds.
const (
	Trash     = "trash"
	Permanent = "permanent"
)

// MessageTypes are the mailbox event types a deployment can switch on.
var MessageTypes = []string{MessageReceived, MessageSent, MessageLabelsChanged, MessageDeleted}

// ReadTypes reads EVENT_TYPES, the mailbox event types announced (default
// gmail.message.received alone). The watch and the sync both take them from
// here.
func ReadTypes(r *config.Reader) []string {
	types := r.List("EVENT_TYPES", []string{MessageReceived})
	for _, t := range types {
		if !slices.Contains(MessageTypes, t) {
			r.Problem("EVENT_TYPES", "%q is not one of %s", t, strings.Join(MessageTypes, ", "))
		}
	}
	if len(types) == 0 {
		r.Problem("EVENT_TYPES", "names no event type")
	}
	return types
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
// Events of one user carry the user key as ordering key, so Pub/Sub keeps
// them in the order they were published. Across instances the user's lease
// keeps that order: a sync starts only after the previous one's events
// were stored.
type Publisher struct{ topic *pubsub.Publisher }

// NewPublisher returns a Publisher on topicID of client's project.
func NewPublisher(client *pubsub.Client, topicID string) *Publisher {
	t := client.Publisher(topicID)
	t.EnableMessageOrdering = true
	return &Publisher{topic: t}
}

// Publish sends every event in the order given and returns once all are
// stored by Pub/Sub, or the first error. After a failure the whole call may
// be retried: the ids stay the same.
func (p *Publisher) Publish(ctx context.Context, evs ...Event) error {
	results := make([]*pubsub.PublishResult, len(evs))
	for i, e := range evs {
		e.Version = Version
		body, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("event %s: %w", e.ID, err)
		}
		results[i] = p.topic.Publish(ctx, &pubsub.Message{Data: body, Attributes: e.Attributes(), OrderingKey: e.User})
	}
	for i, r := range results {
		if _, err := r.Get(ctx); err != nil {
			// A failed publish pauses the user's key, and every later
			// event of it fails alike, so order holds; resume it for the
			// retry.
			for _, e := range evs {
				p.topic.ResumePublish(e.User)
			}
			return fmt.Errorf("publish event %s: %w", evs[i].ID, err)
		}
	}
	return nil
}

// Stop flushes and stops the publisher.
func (p *Publisher) Stop() { p.topic.Stop() }
