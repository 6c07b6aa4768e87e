package store

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A stray push is a Gmail push naming an address no record has, as after
// the address of a connected mailbox changed: strayPushes/{Key(address)}
// keeps the newest history id pushed for it until a sync's getProfile shows
// which user's mailbox has that address now (TakeStray), or for StrayTTL.
// The document holds no address, only its hash, and a push never moves an
// address onto a record: that takes the mailbox's own profile.
type strayPush struct {
	HistoryID int64     `firestore:"historyId"`
	At        time.Time `firestore:"at"`
	ExpireAt  time.Time `firestore:"expireAt"` // Firestore TTL
	Shard     int       `firestore:"shard"`    // ShardOf the document's key: at is a time near now, indexed after it
}

// StrayTTL is how long a stray push is kept: Gmail keeps history for about
// a week, after which its id says nothing a sync could read.
const StrayTTL = 7 * 24 * time.Hour

func (s *Store) strays() *firestore.CollectionRef { return s.fs.Collection("strayPushes") }

// KeepStray records a push of historyID for email, which names no user,
// at `at`: one write, the server keeping the highest id.
func (s *Store) KeepStray(ctx context.Context, email string, historyID int64, at time.Time) error {
	count(ctx, Ops{Writes: 1})
	key := Key(email)
	_, err := s.strays().Doc(key).Set(ctx, map[string]any{
		"shard":     ShardOf(key),
		"historyId": firestore.FieldTransformMaximum(historyID),
		"at":        at,
		"expireAt":  at.Add(StrayTTL),
	}, firestore.MergeAll)
	if err != nil {
		return fmt.Errorf("keep stray push: %w", err)
	}
	return nil
}

// TakeStray returns the newest history id pushed for email while no user
// had it (0: none) and forgets it.
func (s *Store) TakeStray(ctx context.Context, email string) (int64, error) {
	ref := s.strays().Doc(Key(email))
	count(ctx, Ops{Reads: 1})
	snap, err := ref.Get(ctx)
	if status.Code(err) == codes.NotFound {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read stray push: %w", err)
	}
	var p strayPush
	if err := snap.DataTo(&p); err != nil {
		return 0, fmt.Errorf("decode stray push: %w", err)
	}
	count(ctx, Ops{Deletes: 1})
	if _, err := ref.Delete(ctx); err != nil {
		return 0, fmt.Errorf("forget stray push: %w", err)
	}
	return p.HistoryID, nil
}

// HasStrays reports whether any stray push kept since `since` waits for its
// mailbox: one query a shard, each served by the index on (shard, at).
func (s *Store) HasStrays(ctx context.Context, since time.Time) (bool, error) {
	for shard := range ShardCount {
		count(ctx, Ops{Reads: 1})
		snaps, err := s.strays().Where("shard", "==", shard).Where("at", ">=", since).Limit(1).Documents(ctx).GetAll()
		if err != nil {
			return false, fmt.Errorf("query stray pushes: %w", err)
		}
		if len(snaps) > 0 {
			return true, nil
		}
	}
	return false, nil
}
