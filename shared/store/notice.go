package store

import (
	"context"
	"time"
)

// Notice is the gmail.user.connected event a record owes the application:
// Connect writes it with the connection, ClearNotice removes it once it is
// published. At fixes the event's id and time, so every publish of one
// connection's event is the same event.
type Notice struct {
	At        time.Time `firestore:"at"`        // when the connection was stored, to the microsecond
	HistoryID int64     `firestore:"historyId"` // the watch's history id
}

// ClearNotice removes the notice of the connection stored at `at`, once
// published; a newer connection's notice stays, and so does a record
// without one.
func (s *Store) ClearNotice(ctx context.Context, key string, at time.Time) error {
	_, err := s.Update(ctx, key, func(u *User) error {
		if u.Notice == nil || !u.Notice.At.Equal(at) {
			return ErrNoChange
		}
		u.Notice = nil
		return nil
	})
	return err
}

// Unannounced returns up to limit users, of any status, whose notice was
// written at or before t, in shard, oldest first, after from. The notice
// field exists only while owed, so its index, on (shard, notice.at), stays
// as small as the set.
func (s *Store) Unannounced(ctx context.Context, shard int, t time.Time, from Position, limit int) ([]User, error) {
	return s.page(ctx, shard, s.users().Where("notice.at", "<=", t), "notice.at", from, limit)
}
