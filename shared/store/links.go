package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Link is a connect link an application's backend asked for: who is
// expected to connect, under which reference, and where the browser goes
// back to. Links made by the accounts API live in connectLinks/{ID}, where
// ID is a hash of the link's secret token, so reading the collection gives
// no usable link. A signed link is not stored until it is used: then a
// document under its ID records the use, so it cannot be used twice.
type Link struct {
	ID         string    `firestore:"-"`
	AppRef     string    `firestore:"appRef"`
	Address    string    `firestore:"address"`    // "" or the only address that may connect
	Domain     string    `firestore:"domain"`     // "" or the only Workspace domain (hd) that may connect
	SuccessURL string    `firestore:"successUrl"` // "" shows the function's own page
	ErrorURL   string    `firestore:"errorUrl"`
	Move       bool      `firestore:"move"`      // take the mailbox over from another reference
	Reconnect  string    `firestore:"reconnect"` // "" or the user key a reconnect link is for
	Signed     bool      `firestore:"signed"`
	Expires    time.Time `firestore:"expires"`
	CreatedAt  time.Time `firestore:"createdAt"`
	UsedAt     time.Time `firestore:"usedAt"`
	Browser    string    `firestore:"browser,omitempty"` // a hash of the cookie of the first browser that opened it
	Caller     string    `firestore:"caller,omitempty"`  // the accounts API caller that asked for it; "" for a signed link
	ExpireAt   time.Time `firestore:"expireAt"`          // for a Firestore TTL policy, after any use could matter
}

// Link errors.
var (
	ErrLinkNotFound = errors.New("connect link not found")
	ErrLinkUsed     = errors.New("connect link already used")
	ErrLinkBound    = errors.New("connect link opened in another browser first")
)

// linkKeep is how long a link's document outlives the link, so that a use
// is still remembered when its flow (at most minutes) completes late.
const linkKeep = 24 * time.Hour

func (s *Store) links() *firestore.CollectionRef { return s.fs.Collection("connectLinks") }

// CreateLink stores a new link made by the accounts API.
func (s *Store) CreateLink(ctx context.Context, l Link) error {
	l.CreatedAt, l.ExpireAt = s.now(), l.Expires.Add(linkKeep)
	if _, err := s.links().Doc(l.ID).Create(ctx, l); err != nil {
		return fmt.Errorf("create connect link: %w", err)
	}
	return nil
}

// Link returns the stored link with id.
func (s *Store) Link(ctx context.Context, id string) (Link, error) {
	snap, err := s.links().Doc(id).Get(ctx)
	l, err := readDoc[Link](snap, err, "connect link", ErrLinkNotFound)
	if err != nil {
		return Link{}, err
	}
	l.ID = id
	return l, nil
}

// UseLink marks l used, once: a stored link must exist and be unused; a
// signed one must not have been recorded before. A second use, by any
// instance, fails with ErrLinkUsed.
func (s *Store) UseLink(ctx context.Context, l Link) error {
	ref := s.links().Doc(l.ID)
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		exists := err == nil && snap.Exists()
		if err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		now := s.now()
		switch {
		case l.Signed && exists:
			var bound Link
			if err := snap.DataTo(&bound); err != nil {
				return err
			}
			if !bound.UsedAt.IsZero() {
				return ErrLinkUsed
			}
			return tx.Update(ref, []firestore.Update{{Path: "usedAt", Value: now}})
		case l.Signed:
			l.CreatedAt, l.UsedAt, l.ExpireAt = now, now, l.Expires.Add(linkKeep)
			return tx.Create(ref, l)
		case !exists:
			return ErrLinkNotFound
		}
		var stored Link
		if err := snap.DataTo(&stored); err != nil {
			return err
		}
		if !stored.UsedAt.IsZero() {
			return ErrLinkUsed
		}
		return tx.Update(ref, []firestore.Update{{Path: "usedAt", Value: now}})
	})
	if errors.Is(err, ErrLinkUsed) || errors.Is(err, ErrLinkNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("use connect link: %w", err)
	}
	return nil
}

// BindLink ties l to the browser that opens it first (browser: a hash of
// that browser's cookie), once: a stored link must exist; a signed one is
// recorded, unused, on its first open. Opened again from another browser,
// it fails with ErrLinkBound, so a link copied from a log or a history does
// nothing elsewhere.
func (s *Store) BindLink(ctx context.Context, l Link, browser string) error {
	ref := s.links().Doc(l.ID)
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		exists := err == nil && snap.Exists()
		if err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		switch {
		case !exists && l.Signed:
			now := s.now()
			l.CreatedAt, l.ExpireAt, l.Browser = now, l.Expires.Add(linkKeep), browser
			return tx.Create(ref, l)
		case !exists:
			return ErrLinkNotFound
		}
		var stored Link
		if err := snap.DataTo(&stored); err != nil {
			return err
		}
		switch stored.Browser {
		case browser:
			return nil
		case "":
			return tx.Update(ref, []firestore.Update{{Path: "browser", Value: browser}})
		}
		return ErrLinkBound
	})
	if errors.Is(err, ErrLinkBound) || errors.Is(err, ErrLinkNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("bind connect link: %w", err)
	}
	return nil
}
