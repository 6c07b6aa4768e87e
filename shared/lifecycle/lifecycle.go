// Package lifecycle owns a user's lifecycle events — gmail.user.connected,
// gmail.user.reauth_required and gmail.user.disconnected —: how each is
// built, its id, and the order of the record's write and the publish.
//
// No lifecycle event is lost, and a retry repeats the same event (same id,
// same time), because the record names the event until it is out:
//   - connected: store.Connect (or Redeem) writes the owed event (Notice)
//     with the connection; Announce publishes it, then clears it.
//   - disconnected: Disconnect writes the status and the owed event
//     (Farewell) in one write; Farewell publishes the owed connected event
//     first, then this one, then clears it. The status is written first, so
//     from then on notify and renew leave the user alone whatever fails next.
//   - disconnected by a move to another AppRef: Moved publishes before
//     the write that moves the record, which a retry finds unmoved.
//   - reauth_required: MarkReauth publishes while the record is still
//     active, then writes the status, only if the record is the same
//     activation; until then the next refusal repeats it.
//
// Ids are keyed by the connection (connected: when it was stored;
// disconnected: ConnectedAt; reauth_required: User.Activation), so a
// reconnect starts new events and every try of one transition is the same.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// Users is what the package reads and writes of the user records.
type Users interface {
	Get(ctx context.Context, key string) (store.User, error)
	Update(ctx context.Context, key string, fn func(u *store.User) error) (store.User, error)
	ClearNotice(ctx context.Context, key string, at time.Time) error
	Now() time.Time // the default clock
}

// Publisher publishes events.
type Publisher interface {
	Publish(ctx context.Context, evs ...events.Event) error
}

// Lifecycle publishes users' lifecycle events in step with their records.
type Lifecycle struct {
	users  Users
	events Publisher
	now    func() time.Time
}

// New returns a Lifecycle over users and pub; now dates the events and
// changes (nil: the users' clock).
func New(users Users, pub Publisher, now func() time.Time) *Lifecycle {
	if now == nil {
		now = users.Now
	}
	return &Lifecycle{users: users, events: pub, now: now}
}

// Connected is the gmail.user.connected event of u's notice, which must be set.
func Connected(u store.User) events.Event {
	at := u.Notice.At
	return events.Event{
		Type: events.UserConnected, ID: events.ID(events.UserConnected, u.Key, fmt.Sprint(at.UnixMicro())),
		Time: stamp(at), User: u.Key, AppRef: u.AppRef, EmailAddress: u.Email,
		HistoryID: uint64(u.Notice.HistoryID),
	}
}

// Disconnected is the gmail.user.disconnected event that ends u's
// connection under its AppRef at `at`: its id is keyed by the connection
// (ConnectedAt), so every try of one ending is the same event.
func Disconnected(u store.User, at time.Time) events.Event {
	return events.Event{
		Type: events.UserDisconnect, ID: events.ID(events.UserDisconnect, u.Key, fmt.Sprint(u.ConnectedAt.UnixMicro())),
		Time: stamp(at), User: u.Key, AppRef: u.AppRef, EmailAddress: u.Email,
	}
}

// Reauth is the gmail.user.reauth_required event of u's refusal at `at`,
// keyed by its activation, so the refusal after a reconnect is a new
// event. A consented user is told how to reconnect; a delegated one comes
// back when the admin grants the delegation again.
func Reauth(u store.User, at time.Time) events.Event {
	ev := events.Event{
		Type: events.UserReauth, ID: events.ID(events.UserReauth, u.Key, fmt.Sprint(u.Activation().UnixMicro())),
		Time: stamp(at), User: u.Key, AppRef: u.AppRef, EmailAddress: u.Email,
	}
	if !u.Delegated {
		ev.Reconnect = events.ReconnectPath(u.Key)
	}
	return ev
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// Announce publishes the connected event u owes (Notice), if any, and then
// clears it from the record. It returns the event id published, "" when
// nothing was owed.
func (l *Lifecycle) Announce(ctx context.Context, u store.User) (string, error) {
	if u.Notice == nil {
		return "", nil
	}
	ev := Connected(u)
	if err := l.events.Publish(ctx, ev); err != nil {
		return "", fmt.Errorf("connected event of %s: %w", u.Key, err)
	}
	if err := l.users.ClearNotice(ctx, u.Key, u.Notice.At); err != nil {
		return ev.ID, fmt.Errorf("connected event %s of %s published, still owed: %w", ev.ID, u.Key, err)
	}
	return ev.ID, nil
}

// Disconnect writes mark's change to the record of key; when mark leaves
// a connected (active or reauth_required) record disconnected, the same
// write makes it owe the disconnected event (Farewell), which Farewell
// publishes. mark returns store.ErrNoChange, before changing anything, to
// write nothing; the record is returned either way. A repeat on a record
// already disconnected that owes nothing owes the event again (same id):
// its caller may not know whether the first went out. A pending record was
// never announced: it owes nothing.
func (l *Lifecycle) Disconnect(ctx context.Context, key string, mark func(u *store.User) error) (store.User, error) {
	return l.users.Update(ctx, key, func(u *store.User) error {
		owes := u.Connected()
		err := mark(u)
		switch {
		case errors.Is(err, store.ErrNoChange) && u.Status == store.Disconnected && u.Farewell.IsZero() && !u.Activation().IsZero():
		case err != nil:
			return err
		case !owes || u.Status != store.Disconnected:
			return nil
		}
		u.Farewell = l.now().Truncate(time.Microsecond) // as Firestore keeps it, so Farewell's clear matches it
		return nil
	})
}

// Farewell publishes what u owes in order: its connected event first, then
// its disconnected event, which it then clears. It returns the
// disconnected event's id, "" when none was owed.
func (l *Lifecycle) Farewell(ctx context.Context, u store.User) (string, error) {
	if _, err := l.Announce(ctx, u); err != nil {
		return "", err
	}
	if u.Farewell.IsZero() {
		return "", nil
	}
	ev := Disconnected(u, u.Farewell)
	if err := l.events.Publish(ctx, ev); err != nil {
		return "", fmt.Errorf("disconnected event of %s: %w", u.Key, err)
	}
	_, err := l.users.Update(ctx, u.Key, func(v *store.User) error {
		if !v.Farewell.Equal(u.Farewell) {
			return store.ErrNoChange
		}
		v.Farewell = time.Time{}
		return nil
	})
	if err != nil {
		return ev.ID, fmt.Errorf("disconnected event %s of %s published, still owed: %w", ev.ID, u.Key, err)
	}
	return ev.ID, nil
}

// Moved ends u's connection under its AppRef before a move to another
// reference is written (store.Redeem): the connected event u still owes,
// then the disconnected one, published ahead of the write, so the old
// reference hears of the end before anything is published under the new
// one; a retry of the redeem finds the record unmoved and repeats them.
func (l *Lifecycle) Moved(ctx context.Context, u store.User) error {
	if _, err := l.Announce(ctx, u); err != nil {
		return err
	}
	if err := l.events.Publish(ctx, Disconnected(u, l.now())); err != nil {
		return fmt.Errorf("disconnected event of %s: %w", u.Key, err)
	}
	return nil
}

// MarkReauth moves the active user of key to reauth_required and publishes
// gmail.user.reauth_required (after the connected event the record still
// owes). The event goes out while the record is still active, and the
// status is written only if the record is still that activation, so a retry
// after a failure repeats the same event and a refusal after a reconnect is
// a new one. It reports whether this call made the change, and the event.
func (l *Lifecycle) MarkReauth(ctx context.Context, key string) (bool, events.Event, error) {
	u, err := l.users.Get(ctx, key)
	if err != nil {
		return false, events.Event{}, err
	}
	if u.Status != store.Active {
		return false, events.Event{}, nil
	}
	if _, err := l.Announce(ctx, u); err != nil {
		return false, events.Event{}, fmt.Errorf("reauth of %s: %w", key, err)
	}
	ev := Reauth(u, l.now())
	if err := l.events.Publish(ctx, ev); err != nil {
		return false, ev, fmt.Errorf("reauth of %s: %w", key, err)
	}
	var changed bool
	_, err = l.users.Update(ctx, key, func(v *store.User) error {
		changed = false
		if v.Status != store.Active || v.Activation().UnixMicro() != u.Activation().UnixMicro() {
			return store.ErrNoChange
		}
		v.Status, v.ReauthSince, changed = store.ReauthRequired, l.now(), true
		return nil
	})
	if err != nil {
		return false, ev, fmt.Errorf("reauth of %s: %w", key, err)
	}
	return changed, ev, nil
}
