package renew

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/shared/directory"
	"github.com/gmailwatch/gmailwatch/shared/disconnect"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// A delegated user who leaves the group has the mail that arrived before
// announced by a last sync, ahead of its disconnected event; back within
// the history retention, it continues from its old cursor, so the mail
// that arrived while it was out is announced too.
func TestLeaveSyncsLastAndRejoinResumes(t *testing.T) {
	e, must := newDelegation(t, map[string]string{"DELEGATION_ORG_UNIT": "", "DELEGATION_GROUP": "support@example.com"}, "ann@example.com", "bo@example.com")
	key := putUserKey(t, e.World)
	ann := key("ann@example.com")
	must(e.sb.Directory.AddGroup("support@example.com"))
	must(e.sb.GrantDelegation(gmailclient.ScopeMetadata, directory.ScopeMembers))
	for _, m := range []string{"ann@example.com", "bo@example.com"} { // bo stays: an empty listing changes nothing
		must(e.sb.Directory.SetMember("support@example.com", m, true))
	}
	if rep := e.post(t); rep.Joined != 2 {
		t.Fatalf("first run: %+v, want ann and bo joined", rep)
	}
	e.pull(t, time.Second)
	deliver := func(subject string) gmailapi.Delivered {
		d, err := e.sb.Deliver(gmailapi.Delivery{To: "ann@example.com", Subject: subject, LabelIDs: []string{"INBOX"}})
		must(err)
		return d
	}

	before := deliver("before leaving") // its push is lost
	must(e.sb.Directory.SetMember("support@example.com", "ann@example.com", false))
	if rep := e.post(t); rep.Left != 1 {
		t.Fatalf("run after ann left the group: %+v, want her left", rep)
	}
	evs := e.pull(t, 1500*time.Millisecond)
	if len(evs) != 2 || evs[0].Type != events.MessageReceived || evs[0].MessageID != before.ID || evs[1].Type != events.UserDisconnect {
		t.Fatalf("events when ann left: %+v; want her last message %s, then her disconnected event", evs, before.ID)
	}
	left := e.user(t, ann)
	if left.Status != store.Disconnected || left.LeftAt.IsZero() {
		t.Fatalf("ann after leaving: %+v", left)
	}

	during := deliver("while out")
	must(e.sb.Directory.SetMember("support@example.com", "ann@example.com", true))
	if rep := e.post(t); rep.Joined != 1 {
		t.Fatalf("run after ann came back: %+v, want her joined", rep)
	}
	back := e.user(t, ann)
	if back.Status != store.Active || back.Cursor != left.Cursor || !back.ConnectedAt.After(left.ConnectedAt) {
		t.Fatalf("ann back: status %s cursor %d connected %v; want active at her old cursor %d, a new connection", back.Status, back.Cursor, back.ConnectedAt, left.Cursor)
	}
	if res, err := e.h.d.Syncer.Sync(context.Background(), ann); err != nil || res.Announced != 1 {
		t.Fatalf("sync after the rejoin: %+v, %v; want the message from while she was out", res, err)
	}
	evs = e.pull(t, 1500*time.Millisecond)
	var got []string
	for _, ev := range evs {
		got = append(got, ev.Type+" "+ev.MessageID)
	}
	if len(evs) != 2 || evs[0].Type != events.UserConnected || evs[1].MessageID != during.ID {
		t.Fatalf("events after the rejoin: %v; want connected, then message %s", got, during.ID)
	}
}

// A delegated user's invalid_grant may pass (a user created minutes ago, a
// clock ahead of Google's): it is tried again, and marks the user
// reauth_required only after RefusalTries refusals over RefusalGrace with
// no sync working between. A join refused so is tried at the next run.
func TestTransientDelegatedRefusalIsRetried(t *testing.T) {
	e, must := newDelegation(t, nil, "ann@example.com")
	key := putUserKey(t, e.World)
	ann := key("ann@example.com")
	ctx := context.Background()
	const grace = 1500 * time.Millisecond
	d := e.h.d
	d.Syncer = gmailsync.New(gmailsync.Deps{Users: d.Users, Gmail: d.Gmail, Events: d.Events, Logger: d.Logger},
		gmailsync.Settings{RefusalGrace: grace, BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond})
	e.h.d = d

	// A user created a moment ago is refused by the token endpoint: not
	// joined, not an alert, joined by the next run.
	e.sb.Directory.SetNewUserLag(time.Hour)
	must(e.sb.AddDirectoryUser("bo@example.com", "/Support", false))
	rep := e.post(t)
	if rep.Joined != 1 || rep.Skipped != 1 || rep.DelegationRefused {
		t.Fatalf("run with bo just created: %+v; want ann joined, bo skipped, no delegation alert", rep)
	}
	if _, err := e.users.Get(ctx, key("bo@example.com")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bo recorded while refused: %v", err)
	}
	e.sb.Directory.SetNewUserLag(0)
	if rep := e.post(t); rep.Joined != 1 {
		t.Fatalf("run once bo is accepted: %+v, want him joined", rep)
	}
	e.pull(t, time.Second)

	// ann is refused for a while: her syncs fail and are retried, and she
	// stays active; once accepted again her mail is announced.
	refuse := func(on bool) {
		t.Helper()
		must(e.sb.SuspendUser("ann@example.com", on)) // ends her tokens and refuses new ones
	}
	refuse(true)
	for i := range 2 {
		res, err := d.Syncer.Sync(ctx, ann)
		if !gmailclient.IsInvalidGrant(err) || res.Outcome == gmailsync.ReauthRequired {
			t.Fatalf("refused sync %d: %+v, %v; want the refusal returned, worth a retry", i+1, res, err)
		}
	}
	if u := e.user(t, ann); u.Status != store.Active || u.Refusals != 2 {
		t.Fatalf("ann after two refusals: status %s, refusals %d; want active, 2", u.Status, u.Refusals)
	}
	refuse(false)
	m, err := e.sb.Deliver(gmailapi.Delivery{To: "ann@example.com", Subject: "after", LabelIDs: []string{"INBOX"}})
	must(err)
	if res, err := d.Syncer.Sync(ctx, ann); err != nil || res.Announced != 1 {
		t.Fatalf("sync once accepted: %+v, %v; want her message", res, err)
	}
	if u := e.user(t, ann); u.Refusals != 0 || !u.RefusedSince.IsZero() {
		t.Fatalf("refusals after a sync that worked: %d since %v; want none", u.Refusals, u.RefusedSince)
	}
	if evs := e.pull(t, time.Second); len(evs) != 1 || evs[0].MessageID != m.ID {
		t.Fatalf("events: %+v, want message %s alone", evs, m.ID)
	}

	// Refused for good: reauth_required after the tries and the grace, once.
	refuse(true)
	start, tries := time.Now(), 0
	for deadline := start.Add(10 * grace); ; {
		res, _ := d.Syncer.Sync(ctx, ann)
		tries++
		if res.Outcome == gmailsync.ReauthRequired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ann still not reauth_required after %d refusals over %v", tries, time.Since(start))
		}
	}
	if took := time.Since(start); tries < 3 || took < grace {
		t.Errorf("reauth_required after %d refusals over %v; want at least 3 over %v", tries, took, grace)
	}
	evs := e.pull(t, time.Second)
	if len(evs) != 1 || evs[0].Type != events.UserReauth || evs[0].User != ann {
		t.Fatalf("events: %+v, want one reauth_required for ann", evs)
	}
}

// With both connect modes on, a delegated user who disconnects itself is
// not watched again by the next run, though the directory still lists it;
// a disconnect by the application (the accounts API) lasts only until the
// next run, as the directory decides who is watched.
func TestSelfDisconnectIsHonouredInBothModes(t *testing.T) {
	e, _ := newDelegation(t, map[string]string{"CONNECT_MODE": "both"}, "ann@example.com", "bo@example.com")
	key := putUserKey(t, e.World)
	ann, bo := key("ann@example.com"), key("bo@example.com")
	ctx := context.Background()
	if rep := e.post(t); rep.Joined != 2 {
		t.Fatalf("first run: %+v, want both joined", rep)
	}
	e.pull(t, time.Second)
	d := disconnect.New(e.users, e.Vault, e.h.d.Gmail, e.h.d.Events, http.DefaultClient, e.Log)
	found, delegated, err := d.ByUser(ctx, ann) // what the consent page's confirmed disconnect calls
	if err != nil || !found || !delegated {
		t.Fatalf("ann's own disconnect: found %v delegated %v, %v", found, delegated, err)
	}
	if _, err := d.Disconnect(ctx, bo); err != nil {
		t.Fatal(err)
	}
	if evs := e.pull(t, time.Second); len(evs) != 2 {
		t.Fatalf("events of the disconnects: %+v, want two", evs)
	}
	rep := e.post(t)
	if rep.Joined != 1 {
		t.Fatalf("run after the disconnects: %+v, want bo alone joined again", rep)
	}
	if u := e.user(t, ann); u.Status != store.Disconnected {
		t.Errorf("ann, who disconnected herself, is %s again", u.Status)
	}
	if u := e.user(t, bo); u.Status != store.Active {
		t.Errorf("bo is %s, want active again", u.Status)
	}
	if n := e.sb.Gmail.Usage("ann@example.com").Calls["watch"]; n != 1 {
		t.Errorf("ann's mailbox had %d users.watch calls, want the first run's alone", n)
	}
	for _, ev := range e.pull(t, time.Second) {
		if ev.User == ann {
			t.Errorf("event for ann after her disconnect: %+v", ev)
		}
	}
	if rep := e.post(t); rep.Joined != 0 {
		t.Errorf("a later run joined %d, want none", rep.Joined)
	}
}

// A delegated user renamed by the admin keeps its key: the next run
// records the new address, and its mail is read and announced as that
// address, with a token source made for it.
func TestDelegatedRenameFollowsTheNewAddress(t *testing.T) {
	e, must := newDelegation(t, nil, "ann@example.com", "bo@example.com")
	key := putUserKey(t, e.World)
	ann := key("ann@example.com")
	ctx := context.Background()
	if rep := e.post(t); rep.Joined != 2 {
		t.Fatalf("first run: %+v", rep)
	}
	if _, err := e.h.d.Syncer.Sync(ctx, ann); err != nil { // the factory now holds a source for the old address
		t.Fatal(err)
	}
	e.pull(t, time.Second)
	must(e.sb.RenameMailbox("ann@example.com", "ann.lee@example.com"))
	if rep := e.post(t); rep.Joined != 1 || rep.Left != 0 {
		t.Fatalf("run after the rename: %+v, want ann joined again under the new address", rep)
	}
	if u := e.user(t, ann); u.Email != "ann.lee@example.com" || u.Status != store.Active {
		t.Fatalf("ann after the rename: %+v", u)
	}
	d, err := e.sb.Deliver(gmailapi.Delivery{To: "ann.lee@example.com", Subject: "renamed", LabelIDs: []string{"INBOX"}})
	must(err)
	if res, err := e.h.d.Syncer.Sync(ctx, ann); err != nil || res.Announced != 1 {
		t.Fatalf("sync after the rename: %+v, %v", res, err)
	}
	var got *events.Event
	for _, ev := range e.pull(t, time.Second) {
		if ev.MessageID == d.ID {
			got = &ev
		}
	}
	if got == nil || got.EmailAddress != "ann.lee@example.com" || got.User != ann {
		t.Fatalf("event for the message: %+v, want it under ann's key at the new address", got)
	}
}
