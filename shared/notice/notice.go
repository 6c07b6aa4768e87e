// Package notice publishes the gmail.user.connected event a user's record
// owes. store.Connect writes the notice in the transaction that connects,
// so a connection is never recorded without it; Publish sends it and only
// then clears it. Its id and time come from the notice, so a publish that
// failed is repeated with the same event: by the next renew run, or first
// by the user's next lifecycle event (reauth_required, disconnected), which
// publishes it ahead of its own to keep the user's order.
package notice

import (
	"context"
	"fmt"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// Event is the gmail.user.connected event of u's notice, which must be set.
func Event(u store.User) events.Event {
	at := u.Notice.At
	return events.Event{
		Type: events.UserConnected, ID: events.ID(events.UserConnected, u.Key, fmt.Sprint(at.UnixMicro())),
		Time: at.UTC().Format(time.RFC3339Nano), User: u.Key, AppRef: u.AppRef, EmailAddress: u.Email,
		HistoryID: uint64(u.Notice.HistoryID),
	}
}

// Publish publishes the notice u owes, if any, and then clears it from the
// record. It returns the event id published, "" when nothing was owed.
func Publish(ctx context.Context, users *store.Store, pub *events.Publisher, u store.User) (string, error) {
	if u.Notice == nil {
		return "", nil
	}
	ev := Event(u)
	if err := pub.Publish(ctx, ev); err != nil {
		return "", fmt.Errorf("connected event of %s: %w", u.Key, err)
	}
	if err := users.ClearNotice(ctx, u.Key, u.Notice.At); err != nil {
		return ev.ID, fmt.Errorf("connected event %s of %s published, still owed: %w", ev.ID, u.Key, err)
	}
	return ev.ID, nil
}
