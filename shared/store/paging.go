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

// Due returns up to limit active users of shard whose field (RenewDue or
// SyncDue) is at or before t, in due order, after from (the zero Position
// for the first page). It is served by a composite index on (shard, status,
// field).
func (s *Store) Due(ctx context.Context, shard int, field string, t time.Time, from Position, limit int) ([]User, error) {
	q := s.users().Where("status", "==", Active).Where(field, "<=", t)
	return s.page(ctx, shard, q, field, from, limit)
}

// CountDue counts the active users of the shards whose field is at or
// before t, with a count aggregation per shard (no documents read).
func (s *Store) CountDue(ctx context.Context, shards Shards, field string, t time.Time) (int64, error) {
	if !shards.Valid() {
		return 0, fmt.Errorf("count users due by %s: shards %d..%d are not a range of 0..%d", field, shards.From, shards.To, ShardCount)
	}
	var n int64
	for shard := shards.From; shard < shards.To; shard++ {
		c, err := s.countDue(ctx, shard, field, t)
		if err != nil {
			return n, err
		}
		n += c
	}
	return n, nil
}

func (s *Store) countDue(ctx context.Context, shard int, field string, t time.Time) (int64, error) {
	q := s.users().Where("shard", "==", shard).Where("status", "==", Active).Where(field, "<=", t)
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

// ReauthWatches returns up to limit reauth_required users of shard whose
// recorded watch expiration is after now, soonest first, after from. The set
// stays small: a user in it leaves it when its watch lapses, within 7 days.
// It is served by a composite index on (shard, status, watchExpiration).
func (s *Store) ReauthWatches(ctx context.Context, shard int, now time.Time, from Position, limit int) ([]User, error) {
	q := s.users().Where("status", "==", ReauthRequired).Where("watchExpiration", ">", now)
	return s.page(ctx, shard, q, "watchExpiration", from, limit)
}

// page returns a page of q's users in shard, by field then key: every
// query on a time field goes through it, so each is served by an index
// that starts with the shard (see ShardOf).
func (s *Store) page(ctx context.Context, shard int, q firestore.Query, field string, from Position, limit int) ([]User, error) {
	if shard < 0 || shard >= ShardCount {
		return nil, fmt.Errorf("query users by %s: shard %d is not in 0..%d", field, shard, ShardCount-1)
	}
	q = q.Where("shard", "==", shard).OrderBy(field, firestore.Asc).OrderBy(firestore.DocumentID, firestore.Asc).Limit(limit)
	if from.Key != "" {
		q = q.StartAfter(from.At, from.Key)
	}
	return s.query(ctx, q)
}
