package store

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
)

// Position is where a page of users ordered by (time field, key) ended; the
// next page starts after it. It is a value, not a document, so it stays valid
// when the last page's users were changed meanwhile (a renewed user leaves the
// due set, and its new renewAt must not move the next page past users still
// due).
type Position struct {
	At  time.Time
	Key string
}

// Due returns up to limit active users whose field (RenewDue or SyncDue) is
// at or before t, in due order, after from (the zero Position for the first
// page). It is served by a composite index on (status, field).
func (s *Store) Due(ctx context.Context, field string, t time.Time, from Position, limit int) ([]User, error) {
	q := s.users().Where("status", "==", Active).Where(field, "<=", t)
	return s.page(ctx, q, field, from, limit)
}

// CountDue counts the active users whose field is at or before t, with a
// count aggregation (no documents read).
func (s *Store) CountDue(ctx context.Context, field string, t time.Time) (int64, error) {
	q := s.users().Where("status", "==", Active).Where(field, "<=", t)
	res, err := q.NewAggregationQuery().WithCount("n").Get(ctx)
	if err != nil {
		return 0, fmt.Errorf("count users due by %s: %w", field, err)
	}
	var out struct {
		N int64 `firestore:"n"`
	}
	if err := res.DataTo(&out); err != nil {
		return 0, fmt.Errorf("count users due by %s: %w", field, err)
	}
	count(ctx, Ops{Reads: 1 + out.N/1000})
	return out.N, nil
}

// ReauthWatches returns up to limit reauth_required users whose recorded
// watch expiration is after now, soonest first, after from. The set stays
// small: a user in it leaves it when its watch lapses, within 7 days. It is
// served by a composite index on (status, watchExpiration).
func (s *Store) ReauthWatches(ctx context.Context, now time.Time, from Position, limit int) ([]User, error) {
	q := s.users().Where("status", "==", ReauthRequired).Where("watchExpiration", ">", now)
	return s.page(ctx, q, "watchExpiration", from, limit)
}

func (s *Store) page(ctx context.Context, q firestore.Query, field string, from Position, limit int) ([]User, error) {
	q = q.OrderBy(field, firestore.Asc).OrderBy(firestore.DocumentID, firestore.Asc).Limit(limit)
	if from.Key != "" {
		q = q.StartAfter(from.At, from.Key)
	}
	return s.query(ctx, q)
}
