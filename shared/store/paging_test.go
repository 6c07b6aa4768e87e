package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/store"
)

// testShard is the shard the seeded users are in.
const testShard = 5

// keyIn returns a user key derived from name that falls in shard.
func keyIn(shard int, name string) string {
	for i := 0; ; i++ {
		if k := store.Key(fmt.Sprintf("%s#%d", name, i)); store.ShardOf(k) == shard {
			return k
		}
	}
}

// seed connects n users of testShard and sets each one's fields with set(i, user).
func seed(t *testing.T, s *store.Store, n int, set func(i int, u *store.User)) []string {
	t.Helper()
	ctx := context.Background()
	keys := make([]string, n)
	for i := range n {
		email := fmt.Sprintf("user%02d@example.com", i)
		u, _, err := s.Connect(ctx, store.Connection{Key: keyIn(testShard, email), Email: email, HistoryID: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Update(ctx, u.Key, func(u *store.User) error { set(i, u); return nil }); err != nil {
			t.Fatal(err)
		}
		keys[i] = u.Key
	}
	return keys
}

func TestDuePagesStayValidWhenThePreviousPageChanges(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	keys := seed(t, s, 7, func(i int, u *store.User) {
		u.RenewAt = now.Add(time.Duration(i-10) * time.Minute) // users 0..6 due, in that order
		if i == 3 {
			u.Status = store.ReauthRequired // never listed
		}
	})
	want := []string{keys[0], keys[1], keys[2], keys[4], keys[5], keys[6]}
	var got []string
	var from store.Position
	for page := 0; page < 10; page++ {
		users, err := s.Due(ctx, testShard, store.RenewDue, now, from, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			got = append(got, u.Key)
			// Renew each listed user, as the renew function does: it leaves the due set.
			if _, err := s.Update(ctx, u.Key, func(u *store.User) error { u.RenewAt = now.Add(time.Hour); return nil }); err != nil {
				t.Fatal(err)
			}
		}
		if len(users) < 2 {
			break
		}
		last := users[len(users)-1]
		from = store.Position{At: last.RenewAt, Key: last.Key}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("pages listed %v, want %v", got, want)
	}
}

func TestCountDue(t *testing.T) {
	s := newStore(t)
	now := time.Now().Truncate(time.Millisecond)
	seed(t, s, 5, func(i int, u *store.User) {
		u.RenewAt = now.Add(time.Duration(i-2) * time.Hour) // 0, 1, 2 due
		u.SyncDueAt = now.Add(time.Hour)                    // none due
		if i == 0 {
			u.Status = store.Disconnected
		}
	})
	for _, tc := range []struct {
		field string
		want  int64
	}{{store.RenewDue, 2}, {store.SyncDue, 0}} {
		got, err := s.CountDue(context.Background(), store.AllShards(), tc.field, now)
		if err != nil || got != tc.want {
			t.Errorf("CountDue(%s) = %d, %v; want %d", tc.field, got, err, tc.want)
		}
	}
}

func TestReauthWatchesListsLiveWatchesOfReauthUsers(t *testing.T) {
	s := newStore(t)
	now := time.Now().Truncate(time.Millisecond)
	keys := seed(t, s, 4, func(i int, u *store.User) {
		u.Status = store.ReauthRequired
		u.WatchExpiration = now.Add(time.Duration(3-i) * time.Hour) // user 3's has lapsed
		if i == 0 {
			u.Status = store.Active
		}
	})
	users, err := s.ReauthWatches(context.Background(), testShard, now, store.Position{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range users {
		got = append(got, u.Key)
	}
	if want := []string{keys[2], keys[1]}; !slices.Equal(got, want) {
		t.Fatalf("ReauthWatches = %v, want %v (soonest expiry first)", got, want)
	}
}
