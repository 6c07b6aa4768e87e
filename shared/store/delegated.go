package store

import (
	"context"

	"cloud.google.com/go/firestore"
)

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
