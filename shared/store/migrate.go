package store

import (
	"context"
	"errors"
	"fmt"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
)

// MoveUser re-keys a legacy record: users/{newKey} is created from it with
// Sub set (unless a connect made it already), and the old record is marked
// disconnected and MovedTo newKey, so notify and renew leave it alone until
// DeleteUser removes it. The copy and the mark are one transaction.
func (s *Store) MoveUser(ctx context.Context, oldKey, newKey, sub string) error {
	oldRef, newRef := s.users().Doc(oldKey), s.users().Doc(newKey)
	return s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(oldRef)
		old, err := decode(oldKey, snap, err)
		if err != nil {
			return err
		}
		if old.MovedTo != "" {
			return nil
		}
		snap, err = tx.Get(newRef)
		_, nerr := decode(newKey, snap, err)
		switch {
		case errors.Is(nerr, ErrNotFound):
			moved := old
			moved.Key, moved.Shard, moved.Sub, moved.UpdatedAt = newKey, ShardOf(newKey), sub, s.now()
			if err := tx.Create(newRef, moved); err != nil {
				return err
			}
		case nerr != nil:
			return nerr
		}
		old.Status, old.MovedTo, old.UpdatedAt, old.Shard = Disconnected, newKey, s.now(), ShardOf(oldKey)
		return tx.Set(oldRef, old)
	})
}

// CopyMarkers copies every announced-message marker of one user to another,
// so a moved user is not announced twice by a catch-up.
func (s *Store) CopyMarkers(ctx context.Context, from, to string) error {
	bw := s.fs.BulkWriter(ctx)
	defer bw.End()
	it := s.markers(from).Documents(ctx)
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list markers of %s: %w", from, err)
		}
		if _, err := bw.Set(s.markers(to).Doc(snap.Ref.ID), snap.Data()); err != nil {
			return fmt.Errorf("copy markers of %s: %w", from, err)
		}
	}
}

// DeleteUser deletes a user's record (not its markers: DeleteMarkers).
func (s *Store) DeleteUser(ctx context.Context, key string) error {
	if _, err := s.users().Doc(key).Delete(ctx); err != nil {
		return fmt.Errorf("delete user %s: %w", key, err)
	}
	return nil
}
