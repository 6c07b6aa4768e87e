package store

import (
	"context"
	"errors"

	"cloud.google.com/go/firestore"
)

// DelegatedAddress tells whether the user of key is watched through
// domain-wide delegation, and its address; gmailclient's factory asks it
// once per user and instance.
func (s *Store) DelegatedAddress(ctx context.Context, key string) (string, bool, error) {
	u, err := s.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return u.Email, u.Delegated, nil
}

// Delegated returns up to limit users of any status watched through
// delegation, by key, after `after`: the renew run compares them with the
// domain's directory.
func (s *Store) Delegated(ctx context.Context, after string, limit int) ([]User, error) {
	q := s.users().Where("delegated", "==", true).OrderBy(firestore.DocumentID, firestore.Asc).Limit(limit)
	if after != "" {
		q = q.StartAfter(after)
	}
	return s.query(ctx, q)
}
