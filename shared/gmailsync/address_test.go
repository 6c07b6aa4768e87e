package gmailsync_test

import (
	"context"
	"testing"

	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// A user whose address changes keeps getting its mail announced: the push
// naming the new address is kept, the profile read proves whose mailbox it
// is, and from then on pushes find the user by the new address.
func TestAddressChangeKeepsPushesComing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const old, renamed = "ana@example.com", "ana.lee@example.com"
	e.connect(old, nil, "")
	key := store.Key(old)
	ctx := context.Background()
	if err := e.sb.RenameMailbox(old, renamed); err != nil {
		t.Fatal(err)
	}
	d1 := e.deliver(renamed, "after the rename")
	if res, err := e.syncer.OnPush(ctx, renamed, int64(d1.HistoryID)); err != nil || res.Outcome != "unknown" {
		t.Fatalf("push for the new address before any profile read: %+v, %v; want unknown", res, err)
	}
	if n := e.calls(renamed); n != 0 {
		t.Fatalf("a push naming an unknown address made %d Gmail calls, want 0", n)
	}
	if _, err := e.syncer.CheckAddress(ctx, key); err != nil {
		t.Fatal(err)
	}
	u := e.user(old)
	if u.Email != renamed || u.PendingHistoryID < int64(d1.HistoryID) {
		t.Fatalf("after the profile read: email %q, pending %d; want %q and the kept push's %d", u.Email, u.PendingHistoryID, renamed, d1.HistoryID)
	}
	if res, err := e.syncer.Sync(ctx, key); err != nil || res.Announced != 1 {
		t.Fatalf("sync after the address check: %+v, %v; want the kept push's message announced", res, err)
	}
	d2 := e.deliver(renamed, "second")
	if res := e.push(renamed, d2.HistoryID); res.Outcome != "synced" || res.User != key {
		t.Fatalf("push for the new address: %+v; want user %s synced", res, key)
	}
	evs := e.events(2)
	wantExactlyOnce(t, evs, d1, d2)
	for _, ev := range evs {
		if ev.Type == events.MessageReceived && (ev.User != key || ev.EmailAddress != renamed) && ev.MessageID == d2.ID {
			t.Errorf("event %s: user %s address %s; want %s at %s", ev.ID, ev.User, ev.EmailAddress, key, renamed)
		}
	}
	if h, err := e.store.TakeStray(ctx, renamed); err != nil || h != 0 {
		t.Errorf("stray push left behind: %d, %v", h, err)
	}
}

// A push naming an address moves nothing onto a record: only a mailbox
// whose own profile shows the address gets its pushes, and another user's
// mailbox is never read for it.
func TestPushNamingAnAddressNeverMovesIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const vic, eve, target = "vic@example.com", "eve@example.com", "boss@example.com"
	e.connect(vic, nil, "")
	e.connect(eve, nil, "")
	ctx := context.Background()
	// Whoever can publish to the topic names an address no one has, with
	// a history id far ahead.
	if res, err := e.syncer.OnPush(ctx, target, 1<<40); err != nil || res.Outcome != "unknown" {
		t.Fatalf("forged push: %+v, %v; want unknown", res, err)
	}
	vicBefore := e.user(vic)
	if _, err := e.syncer.CheckAddress(ctx, store.Key(vic)); err != nil {
		t.Fatal(err)
	}
	if u := e.user(vic); u.Email != vic || u.PendingHistoryID != vicBefore.PendingHistoryID {
		t.Fatalf("vic's record after the forged push and a profile read: email %q, pending %d; want it unchanged", u.Email, u.PendingHistoryID)
	}
	if n := e.calls(vic) + e.calls(eve); n != 1 {
		t.Fatalf("Gmail calls: %d, want vic's one getProfile", n)
	}
	// Eve's mailbox really takes the address: only her record follows it.
	if err := e.sb.RenameMailbox(eve, target); err != nil {
		t.Fatal(err)
	}
	if _, err := e.syncer.CheckAddress(ctx, store.Key(vic)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.syncer.CheckAddress(ctx, store.Key(eve)); err != nil {
		t.Fatal(err)
	}
	if u := e.user(vic); u.Email != vic {
		t.Fatalf("vic's address became %q", u.Email)
	}
	if u := e.user(eve); u.Email != target {
		t.Fatalf("eve's address is %q, want %q", u.Email, target)
	}
	d := e.deliver(target, "for eve")
	res := e.push(target, d.HistoryID)
	if res.User != store.Key(eve) {
		t.Fatalf("push for %s synced user %s, want eve's %s", target, res.User, store.Key(eve))
	}
	for _, ev := range e.events(1) {
		if ev.User != store.Key(eve) {
			t.Errorf("event %s under user %s, want eve's", ev.ID, ev.User)
		}
	}
	if got := e.sb.Gmail.Usage(vic).Calls["history.list"]; got != 0 {
		t.Errorf("vic's mailbox was read %d times for another address's push", got)
	}
}
