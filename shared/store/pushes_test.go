package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/store"
)

// RaisePending is a server-side maximum: concurrent pushes, in any order,
// leave the highest id, never a lower one, and an unknown user gets no record.
func TestRaisePendingKeepsTheMaximum(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	u, _, _ := s.Connect(ctx, store.Connection{Email: "p@example.com", HistoryID: 10})
	var wg sync.WaitGroup
	for _, id := range []int64{40, 12, 95, 60, 95, 11, 70, 30} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.RaisePending(ctx, u.Key, id, time.Now()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := s.RaisePending(ctx, u.Key, 50, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, u.Key)
	if err != nil || got.PendingHistoryID != 95 || got.Cursor != 10 || got.LastNotificationAt.IsZero() {
		t.Fatalf("after pushes 11..95 then 50: pending %d, cursor %d, lastNotificationAt %v, err %v; want pending 95, cursor 10, a notification time",
			got.PendingHistoryID, got.Cursor, got.LastNotificationAt, err)
	}
	if err := s.RaisePending(ctx, "nobody", 5, time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RaisePending(unknown) err = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RaisePending(unknown) created a record: Get err = %v", err)
	}
}

// Claim is a compare-and-set on the version read: of claimants that read the
// same version exactly one wins, and a claim on an outdated read changes
// nothing.
func TestClaimOnlyOnTheVersionRead(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	c, _, _ := s.Connect(ctx, store.Connection{Email: "q@example.com", HistoryID: 10})
	read, err := s.Get(ctx, c.Key)
	if err != nil || read.Version.IsZero() {
		t.Fatalf("Get: version %v, err %v; want the update time", read.Version, err)
	}
	until := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []string
	for _, holder := range []string{"a", "b", "c", "d"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ok, err := s.Claim(ctx, read, store.Lease{Holder: holder, Until: until}, 20, time.Now())
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				winners = append(winners, holder)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	got, _ := s.Get(ctx, c.Key)
	if len(winners) != 1 || got.Lease.Holder != winners[0] || !got.Lease.Until.Equal(until) || !got.SyncDueAt.Equal(until) || got.PendingHistoryID != 20 {
		t.Fatalf("4 claims of one version: winners %v, record lease %+v, syncDueAt %v, pending %d; want one winner holding it until %v, due then, pending 20",
			winners, got.Lease, got.SyncDueAt, got.PendingHistoryID, until)
	}
	if _, ok, err := s.Claim(ctx, read, store.Lease{Holder: "late", Until: until}, 99, time.Now()); ok || err != nil {
		t.Fatalf("claim on an outdated read: ok %v, err %v; want refused", ok, err)
	}
	if after, _ := s.Get(ctx, c.Key); after.Lease.Holder != winners[0] || after.PendingHistoryID != 20 || !after.Version.Equal(got.Version) {
		t.Fatalf("refused claim wrote: lease %+v, pending %d", after.Lease, after.PendingHistoryID)
	}
	if _, ok, err := s.Claim(ctx, store.User{Key: "nobody", Version: read.Version}, store.Lease{Holder: "x", Until: until}, 0, time.Now()); ok || err != nil {
		t.Fatalf("claim of an unknown user: ok %v, err %v; want refused", ok, err)
	}
	if _, err := s.Get(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claim of an unknown user created a record: Get err = %v", err)
	}
}
