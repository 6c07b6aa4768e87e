package gmailsync_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// The mailbox event types beside arrivals: each switched on alone, then all
// together in history order.

func withTypes(types ...string) gmailsync.Settings {
	s := fast
	s.Types = types
	return s
}

func (e *env) modify(email string, d gmailapi.Delivered, add, remove []string) uint64 {
	e.t.Helper()
	h, err := e.sb.Gmail.ModifyLabels(email, d.ID, add, remove)
	if err != nil {
		e.t.Fatalf("ModifyLabels: %v", err)
	}
	return h
}

func (e *env) remove(email string, d gmailapi.Delivered) uint64 {
	e.t.Helper()
	h, err := e.sb.Gmail.DeleteMessage(email, d.ID)
	if err != nil {
		e.t.Fatalf("DeleteMessage: %v", err)
	}
	return h
}

// send saves a one-revision draft and sends it; it returns the draft and
// the sent message.
func (e *env) send(email, subject string) (gmailapi.SavedDraft, gmailapi.Delivered) {
	e.t.Helper()
	d, err := e.sb.Gmail.SaveDraft(gmailapi.Draft{User: email, To: "bob@example.net", Subject: subject, Body: "x"})
	if err != nil {
		e.t.Fatalf("SaveDraft: %v", err)
	}
	sent, err := e.sb.Gmail.SendDraft(email, d.ID)
	if err != nil {
		e.t.Fatalf("SendDraft: %v", err)
	}
	return d, sent
}

// describe renders an event as the facts a test expects of it.
func describe(ev events.Event) string {
	switch ev.Type {
	case events.MessageLabelsChanged:
		return fmt.Sprintf("labels %s +%v -%v =%v", ev.MessageID, ev.LabelsAdded, ev.LabelsRemoved, sorted(ev.LabelIDs))
	case events.MessageDeleted:
		return fmt.Sprintf("deleted %s %s", ev.MessageID, ev.Deletion)
	}
	return fmt.Sprintf("%s %s %q", strings.TrimPrefix(ev.Type, "gmail.message."), ev.MessageID, ev.Subject)
}

func sorted(l []string) []string { l = slices.Clone(l); slices.Sort(l); return l }

func describeAll(evs []events.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, describe(ev))
	}
	return out
}

func wantEvents(t *testing.T, evs []events.Event, want ...string) {
	t.Helper()
	if got := describeAll(evs); !slices.Equal(got, want) {
		t.Errorf("events:\n got %q\nwant %q", got, want)
	}
	seen := map[string]bool{}
	for _, ev := range evs {
		if seen[ev.ID] {
			t.Errorf("event id %s twice", ev.ID)
		}
		seen[ev.ID] = true
	}
}

func TestLabelChangesNeedNoFetchAndCancelOutInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withTypes(events.MessageLabelsChanged))
	const email = "labels@example.com"
	e.connect(email, nil, "")
	d := e.deliver(email, "to be read")
	e.modify(email, d, nil, []string{"UNREAD"})       // read
	e.modify(email, d, []string{"STARRED"}, nil)      // starred ...
	h := e.modify(email, d, nil, []string{"STARRED"}) // ... and unstarred in the same window
	res := e.push(email, h)
	if u := e.sb.Gmail.Usage(email); u.Calls["messages.get"] != 0 || res.Announced != 3 {
		t.Errorf("usage %+v, result %+v: want 3 label changes and no messages.get", u, res)
	}
	wantEvents(t, e.events(3),
		"labels "+d.ID+" +[] -[UNREAD] =[INBOX]",
		"labels "+d.ID+" +[STARRED] -[] =[INBOX STARRED]",
		"labels "+d.ID+" +[] -[STARRED] =[INBOX]")
	// Announced once: a repeated push and a reconcile from the same cursor find the markers.
	if _, err := e.store.Update(context.Background(), store.Key(email), func(u *store.User) error {
		u.Cursor = int64(d.HistoryID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if res, err := e.syncer.Sync(context.Background(), store.Key(email)); err != nil || res.Announced != 0 {
		t.Errorf("reconcile over the same records: %+v, %v; want nothing announced again", res, err)
	}
	if n := len(e.Events.Quiet(testenv.Settle)); n != 3 {
		t.Errorf("%d events after the reconcile, want still 3", n)
	}
}

func TestDeletionsTellTrashFromDeletedForGood(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withTypes(events.MessageReceived, events.MessageDeleted))
	const email = "deletes@example.com"
	e.connect(email, nil, "")
	kept := e.deliver(email, "announced, deleted later")
	e.push(email, kept.HistoryID)
	trashed := e.deliver(email, "trashed")
	e.modify(email, trashed, []string{"TRASH"}, []string{"INBOX"})
	gone := e.deliver(email, "delivered then deleted") // within one window: only its deletion shows
	e.remove(email, gone)
	res := e.push(email, e.remove(email, kept))
	if u := e.sb.Gmail.Usage(email); u.Calls["messages.get"] != 2 || res.Announced != 4 {
		t.Errorf("usage %+v, result %+v: want 4 events, messages.get only for the two arrivals", u, res)
	}
	wantEvents(t, e.events(5),
		`received `+kept.ID+` "announced, deleted later"`,
		`received `+trashed.ID+` "trashed"`,
		"deleted "+trashed.ID+" trash",
		"deleted "+gone.ID+" permanent",
		"deleted "+kept.ID+" permanent")
}

func TestSentMailIsAnnouncedOnceAndDraftsAreNot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withTypes(events.MessageReceived, events.MessageSent))
	const email = "sender@example.com"
	e.connect(email, nil, "")
	v1, err := e.sb.Gmail.SaveDraft(gmailapi.Draft{User: email, To: "bob@example.net", Subject: "plan", Body: "first"})
	if err != nil {
		t.Fatal(err)
	}
	e.push(email, v1.HistoryID) // a draft revision: neither received nor sent
	if _, err := e.sb.Gmail.SaveDraft(gmailapi.Draft{User: email, ID: v1.ID, To: "bob@example.net", Subject: "plan", Body: "second"}); err != nil {
		t.Fatal(err)
	}
	sent, err := e.sb.Gmail.SendDraft(email, v1.ID)
	if err != nil {
		t.Fatal(err)
	}
	in := e.deliver(email, "reply")
	e.push(email, in.HistoryID)
	wantEvents(t, e.events(2), `sent `+sent.ID+` "plan"`, `received `+in.ID+` "reply"`)
}

func TestEveryTypeInHistoryOrderWithStableIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withTypes(events.MessageTypes...))
	const email = "all@example.com"
	start := e.connect(email, nil, "").Cursor
	a := e.deliver(email, "first")
	e.modify(email, a, []string{"STARRED"}, []string{"UNREAD"})
	draft, sent := e.send(email, "out")
	b := e.deliver(email, "second")
	e.modify(email, b, []string{"TRASH"}, []string{"INBOX"})
	c := e.deliver(email, "gone")
	e.modify(email, c, nil, []string{"UNREAD"})
	e.push(email, e.remove(email, c))
	want := []string{
		`received ` + a.ID + ` "first"`,
		"labels " + a.ID + " +[STARRED] -[] =[INBOX STARRED UNREAD]",
		"labels " + a.ID + " +[] -[UNREAD] =[INBOX STARRED]",
		"deleted " + draft.MessageID + " permanent", // the draft's revision, replaced by the sent message
		`sent ` + sent.ID + ` "out"`,
		`received ` + b.ID + ` "second"`,
		"labels " + b.ID + " +[TRASH] -[] =[INBOX TRASH UNREAD]",
		"deleted " + b.ID + " trash",
		"labels " + b.ID + " +[] -[INBOX] =[TRASH UNREAD]",
		"labels " + c.ID + " +[] -[UNREAD] =[]", // deleted for good since: its labels are gone
		"deleted " + c.ID + " permanent",
	}
	first := e.events(len(want))
	wantEvents(t, first, want...)
	for _, ev := range first {
		if ev.ID == "" || ev.User != store.Key(email) {
			t.Errorf("event %+v: want an id and the user", ev)
		}
	}

	// A sync that died after publishing, before its markers and cursor:
	// the same changes come again, in the same order, with the same ids.
	ctx := context.Background()
	if err := e.store.DeleteMarkers(ctx, store.Key(email)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Update(ctx, store.Key(email), func(u *store.User) error { u.Cursor = start; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.syncer.Sync(ctx, store.Key(email)); err != nil {
		t.Fatal(err)
	}
	again := e.events(2 * len(want))[len(first):]
	for i := range first {
		if i >= len(again) || again[i].ID != first[i].ID {
			t.Fatalf("the repeat differs at %d:\n got %q\nwant %q", i, describeAll(again), describeAll(first))
		}
	}
}

// A marker keyed by message id, as they were before event ids keyed them,
// still counts for a record connected before that change, while such
// markers can still exist; a record connected since cannot hold one, and
// its sync reads only event-id markers.
func TestMarkersWrittenByMessageIDStillCount(t *testing.T) {
	t.Parallel()
	set := withTypes(events.MessageTypes...)
	set.MarkerTTL = 100 * 365 * 24 * time.Hour // whatever today's date, legacy markers may still exist
	e := newEnv(t, set)
	for _, tc := range []struct {
		email    string
		before   bool // connected before markers were keyed by event id
		announce bool // the message with a legacy marker is announced (again)
	}{
		{"legacy@example.com", true, false},
		{"fresh@example.com", false, true},
	} {
		u := e.connect(tc.email, nil, "")
		if tc.before {
			if _, err := e.store.Update(context.Background(), u.Key, func(u *store.User) error {
				u.ConnectedAt = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		old := e.deliver(tc.email, "announced before markers had event ids")
		now := time.Now()
		err := e.store.MarkAnnounced(context.Background(), u.Key, map[string]store.Marker{
			old.ID: {EventID: events.ID(events.MessageReceived, u.Key, old.ID), AnnouncedAt: now, ExpireAt: now.Add(time.Hour)},
		})
		if err != nil {
			t.Fatal(err)
		}
		d := e.deliver(tc.email, "new")
		before := len(e.Events.All())
		e.push(tc.email, d.HistoryID)
		want := []string{`received ` + d.ID + ` "new"`}
		if tc.announce {
			want = []string{`received ` + old.ID + ` "announced before markers had event ids"`, want[0]}
		}
		wantEvents(t, e.events(before + len(want))[before:], want...)
	}
}

func TestWatchOfEveryTypePushesChangesOutsideTheWatchedLabels(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		types []string
		want  int64 // pushes for a change to a message outside INBOX
	}{
		{[]string{events.MessageReceived}, 0},
		{events.MessageTypes, 1},
	} {
		e := newEnv(t, withTypes(tc.types...))
		email := fmt.Sprintf("watch%d@example.com", len(tc.types))
		e.connect(email, nil, "")
		svc, err := e.Mailboxes().ForUser(context.Background(), store.User{Key: store.Key(email)})
		if err != nil {
			t.Fatal(err)
		}
		w := gmailclient.WatchSettings{Topic: e.GmailTopic, Labels: []string{"INBOX"}, LabelFilter: "include", Types: tc.types}
		if _, _, err := w.Watch(context.Background(), svc); err != nil {
			t.Fatal(err)
		}
		archived := e.deliver(email, "archived", "CATEGORY_UPDATES")
		time.Sleep(1100 * time.Millisecond) // past Gmail's one push a second
		before, _ := e.sb.Gmail.Watch(email)
		e.modify(email, archived, []string{"STARRED"}, nil)
		time.Sleep(time.Second) // the push is published asynchronously
		after, _ := e.sb.Gmail.Watch(email)
		if got := after.Notifications.Published - before.Notifications.Published; got != tc.want {
			t.Errorf("types %v: %d pushes for a label change outside INBOX, want %d", tc.types, got, tc.want)
		}
	}
}

func TestCatchUpAnnouncesReceivedAndSentInArrivalOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withTypes(events.MessageReceived, events.MessageSent))
	const email = "catchup@example.com"
	e.connect(email, nil, "")
	var want []string
	for i := range 3 { // their pushes were lost, and history aged out
		d := e.deliver(email, fmt.Sprint("in ", i))
		want = append(want, fmt.Sprintf("received %s %q", d.ID, fmt.Sprint("in ", i)))
		time.Sleep(5 * time.Millisecond) // Gmail's internalDate has millisecond resolution
		_, sent := e.send(email, fmt.Sprint("out ", i))
		want = append(want, fmt.Sprintf("sent %s %q", sent.ID, fmt.Sprint("out ", i)))
		time.Sleep(5 * time.Millisecond)
	}
	if err := e.sb.Gmail.SetFaults(email, gmailapi.Faults{ExpireHistory: true}); err != nil {
		t.Fatal(err)
	}
	now, _ := e.sb.Gmail.HistoryID(email)
	if res := e.push(email, now); !res.CaughtUp {
		t.Fatalf("result %+v: want a catch-up", res)
	}
	wantEvents(t, e.events(len(want)), want...)
}

func TestCatchUpFindsMailTrashedSince(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withTypes(events.MessageReceived, events.MessageDeleted))
	const email = "trashed@example.com"
	e.connect(email, nil, "")
	d := e.deliver(email, "trashed before any sync")
	e.modify(email, d, []string{"TRASH"}, nil)
	if err := e.sb.Gmail.SetFaults(email, gmailapi.Faults{ExpireHistory: true}); err != nil {
		t.Fatal(err)
	}
	now, _ := e.sb.Gmail.HistoryID(email)
	if res := e.push(email, now); !res.CaughtUp {
		t.Fatalf("result %+v: want a catch-up", res)
	}
	// Its trash is in the history Gmail no longer has: only the arrival can be found again.
	wantEvents(t, e.events(1), `received `+d.ID+` "trashed before any sync"`)
}
