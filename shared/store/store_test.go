package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

func newStore(t *testing.T) *store.Store {
	t.Parallel()
	return store.New(testenv.Firestore(t, testenv.Project(t)), nil)
}

func TestKeyIsStableAndHidesTheAddress(t *testing.T) {
	a, b := store.Key("Alice@Example.com "), store.Key("alice@example.com")
	if a != b {
		t.Fatalf("Key differs by case/space: %q vs %q", a, b)
	}
	if len(a) != 32 || a == store.Key("bob@example.com") {
		t.Fatalf("Key(alice) = %q: want 32 hex chars distinct per address", a)
	}
}

func TestConnectCreatesThenKeepsCursorOnReconnect(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	exp := time.Now().Add(7 * 24 * time.Hour).Truncate(time.Millisecond)
	u, created, err := s.Connect(ctx, store.Connection{Email: "Ann@example.com", Labels: []string{"INBOX"}, LabelFilter: "include", HistoryID: 100, WatchExpiration: exp})
	if err != nil || !created {
		t.Fatalf("first Connect: created=%v err=%v", created, err)
	}
	if u.Cursor != 100 || u.Status != store.Active || u.Email != "ann@example.com" {
		t.Fatalf("first Connect: got cursor=%d status=%s email=%s", u.Cursor, u.Status, u.Email)
	}
	// The user's cursor moved on; a reconnect reports an older and a newer watch id.
	if _, err := s.Update(ctx, u.Key, func(u *store.User) error { u.Cursor = 150; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, watchID := range []int64{120, 300} {
		u, created, err = s.Connect(ctx, store.Connection{Email: "ann@example.com", HistoryID: watchID, WatchExpiration: exp})
		if err != nil || created {
			t.Fatalf("reconnect: created=%v err=%v", created, err)
		}
		if u.Cursor != 150 {
			t.Errorf("reconnect with watch id %d moved cursor to %d, want 150", watchID, u.Cursor)
		}
	}
	if u.PendingHistoryID != 300 {
		t.Errorf("pending = %d, want 300 (the newer watch id, so the next sync catches up)", u.PendingHistoryID)
	}
	got, err := s.Get(ctx, u.Key)
	if err != nil || got.Cursor != 150 || !got.WatchExpiration.Equal(exp) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
}

func TestConnectAfterDisconnectStartsFresh(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	u, _, err := s.Connect(ctx, store.Connection{Email: "bo@example.com", HistoryID: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, u.Key, func(u *store.User) error { u.Status = store.Disconnected; u.PendingHistoryID = 99; return nil }); err != nil {
		t.Fatal(err)
	}
	u, created, err := s.Connect(ctx, store.Connection{Email: "bo@example.com", HistoryID: 500})
	if err != nil || created || u.Cursor != 500 || u.PendingHistoryID != 0 || u.Status != store.Active {
		t.Fatalf("reconnect after disconnect = %+v created=%v err=%v; want fresh cursor 500", u, created, err)
	}
}

func TestUpdateUnknownUserAndNoChange(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.Update(ctx, "nobody", func(*store.User) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Update(unknown) err = %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(unknown) err = %v, want ErrNotFound", err)
	}
	u, _, _ := s.Connect(ctx, store.Connection{Email: "c@example.com", HistoryID: 7})
	u, _ = s.Get(ctx, u.Key)
	got, err := s.Update(ctx, u.Key, func(u *store.User) error { u.Cursor = 999; return store.ErrNoChange })
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := s.Get(ctx, u.Key); after.Cursor != 7 || !after.UpdatedAt.Equal(u.UpdatedAt) {
		t.Fatalf("ErrNoChange wrote: cursor %d (returned %d)", after.Cursor, got.Cursor)
	}
	boom := errors.New("boom")
	if _, err := s.Update(ctx, u.Key, func(u *store.User) error { u.Cursor = 999; return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if after, _ := s.Get(ctx, u.Key); after.Cursor != 7 {
		t.Fatalf("failed Update wrote cursor %d", after.Cursor)
	}
}

func TestConcurrentUpdatesAreSerialised(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	u, _, _ := s.Connect(ctx, store.Connection{Email: "d@example.com", HistoryID: 0})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Update(ctx, u.Key, func(u *store.User) error { u.Cursor++; return nil }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got, _ := s.Get(ctx, u.Key); got.Cursor != 8 {
		t.Fatalf("cursor after 8 concurrent increments = %d, want 8 (lost update)", got.Cursor)
	}
}

// Update writes with a compare-and-set, not a transaction, and only what
// changed: a push's server-side raise of the pending id between its read
// and its write makes it read again rather than overwrite the raise.
func TestUpdateIsACompareAndSet(t *testing.T) {
	s := newStore(t)
	ctx, ops := store.Counting(context.Background())
	u, _, _ := s.Connect(ctx, store.Connection{Email: "e@example.com", HistoryID: 10})
	before := ops()
	raised := false
	got, err := s.Update(ctx, u.Key, func(u *store.User) error {
		if !raised { // between this read and its write
			raised = true
			if err := s.RaisePending(context.Background(), u.Key, 50, time.Now()); err != nil {
				return err
			}
		}
		u.Cursor = 20
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d := ops()
	after, _ := s.Get(ctx, u.Key)
	if after.Cursor != 20 || after.PendingHistoryID != 50 || got.PendingHistoryID != 50 || !got.Version.Equal(after.Version) {
		t.Errorf("after an update racing a raise: cursor %d, pending %d (returned %d); want 20 and 50", after.Cursor, after.PendingHistoryID, got.PendingHistoryID)
	}
	if d.Transactions != before.Transactions || d.Reads-before.Reads != 2 || d.Writes-before.Writes != 2 {
		t.Errorf("an update that lost one race cost %+v (before %+v); want 2 reads, 2 writes, no transaction", d, before)
	}
}

func TestMarkers(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	key := store.Key("e@example.com")
	now := time.Now()
	err := s.MarkAnnounced(ctx, key, map[string]store.Marker{
		"m1": {EventID: "e1", HistoryID: 5, AnnouncedAt: now, ExpireAt: now.Add(time.Hour)},
		"m2": {EventID: "e2", HistoryID: 6, AnnouncedAt: now, ExpireAt: now.Add(time.Hour)},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Announced(ctx, key, []string{"m1", "m2", "m3"})
	if err != nil {
		t.Fatal(err)
	}
	if !got["m1"] || !got["m2"] || got["m3"] || len(got) != 2 {
		t.Fatalf("Announced = %v, want m1 and m2", got)
	}
	if err := s.DeleteMarkers(ctx, key); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Announced(ctx, key, []string{"m1", "m2"}); len(got) != 0 {
		t.Fatalf("after DeleteMarkers: %v", got)
	}
}

func TestDuePagesInOrder(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	base := time.Now().Truncate(time.Second)
	for i := 0; i < 7; i++ {
		email := fmt.Sprintf("u%d@example.com", i)
		u, _, err := s.Connect(ctx, store.Connection{Key: keyIn(testShard, email), Email: email, HistoryID: 1, RenewAt: base.Add(time.Duration(i) * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 { // not active: never due
			s.Update(ctx, u.Key, func(u *store.User) error { u.Status = store.ReauthRequired; return nil })
		}
	}
	var got []time.Time
	var after store.Position
	for {
		page, err := s.Due(ctx, testShard, store.RenewDue, base.Add(5*time.Minute), after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, u := range page {
			got = append(got, u.RenewAt)
		}
		last := page[len(page)-1]
		after = store.Position{At: last.RenewAt, Key: last.Key}
	}
	want := []int{0, 1, 3, 4, 5}
	if len(got) != len(want) {
		t.Fatalf("due users: got %d, want %d (%v)", len(got), len(want), got)
	}
	for i, m := range want {
		if !got[i].Equal(base.Add(time.Duration(m) * time.Minute)) {
			t.Errorf("due[%d] renewAt = %v, want base+%dm", i, got[i], m)
		}
	}
}
