package renew

import (
	"context"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// A consent user whose address changed gets no push its record's address
// matches; the push naming the new address is kept, and the next run's
// reconcile reads the user's profile and moves the record to the new
// address, announcing the mail. A run with no such push reads no profile.
func TestRunFollowsAnAddressChange(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	due := func(u *store.User) { u.SyncDueAt = time.Now().Add(-time.Minute) }
	ida := e.connect(t, "ida@example.com", due)
	other := e.connect(t, "otto@example.com", due)

	rep := e.post(t)
	if got := e.sb.Gmail.Usage("ida@example.com").Calls["getProfile"] + e.sb.Gmail.Usage("otto@example.com").Calls["getProfile"]; got != 0 || rep.Reconciled != 2 {
		t.Fatalf("run with no stray push: %d getProfile calls, report %+v; want none and both reconciled", got, rep)
	}

	if err := e.sb.RenameMailbox("ida@example.com", "ida.new@example.com"); err != nil {
		t.Fatal(err)
	}
	d, err := e.sb.Deliver(gmailapi.Delivery{To: "ida.new@example.com", Subject: "renamed", LabelIDs: []string{"INBOX"}})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := e.h.d.Syncer.OnPush(ctx, "ida.new@example.com", int64(d.HistoryID)); err != nil || res.Outcome != "unknown" {
		t.Fatalf("push for the new address: %+v, %v", res, err)
	}
	for _, k := range []string{ida.Key, other.Key} {
		if _, err := e.users.Update(ctx, k, func(u *store.User) error { due(u); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	rep = e.post(t)
	if rep.Reconciled != 2 || rep.Failed != 0 {
		t.Fatalf("run with a stray push: %+v, want both reconciled", rep)
	}
	if u := e.user(t, ida.Key); u.Email != "ida.new@example.com" || u.Cursor < int64(d.HistoryID) {
		t.Fatalf("ida after the run: email %q cursor %d; want the new address, past %d", u.Email, u.Cursor, d.HistoryID)
	}
	if u := e.user(t, other.Key); u.Email != "otto@example.com" {
		t.Fatalf("otto's address became %q", u.Email)
	}
	evs := e.pull(t, time.Second)
	if len(evs) != 1 || evs[0].Type != events.MessageReceived || evs[0].MessageID != d.ID || evs[0].User != ida.Key {
		t.Fatalf("events %+v, want ida's message %s", evs, d.ID)
	}
}
