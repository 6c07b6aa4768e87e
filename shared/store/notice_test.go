package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/store"
)

// A connection leaves its notice in the record, in the transaction that
// connects; a later connection replaces it; ClearNotice clears only the
// notice it names, and Unannounced lists the records still owing one.
func TestConnectLeavesANoticeUntilCleared(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	u, _, err := s.Connect(ctx, store.Connection{Email: "n@example.com", HistoryID: 40})
	if err != nil {
		t.Fatal(err)
	}
	first := u.Notice
	if first == nil || first.HistoryID != 40 || !first.At.Equal(u.UpdatedAt.Truncate(time.Microsecond)) {
		t.Fatalf("notice after Connect = %+v, want one at the connection's time with history id 40", first)
	}
	if got, _ := s.Get(ctx, u.Key); got.Notice == nil || !got.Notice.At.Equal(first.At) {
		t.Fatalf("stored notice = %+v, want %+v: the record as Connect returned it", got.Notice, first)
	}
	// Updates of the record keep it.
	if _, err := s.Update(ctx, u.Key, func(u *store.User) error { u.Cursor = 41; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, u.Key); got.Notice == nil || !got.Notice.At.Equal(first.At) {
		t.Fatalf("notice after an update = %+v, want it kept", got.Notice)
	}

	time.Sleep(time.Millisecond)
	again, _, err := s.Connect(ctx, store.Connection{Email: "n@example.com", HistoryID: 50})
	if err != nil {
		t.Fatal(err)
	}
	if again.Notice == nil || !again.Notice.At.After(first.At) || again.Notice.HistoryID != 50 {
		t.Fatalf("notice after a second connection = %+v, want a newer one with history id 50", again.Notice)
	}
	// The first connection's notice is gone: clearing it changes nothing.
	before, _ := s.Get(ctx, u.Key)
	if err := s.ClearNotice(ctx, u.Key, first.At); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, u.Key); got.Notice == nil || !got.Notice.At.Equal(again.Notice.At) || !got.UpdatedAt.Equal(before.UpdatedAt) {
		t.Fatalf("clearing the replaced notice wrote the record: %+v", got.Notice)
	}
	if err := s.ClearNotice(ctx, u.Key, again.Notice.At); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, u.Key); got.Notice != nil || got.Cursor != 41 {
		t.Fatalf("after ClearNotice: notice %+v cursor %d, want no notice and the rest kept", got.Notice, got.Cursor)
	}
	if err := s.ClearNotice(ctx, "nobody", first.At); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ClearNotice(unknown) = %v, want ErrNotFound", err)
	}
}

func TestUnannouncedListsOwedNoticesOldestFirst(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	var keys []string
	for i := range 5 {
		email := fmt.Sprintf("owed%d@example.com", i)
		u, _, err := s.Connect(ctx, store.Connection{Key: keyIn(testShard, email), Email: email, HistoryID: 1})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, u.Key)
		switch i {
		case 1: // announced
			if err := s.ClearNotice(ctx, u.Key, u.Notice.At); err != nil {
				t.Fatal(err)
			}
		case 3: // no longer active: still listed, its status says what to do
			if _, err := s.Update(ctx, u.Key, func(u *store.User) error { u.Status = store.Disconnected; return nil }); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Millisecond)
	}
	last, _ := s.Get(ctx, keys[4])
	var got []string
	var from store.Position
	for range 10 {
		page, err := s.Unannounced(ctx, testShard, last.Notice.At.Add(-time.Nanosecond), from, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page {
			got = append(got, u.Key)
		}
		if len(page) < 2 {
			break
		}
		from = store.Position{At: page[len(page)-1].Notice.At, Key: page[len(page)-1].Key}
	}
	if want := []string{keys[0], keys[2], keys[3]}; !slices.Equal(got, want) {
		t.Errorf("Unannounced = %v, want %v (announced and younger ones left out)", got, want)
	}
}
