package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/store"
)

// A delegated record that left the directory after ResumeAfter keeps its
// cursor when it connects again, as a new connection; one that left
// before, or a consented one, starts at the watch's history id.
func TestConnectResumesARecentLeaver(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	now := time.Now()
	for _, tc := range []struct {
		name      string
		delegated bool
		leftAgo   time.Duration
		resume    bool
	}{
		{"delegated, left an hour ago", true, time.Hour, true},
		{"delegated, left 8 days ago", true, 8 * 24 * time.Hour, false},
		{"consented", false, time.Hour, false},
	} {
		email := "r" + tc.name[:3] + tc.leftAgo.String() + "@example.com"
		u, _, err := s.Connect(ctx, store.Connection{Email: email, HistoryID: 100, Delegated: tc.delegated})
		if err != nil {
			t.Fatal(err)
		}
		left, err := s.Update(ctx, u.Key, func(v *store.User) error {
			v.Cursor, v.Status, v.LeftAt = 150, store.Disconnected, now.Add(-tc.leftAgo)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		back, _, err := s.Connect(ctx, store.Connection{Email: email, HistoryID: 300, Delegated: tc.delegated, ResumeAfter: now.Add(-7 * 24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		wantCursor, wantPending := int64(300), int64(0)
		if tc.resume {
			wantCursor, wantPending = 150, 300
		}
		if back.Status != store.Active || back.Cursor != wantCursor || back.PendingHistoryID != wantPending ||
			!back.LeftAt.IsZero() || !back.ConnectedAt.After(left.ConnectedAt) {
			t.Errorf("%s: back %+v; want active at cursor %d pending %d, a new connection", tc.name, back, wantCursor, wantPending)
		}
	}
}
