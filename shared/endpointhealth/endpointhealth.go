// Package endpointhealth keeps each webhook endpoint's delivery health in
// Firestore (collection webhookEndpoints, one small document per endpoint):
// written by the webhook function after its delivery attempts, read and
// re-enabled through the accounts API.
//
// Successes are recorded at most every SuccessEvery per instance while the
// endpoint is healthy (and at once after a failure), so a busy endpoint
// does not write its one document faster than Firestore sustains; every
// failure is recorded, in a transaction, since it may disable the endpoint.
package endpointhealth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Collection holds one document per endpoint, named by the endpoint.
const Collection = "webhookEndpoints"

// DefaultDisableAfter is how long an endpoint may keep failing before it is
// disabled (ENDPOINT_DISABLE_AFTER).
const DefaultDisableAfter = 5 * 24 * time.Hour

// ErrNotFound: no endpoint of that name has been pushed an event yet.
var ErrNotFound = errors.New("endpoint not found")

// Health is one endpoint's document.
type Health struct {
	Name                string     `firestore:"-" json:"name"`
	LastSuccess         *time.Time `firestore:"lastSuccess" json:"lastSuccess,omitempty"`
	LastFailure         *time.Time `firestore:"lastFailure" json:"lastFailure,omitempty"`
	LastFailureStatus   int        `firestore:"lastFailureStatus" json:"lastFailureStatus,omitempty"` // 0: no response
	LastFailureError    string     `firestore:"lastFailureError" json:"lastFailureError,omitempty"`
	ConsecutiveFailures int64      `firestore:"consecutiveFailures" json:"consecutiveFailures"`
	FailingSince        *time.Time `firestore:"failingSince" json:"failingSince,omitempty"`
	// OldestUndelivered is the publish time of the oldest event that failed
	// since the endpoint last delivered one: a lower bound on the age of
	// what waits (the exact backlog is Pub/Sub's, in Cloud Monitoring).
	OldestUndelivered *time.Time `firestore:"oldestUndelivered" json:"oldestUndelivered,omitempty"`
	Disabled          bool       `firestore:"disabled" json:"disabled"`
	DisabledAt        *time.Time `firestore:"disabledAt" json:"disabledAt,omitempty"`
	// Announced: the gmail.endpoint.disabled event of this disablement was published.
	Announced bool `firestore:"announced" json:"-"`
}

// Book reads and writes the documents.
type Book struct {
	fs  *firestore.Client
	now func() time.Time
}

// New returns a Book over fs; now nil means time.Now.
func New(fs *firestore.Client, now func() time.Time) *Book {
	if now == nil {
		now = time.Now
	}
	return &Book{fs: fs, now: now}
}

func (b *Book) doc(name string) *firestore.DocumentRef { return b.fs.Collection(Collection).Doc(name) }

// Get returns the endpoint's health.
func (b *Book) Get(ctx context.Context, name string) (Health, error) {
	snap, err := b.doc(name).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return Health{}, ErrNotFound
	}
	if err != nil {
		return Health{}, fmt.Errorf("read endpoint %s: %w", name, err)
	}
	return decode(snap)
}

func decode(snap *firestore.DocumentSnapshot) (Health, error) {
	var h Health
	if err := snap.DataTo(&h); err != nil {
		return Health{}, fmt.Errorf("read endpoint %s: %w", snap.Ref.ID, err)
	}
	h.Name = snap.Ref.ID
	return h, nil
}

// List returns every endpoint's health, by name.
func (b *Book) List(ctx context.Context) ([]Health, error) {
	snaps, err := b.fs.Collection(Collection).OrderBy(firestore.DocumentID, firestore.Asc).Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	out := make([]Health, 0, len(snaps))
	for _, s := range snaps {
		h, err := decode(s)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// Success records a delivery: the failure streak ends.
func (b *Book) Success(ctx context.Context, name string) error {
	now := b.now().UTC()
	_, err := b.doc(name).Set(ctx, map[string]any{
		"lastSuccess": now, "consecutiveFailures": 0, "failingSince": nil, "oldestUndelivered": nil,
	}, firestore.MergeAll)
	if err != nil {
		return fmt.Errorf("record success of endpoint %s: %w", name, err)
	}
	return nil
}

// Failure records a failed attempt at an event published at published, and
// disables the endpoint when it has been failing for disableAfter; the
// returned health says whether it is disabled (and not yet announced).
func (b *Book) Failure(ctx context.Context, name string, code int, why string, published time.Time, disableAfter time.Duration) (Health, error) {
	now := b.now().UTC()
	ref := b.doc(name)
	var out Health
	err := b.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		var h Health
		snap, err := tx.Get(ref)
		switch {
		case status.Code(err) == codes.NotFound:
		case err != nil:
			return err
		default:
			if h, err = decode(snap); err != nil {
				return err
			}
		}
		h.Name = name
		h.LastFailure, h.LastFailureStatus, h.LastFailureError = &now, code, why
		h.ConsecutiveFailures++
		if h.FailingSince == nil {
			h.FailingSince = &now
		}
		if p := published.UTC(); !published.IsZero() && (h.OldestUndelivered == nil || p.Before(*h.OldestUndelivered)) {
			h.OldestUndelivered = &p
		}
		if !h.Disabled && disableAfter > 0 && now.Sub(*h.FailingSince) >= disableAfter {
			h.Disabled, h.DisabledAt, h.Announced = true, &now, false
		}
		out = h
		return tx.Set(ref, h)
	})
	if err != nil {
		return Health{}, fmt.Errorf("record failure of endpoint %s: %w", name, err)
	}
	return out, nil
}

// MarkAnnounced records that the disablement's event was published.
func (b *Book) MarkAnnounced(ctx context.Context, name string) error {
	_, err := b.doc(name).Update(ctx, []firestore.Update{{Path: "announced", Value: true}})
	return err
}

// Enable resumes a disabled endpoint: its failure streak starts over, so it
// gets another ENDPOINT_DISABLE_AFTER before it can be disabled again.
func (b *Book) Enable(ctx context.Context, name string) (Health, error) {
	ref := b.doc(name)
	var out Health
	err := b.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if status.Code(err) == codes.NotFound {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		h, err := decode(snap)
		if err != nil {
			return err
		}
		h.Disabled, h.DisabledAt, h.Announced, h.FailingSince, h.ConsecutiveFailures = false, nil, false, nil, 0
		out = h
		return tx.Set(ref, h)
	})
	if errors.Is(err, ErrNotFound) {
		return Health{}, ErrNotFound
	}
	if err != nil {
		return Health{}, fmt.Errorf("enable endpoint %s: %w", name, err)
	}
	return out, nil
}
