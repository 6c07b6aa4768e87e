package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// Every user is in the shard of its key, and each shard's query lists its
// own users and no other: the shards together list every due user once.
func TestShardsPartitionTheDueUsers(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	var want []string
	for i := range 48 {
		u, _, err := s.Connect(ctx, store.Connection{Email: fmt.Sprintf("spread%02d@example.com", i), HistoryID: 1, RenewAt: now.Add(-time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Get(ctx, u.Key); got.Shard != store.ShardOf(u.Key) {
			t.Fatalf("user %s stored in shard %d, want ShardOf = %d", u.Key, got.Shard, store.ShardOf(u.Key))
		}
		want = append(want, u.Key)
	}
	var got []string
	used := 0
	for shard := range store.ShardCount {
		users, err := s.Due(ctx, shard, store.RenewDue, now, store.Position{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			if u.Shard != shard {
				t.Errorf("shard %d listed %s of shard %d", shard, u.Key, u.Shard)
			}
			got = append(got, u.Key)
		}
		if len(users) > 0 {
			used++
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the shards listed %d users, want the %d due", len(got), len(want))
	}
	if used < store.ShardCount/2 {
		t.Errorf("48 users fell in %d of %d shards: the hash does not spread them", used, store.ShardCount)
	}
	if n, err := s.CountDue(ctx, store.AllShards(), store.RenewDue, now); err != nil || n != int64(len(want)) {
		t.Errorf("CountDue(all shards) = %d, %v; want %d", n, err, len(want))
	}
}

// A record written before shards has none, so no sharded query finds it;
// AssignShards gives it its shard, and any write of the record does too.
func TestRecordsWithoutAShardGetOne(t *testing.T) {
	project := testenv.Project(t)
	fs := testenv.Firestore(t, project)
	s := store.New(fs, nil)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	legacy := func(key string) {
		t.Helper()
		if _, err := fs.Collection("users").Doc(key).Set(ctx, map[string]any{
			"email": key + "@example.com", "status": store.Active, "renewAt": now.Add(-time.Hour), "syncDueAt": now.Add(-time.Hour),
		}); err != nil {
			t.Fatal(err)
		}
	}
	due := func(key string) bool {
		t.Helper()
		users, err := s.Due(ctx, store.ShardOf(key), store.RenewDue, now, store.Position{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(users, func(u store.User) bool { return u.Key == key })
	}
	keys := []string{store.Key("old1@example.com"), store.Key("old2@example.com"), store.Key("old3@example.com")}
	for _, k := range keys {
		legacy(k)
		if due(k) {
			t.Fatalf("a record without a shard was listed: the test's premise is wrong")
		}
	}
	// One page of two, then the rest.
	next, changed, err := s.AssignShards(ctx, "", 2)
	if err != nil || changed != 2 || next == "" {
		t.Fatalf("AssignShards first page = %q, %d, %v; want a next key and 2 changed", next, changed, err)
	}
	next, changed, err = s.AssignShards(ctx, next, 2)
	if err != nil || changed != 1 || next != "" {
		t.Fatalf("AssignShards last page = %q, %d, %v; want the end and 1 changed", next, changed, err)
	}
	for _, k := range keys {
		if !due(k) {
			t.Errorf("record %s not listed in its shard after AssignShards", k)
		}
	}
	if _, changed, err := s.AssignShards(ctx, "", 10); err != nil || changed != 0 {
		t.Errorf("AssignShards again = %d, %v; want nothing changed", changed, err)
	}

	// An ordinary write gives the shard too: an Update, and a Claim.
	a, b := store.Key("old4@example.com"), store.Key("old5@example.com")
	legacy(a)
	legacy(b)
	if _, err := s.Update(ctx, a, func(u *store.User) error { u.Cursor = 7; return nil }); err != nil {
		t.Fatal(err)
	}
	u, _ := s.Get(ctx, b)
	if _, ok, err := s.Claim(ctx, u, store.Lease{Holder: "h", Until: now.Add(-time.Minute)}, 0, now); err != nil || !ok {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	for _, k := range []string{a, b} {
		if !due(k) {
			t.Errorf("record %s not listed in its shard after a write", k)
		}
	}
}

func TestBadShardsAreRefused(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	now := time.Now()
	for _, shard := range []int{-1, store.ShardCount} {
		if _, err := s.Due(ctx, shard, store.RenewDue, now, store.Position{}, 1); err == nil {
			t.Errorf("Due(shard %d) succeeded, want an error", shard)
		}
		if _, err := s.ReauthWatches(ctx, shard, now, store.Position{}, 1); err == nil {
			t.Errorf("ReauthWatches(shard %d) succeeded, want an error", shard)
		}
	}
	for _, r := range []store.Shards{{From: 3, To: 3}, {From: -1, To: 2}, {From: 0, To: store.ShardCount + 1}} {
		if _, err := s.CountDue(ctx, r, store.RenewDue, now); err == nil {
			t.Errorf("CountDue(%v) succeeded, want an error", r)
		}
	}
}

func TestSplitCoversEveryShardOnce(t *testing.T) {
	for _, n := range []int{-3, 0, 1, 3, 5, store.ShardCount, 100} {
		seen := make([]int, store.ShardCount)
		ranges := store.Split(n)
		if want := min(max(n, 1), store.ShardCount); len(ranges) != want {
			t.Errorf("Split(%d) gave %d ranges, want %d", n, len(ranges), want)
		}
		for _, r := range ranges {
			if !r.Valid() {
				t.Errorf("Split(%d) gave the empty or bad range %v", n, r)
			}
			for i := r.From; i < r.To; i++ {
				seen[i]++
			}
		}
		for i, c := range seen {
			if c != 1 {
				t.Errorf("Split(%d) covers shard %d %d times", n, i, c)
			}
		}
	}
}
