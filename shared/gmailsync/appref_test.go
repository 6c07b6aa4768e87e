package gmailsync_test

import (
	"context"
	"testing"

	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// The application's reference travels in every event of the user: message
// events and the reauth notice, which also says how to get a reconnect link.
func TestEventsCarryTheAppRef(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "ref@example.com"
	u := e.connect(email, []string{"INBOX"}, "include")
	if _, err := e.store.Update(context.Background(), u.Key, func(u *store.User) error { u.AppRef = "app-user-9"; return nil }); err != nil {
		t.Fatal(err)
	}
	d := e.deliver(email, "hello")
	if _, err := e.syncer.OnPush(context.Background(), email, int64(d.HistoryID)); err != nil {
		t.Fatalf("OnPush: %v", err)
	}
	if _, err := e.syncer.MarkReauth(context.Background(), u.Key); err != nil {
		t.Fatalf("MarkReauth: %v", err)
	}
	evs := e.events(2)
	for _, ev := range evs {
		if ev.AppRef != "app-user-9" {
			t.Errorf("%s event appRef = %q, want app-user-9", ev.Type, ev.AppRef)
		}
	}
	if r := evs[1]; r.Type != events.UserReauth || r.Reconnect != events.ReconnectPath(u.Key) {
		t.Errorf("reauth event = %+v, want reconnect %q", r, events.ReconnectPath(u.Key))
	}
}
