package store

import (
	"context"
	"strings"

	"cloud.google.com/go/firestore"
)

// ByAppRef returns the users connected under an application reference (an
// application user may connect more than one mailbox), by key.
func (s *Store) ByAppRef(ctx context.Context, ref string, limit int) ([]User, error) {
	q := s.users().Where("appRef", "==", ref).OrderBy(firestore.DocumentID, firestore.Asc).Limit(limit)
	return s.query(ctx, q)
}

// ListStatus returns up to limit users of one status, by key, after `after`.
// An equality filter ordered by document id needs no composite index.
func (s *Store) ListStatus(ctx context.Context, status, after string, limit int) ([]User, error) {
	q := s.users().Where("status", "==", status).OrderBy(firestore.DocumentID, firestore.Asc).Limit(limit)
	if after != "" {
		q = q.StartAfter(after)
	}
	return s.query(ctx, q)
}

// ByEmail returns the key of the user whose mailbox is email, for a Gmail
// push, which names only the address. Keys derive from Google's account id,
// not the address, so this is a query; an address that moved to another
// Google account may have an old, disconnected record too: the active one
// wins, then the most recently connected.
func (s *Store) ByEmail(ctx context.Context, email string) (User, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	users, err := s.query(ctx, s.users().Where("email", "==", email).Limit(10))
	if err != nil {
		return User{}, err
	}
	var best User
	for _, u := range users {
		if best.Key == "" || (u.Status == Active) != (best.Status == Active) && u.Status == Active ||
			(u.Status == Active) == (best.Status == Active) && u.ConnectedAt.After(best.ConnectedAt) {
			best = u
		}
	}
	if best.Key == "" {
		return User{}, ErrNotFound
	}
	return best, nil
}
