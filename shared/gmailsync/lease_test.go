package gmailsync_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// A sync that works far longer than the lease's TTL keeps its lease by
// heartbeat: pushes meanwhile find it held, cost no transaction on the
// user's record and no Gmail call, and the holder announces every message
// once.
func TestHeartbeatKeepsTheLeaseOfALongSync(t *testing.T) {
	t.Parallel()
	set := fast
	set.LeaseTTL = 900 * time.Millisecond
	e := newEnv(t, set)
	const email = "hal@example.com"
	e.connect(email, nil, "")
	if err := e.sb.Gmail.SetFaults(email, gmailapi.Faults{MethodLatency: map[string]gmailapi.Duration{"messages.get": gmailapi.Duration(2500 * time.Millisecond)}}); err != nil {
		t.Fatal(err)
	}
	first := e.deliver(email, "first")
	holder := make(chan gmailsync.Result)
	go func() { holder <- e.push(email, first.HistoryID) }()
	for e.sb.Gmail.Usage(email).Calls["messages.get"] == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	claimed := e.user(email).Lease
	time.Sleep(3 * set.LeaseTTL / 2) // past the TTL the lease was claimed with
	second := e.deliver(email, "second")
	var wg sync.WaitGroup
	busy := make([]gmailsync.Result, 4) // the push and its duplicates, at once
	for i := range busy {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if busy[i], err = e.syncer.OnPush(context.Background(), email, int64(second.HistoryID)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	mid := e.user(email)
	for _, b := range busy {
		if b.Outcome != gmailsync.Busy || b.Calls != 0 || b.Firestore.Transactions != 0 || b.Firestore.Writes > 1 {
			t.Errorf("push during a long sync: got %+v; want busy, no Gmail call, no transaction, at most one write", b)
		}
	}
	if mid.Lease.Holder != claimed.Holder || !mid.Lease.Until.After(claimed.Until) || !mid.Lease.Until.After(time.Now()) ||
		mid.PendingHistoryID != int64(second.HistoryID) || mid.SyncDueAt.After(mid.Lease.Until) {
		t.Errorf("after 1.5 TTLs: lease %+v (claimed %+v), pending %d, due %v; want the same holder, renewed past now, pending %d, due by its end",
			mid.Lease, claimed, mid.PendingHistoryID, mid.SyncDueAt, second.HistoryID)
	}
	res := <-holder
	if res.Outcome != gmailsync.Synced || res.Announced != 2 || res.ToHistoryID < int64(second.HistoryID) {
		t.Errorf("holder: got %+v, want synced, 2 announced, cursor >= %d", res, second.HistoryID)
	}
	// Nor does the holder's claim, heartbeat, cursor or release: a
	// transaction whose process dies locks the record for a minute.
	if res.Firestore.Transactions != 0 {
		t.Errorf("holder ran %d transactions on the user's record, want none", res.Firestore.Transactions)
	}
	wantExactlyOnce(t, e.events(2), first, second)
	if u := e.user(email); u.Lease != (store.Lease{}) {
		t.Errorf("lease after the holder finished: %+v, want released", u.Lease)
	}
}

// A sync whose lease another sync took (as after a heartbeat that came too
// late) stops with an error, so its push is delivered again, and moves
// nothing.
func TestSyncWhoseLeaseWasTakenStops(t *testing.T) {
	t.Parallel()
	set := fast
	set.LeaseTTL = 900 * time.Millisecond
	e := newEnv(t, set)
	const email = "ida@example.com"
	e.connect(email, nil, "")
	if err := e.sb.Gmail.SetFaults(email, gmailapi.Faults{MethodLatency: map[string]gmailapi.Duration{"messages.get": gmailapi.Duration(3 * time.Second)}}); err != nil {
		t.Fatal(err)
	}
	d := e.deliver(email, "first")
	type outcome struct {
		res gmailsync.Result
		err error
	}
	done := make(chan outcome)
	go func() {
		res, err := e.syncer.OnPush(context.Background(), email, int64(d.HistoryID))
		done <- outcome{res, err}
	}()
	for e.sb.Gmail.Usage(email).Calls["messages.get"] == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	read := e.user(email)
	thief := store.Lease{Holder: "another-sync", Until: time.Now().Add(time.Minute)}
	if _, ok, err := e.store.Claim(context.Background(), read, thief, 0, time.Now()); !ok || err != nil {
		t.Fatalf("take the lease: %v, %v", ok, err)
	}
	select {
	case o := <-done:
		if o.err == nil || !strings.Contains(o.err.Error(), "lease lost") {
			t.Errorf("sync whose lease was taken: got %+v, %v; want an error saying the lease was lost", o.res, o.err)
		}
	case <-time.After(2500 * time.Millisecond):
		t.Fatal("the sync went on for more than 2.5 s after its lease was taken")
	}
	if u := e.user(email); u.Cursor != read.Cursor || u.Lease.Holder != thief.Holder {
		t.Errorf("after the sync stopped: cursor %d (was %d), lease %+v; want both unchanged", u.Cursor, read.Cursor, u.Lease)
	}
}
