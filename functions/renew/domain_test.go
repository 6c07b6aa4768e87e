package renew

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/directory"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/lifecycle"
	"github.com/gmailwatch/gmailwatch/shared/platform"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// TestDelegationKeepsTheDomainInStep runs the production renew handler in
// delegation mode against the sandbox's Workspace tenant: the first run
// watches every user, mail is announced with no refresh token anywhere, a
// user added and one suspended between two runs are connected and
// disconnected, a withdrawn delegation is one alert line and one
// reauth_required event per user, and granting it again resumes every user
// with nothing lost.
func TestDelegationKeepsTheDomainInStep(t *testing.T) {
	ctx := context.Background()
	e, must := newDelegation(t, nil, "ann@example.com", "bo@example.com", "cy@example.com")
	w, sb, logs, project, h := e.World, e.sb, e.logs, e.World.Project, e.h
	grant := func() { must(sb.GrantDelegation(gmailclient.ScopeMetadata, directory.ScopeUsers)) }

	// Without the user key secret a run fails and watches no one.
	if rep := h.Run(ctx); !strings.Contains(rep.Error, "user key") || rep.Joined != 0 {
		t.Errorf("run without the user key secret: %+v, want a user key error and no one joined", rep)
	}
	if page, err := e.users.Delegated(ctx, "", 10); err != nil || len(page) != 0 {
		t.Fatalf("after the refused run: %d delegated users (%v), want none", len(page), err)
	}
	errorsBefore := strings.Count(logs.String(), `"severity":"ERROR"`)
	key := putUserKey(t, w)

	byType := func(evs []events.Event) map[string][]string {
		out := map[string][]string{}
		for _, ev := range evs {
			out[ev.Type] = append(out[ev.Type], ev.EmailAddress)
		}
		for _, v := range out {
			slices.Sort(v)
		}
		return out
	}
	check := func(step string, rep Report, joined, left int, want map[string][]string) {
		t.Helper()
		if rep.Joined != joined || rep.Left != left {
			t.Errorf("%s: joined %d left %d, want %d and %d (report %+v)", step, rep.Joined, rep.Left, joined, left, rep)
		}
		got := byType(e.pull(t, 1500*time.Millisecond))
		for typ, w := range want {
			if !slices.Equal(got[typ], w) {
				t.Errorf("%s: %s events for %v, want %v", step, typ, got[typ], w)
			}
		}
		for typ := range got {
			if _, ok := want[typ]; !ok {
				t.Errorf("%s: unexpected %s events for %v", step, typ, got[typ])
			}
		}
	}

	// eve connected by consent before (both modes on): she stays a consented user.
	must(sb.AddDirectoryUser("eve@example.com", "/Support", false))
	if _, _, err := e.users.Connect(ctx, store.Connection{Key: key("eve@example.com"), Sub: googleauth.Subject("eve@example.com"), Email: "eve@example.com", HistoryID: 1, RenewAt: time.Now().Add(time.Hour), SyncDueAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	// fay has no Gmail licence: a directory user without a mailbox.
	must(sb.Directory.AddUser("fay@example.com", "/Support", false))

	// First run: the org unit's users are watched and announced; the admin, in
	// /IT, is not, and fay is skipped with no error.
	first := e.post(t)
	if first.Skipped != 1 || first.Failed != 0 || strings.Count(logs.String(), `"severity":"ERROR"`) != errorsBefore {
		t.Errorf("first run: %+v; want fay skipped, nothing failed, no error logged", first)
	}
	check("first run", first, 3, 0, map[string][]string{events.UserConnected: {"ann@example.com", "bo@example.com", "cy@example.com"}})
	ann := e.user(t, key("ann@example.com"))
	if !ann.Delegated || ann.Status != store.Active || ann.WatchExpiration.IsZero() || ann.Sub != googleauth.Subject("ann@example.com") {
		t.Fatalf("ann after the first run: %+v, want active, delegated, watched", ann)
	}
	if w, _ := sb.Gmail.Watch("ann@example.com"); !w.Active {
		t.Error("ann's mailbox is not watched")
	}
	if sb.Gmail.Usage("admin@example.com").Units != 0 || sb.Gmail.Usage("eve@example.com").Units != 0 {
		t.Error("the admin's mailbox, outside the org unit, or eve's, connected by consent, was called")
	}
	if eve := e.user(t, key("eve@example.com")); eve.Delegated {
		t.Error("eve, connected by consent, was turned into a delegated user")
	}

	// The same sync announces mail of a delegated user; no refresh token exists.
	d, err := sb.Deliver(gmailapi.Delivery{To: "ann@example.com", Subject: "one", LabelIDs: []string{"INBOX"}})
	must(err)
	res, err := h.d.Syncer.Sync(ctx, ann.Key)
	if err != nil || res.Outcome != gmailsync.Synced || res.Announced != 1 {
		t.Fatalf("sync of ann = %+v, %v; want one message", res, err)
	}
	if evs := e.pull(t, time.Second); len(evs) != 1 || evs[0].MessageID != d.ID {
		t.Errorf("events %+v, want message %s", evs, d.ID)
	}
	if _, err := sb.Secrets.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{
		Name: "projects/" + project + "/secrets/gmail-refresh-" + ann.Key + "/versions/latest",
	}); status.Code(err) != codes.NotFound {
		t.Errorf("ann's refresh token secret: %v, want none", err)
	}

	// Between two runs: a user joins the org unit, another is suspended.
	must(sb.AddDirectoryUser("dan@example.com", "/Support/Tier2", false))
	must(sb.SuspendUser("bo@example.com", true))
	check("second run", e.post(t), 1, 1, map[string][]string{
		events.UserConnected: {"dan@example.com"}, events.UserDisconnect: {"bo@example.com"},
	})
	if bo := e.user(t, key("bo@example.com")); bo.Status != store.Disconnected {
		t.Errorf("bo is %s, want disconnected", bo.Status)
	}
	check("third run, nothing changed", e.post(t), 0, 0, map[string][]string{})

	// The admin withdraws the delegation. Each user's next sync marks it
	// reauth_required once; the run logs one alert line and retries nothing.
	must(sb.WithdrawDelegation(true))
	owed, err := sb.Deliver(gmailapi.Delivery{To: "ann@example.com", Subject: "during", LabelIDs: []string{"INBOX"}})
	must(err)
	for range 2 {
		for _, email := range []string{"ann@example.com", "cy@example.com", "dan@example.com"} {
			res, err := h.d.Syncer.Sync(ctx, key(email))
			if err != nil || (res.Outcome != gmailsync.ReauthRequired && res.Outcome != gmailsync.Inactive) {
				t.Errorf("sync of %s after the withdrawal = %+v, %v", email, res, err)
			}
		}
	}
	before := strings.Count(logs.String(), `"message":"`+DelegationRefusedLog+`"`)
	rep := e.post(t)
	if !rep.DelegationRefused || rep.Error != "" {
		t.Errorf("run after the withdrawal: %+v, want delegation_refused and no error", rep)
	}
	if n := strings.Count(logs.String(), `"message":"`+DelegationRefusedLog+`"`) - before; n != 1 {
		t.Errorf("%d %q lines in one run, want 1", n, DelegationRefusedLog)
	}
	check("after the withdrawal", rep, 0, 0, map[string][]string{
		events.UserReauth: {"ann@example.com", "cy@example.com", "dan@example.com"},
	})

	// Granted again: every user resumes, and what arrived meanwhile is announced.
	grant()
	check("delegation granted again", e.post(t), 3, 0, map[string][]string{
		events.UserConnected: {"ann@example.com", "cy@example.com", "dan@example.com"},
	})
	e.post(t) // the safety net syncs the resumed users
	evs := e.pull(t, 1500*time.Millisecond)
	if len(evs) != 1 || evs[0].MessageID != owed.ID {
		t.Errorf("after resuming: %+v, want only the message sent during the withdrawal (%s)", evs, owed.ID)
	}
}

// newDelegation runs the production renew handler in delegation mode, with
// vars beside the stack's settings, over the sandbox's Workspace tenant:
// an admin in /IT, users in /Support, delegation granted, no user key
// secret yet (putUserKey).
func newDelegation(t *testing.T, vars map[string]string, users ...string) (*env, func(error)) {
	ctx := context.Background()
	w := testenv.NewWorld(t, testenv.Options{Sandbox: sandbox.Options{Domain: "example.com"}})
	sb := w.Sandbox
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(sb.AddDirectoryUser("admin@example.com", "/IT", true))
	for _, u := range users {
		must(sb.AddDirectoryUser(u, "/Support", false))
	}
	must(sb.GrantDelegation(gmailclient.ScopeMetadata, directory.ScopeUsers))
	vs := map[string]string{
		"CONNECT_MODE": "delegation", "DELEGATION_ADMIN": "admin@example.com", "DELEGATION_DOMAIN": "example.com",
		"DELEGATION_ORG_UNIT": "/Support",
	}
	for k, v := range vars {
		vs[k] = v
	}
	vs = w.Env(vs)
	t.Setenv("GCE_METADATA_HOST", vs["GCE_METADATA_HOST"]) // read by the metadata client: not in parallel
	cfg, err := ReadConfig(config.FromMap(vs))
	must(err)
	clients := platform.NewClients(ctx, cfg.Platform)
	h := wire(cfg, clients) // the production wiring
	must(clients.Err())
	h.d.Logger = w.Log
	return &env{World: w, sb: sb, users: w.Store, h: h, logs: w.Logs}, must
}

// putUserKey stores the user key secret and returns how users are keyed:
// a delegated user as a consented one, by Google's account id.
func putUserKey(t *testing.T, w *testenv.World) func(email string) string {
	const userKeySecret = "user-key-secret-for-delegation-tests-0123456789"
	w.PutSecret("user-key-secret", userKeySecret)
	keys, err := store.NewKeyer([]byte(userKeySecret))
	if err != nil {
		t.Fatal(err)
	}
	return func(email string) string { return keys.Key(googleauth.Subject(email)) }
}

// TestNewDelegatedUserIsReconciledOnTime checks that a user the renew run
// joins is due for the safety net RECONCILE_AFTER after joining, not later:
// a new user whose first notifications Gmail drops has its mail announced
// by the first run after that.
func TestNewDelegatedUserIsReconciledOnTime(t *testing.T) {
	const after = 2 * time.Second
	e, must := newDelegation(t, map[string]string{"RECONCILE_AFTER": after.String()}, "gus@example.com")
	key := putUserKey(t, e.World)
	if rep := e.post(t); rep.Joined != 1 || rep.Reconciled != 0 {
		t.Fatalf("first run: %+v, want gus joined and no one reconciled", rep)
	}
	e.pull(t, time.Second) // the connected event
	gus := e.user(t, key("gus@example.com"))
	if due := gus.SyncDueAt.Sub(gus.ConnectedAt); due < after-time.Second || due > after+time.Second {
		t.Errorf("gus is due for the safety net %v after connecting, want RECONCILE_AFTER (%v)", due, after)
	}
	// Gmail drops the notification (no push reaches notify here).
	d, err := e.sb.Deliver(gmailapi.Delivery{To: "gus@example.com", Subject: "first", LabelIDs: []string{"INBOX"}})
	must(err)
	time.Sleep(time.Until(gus.SyncDueAt.Add(100 * time.Millisecond)))
	if rep := e.post(t); rep.Reconciled != 1 {
		t.Errorf("run after RECONCILE_AFTER: %+v, want gus reconciled", rep)
	}
	if evs := e.pull(t, 1500*time.Millisecond); len(evs) != 1 || evs[0].MessageID != d.ID {
		t.Errorf("events %+v, want gus's first message %s", evs, d.ID)
	}
}

// TestDelegationSettingsAreNamedAtOnce checks that delegation mode names
// every missing or bad setting in one error.
func TestDelegationSettingsAreNamedAtOnce(t *testing.T) {
	base := map[string]string{"PROJECT_ID": "p", "GMAIL_TOPIC": "projects/p/topics/g", "EVENTS_TOPIC": "e", "OAUTH_CLIENT_ID": "c"}
	tests := []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"CONNECT_MODE": "delegation"}, []string{"DELEGATION_SERVICE_ACCOUNT: missing", "DELEGATION_ADMIN: missing", "DELEGATION_DOMAIN: missing"}},
		{map[string]string{"CONNECT_MODE": "sideways"}, []string{"CONNECT_MODE"}},
		{map[string]string{"CONNECT_MODE": "both", "DELEGATION_SERVICE_ACCOUNT": "m@p.iam.gserviceaccount.com", "DELEGATION_ADMIN": "a@example.com",
			"DELEGATION_DOMAIN": "example.com", "IAMCREDENTIALS_ENDPOINT": "http://127.0.0.1:9", "DIRECTORY_ENDPOINT": "http://example.com/"},
			[]string{"GCE_METADATA_HOST: missing", "DIRECTORY_ENDPOINT"}},
	}
	for _, tc := range tests {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range tc.env {
			env[k] = v
		}
		_, err := ReadConfig(config.FromMap(env))
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: err = %v, want it to name %q", tc.env, err, w)
			}
		}
	}
}

// TestDelegatedConnectedEventSurvivesAFailedPublish: when the connected
// event of a user the run joins cannot be published, the user is watched
// and recorded all the same, its record owes the event, and a later run
// publishes it once, with the id first tried; a user that leaves first has
// its connected event published just ahead of its disconnected one.
func TestDelegatedConnectedEventSurvivesAFailedPublish(t *testing.T) {
	e, must := newDelegation(t, nil, "ann@example.com", "bo@example.com")
	key := putUserKey(t, e.World)
	ann, bo := key("ann@example.com"), key("bo@example.com")
	published := e.h.d.Events
	down := events.NewPublisher(e.PubSub, "no-such-topic") // every publish fails
	t.Cleanup(down.Stop)

	e.h.d.Events = down
	first := e.post(t)
	if first.Joined != 0 || first.Failed != 2 {
		t.Errorf("run with the events topic gone: %+v, want both joins failed", first)
	}
	if evs := e.pull(t, time.Second); len(evs) != 0 {
		t.Errorf("events published with the topic gone: %+v", evs)
	}
	owed := map[string]string{} // event id by user
	for _, key := range []string{ann, bo} {
		u := e.user(t, key)
		if u.Status != store.Active || !u.Delegated || u.Notice == nil {
			t.Fatalf("user %s after the failed publish: %+v, want active, delegated, owing its connected event", key, u)
		}
		owed[key] = lifecycle.Connected(u).ID
		if !logged(e.logs, `"message":"connected event not published"`, owed[key]) {
			t.Errorf("the failed publish of %s's event %s is not logged", key, owed[key])
		}
	}
	if w, _ := e.sb.Gmail.Watch("ann@example.com"); !w.Active {
		t.Error("ann's mailbox is not watched")
	}

	// The topic is back. bo leaves the org unit before a run sees his
	// notice as old enough to publish: he is announced connected, then
	// disconnected. ann's notice is too young to be taken yet.
	e.h.d.Events = published
	must(e.sb.SuspendUser("bo@example.com", true))
	second := e.post(t)
	evs := e.pull(t, 1500*time.Millisecond)
	if second.Left != 1 || second.Announced != 0 || len(evs) != 2 ||
		evs[0].Type != events.UserConnected || evs[0].ID != owed[bo] || evs[1].Type != events.UserDisconnect || evs[1].User != bo {
		t.Fatalf("second run %+v published %+v; want bo's owed connected event %s, then his disconnected one", second, evs, owed[bo])
	}
	if u := e.user(t, bo); u.Notice != nil || u.Status != store.Disconnected {
		t.Errorf("bo after leaving: %+v, want disconnected, owing nothing", u)
	}

	// Later, a run publishes ann's owed event once, with the same id.
	now := e.h.d.Now
	e.h.d.Now = func() time.Time { return now().Add(noticeGrace + time.Minute) }
	third := e.post(t)
	evs = e.pull(t, 1500*time.Millisecond)
	if third.Announced != 1 || third.Joined != 0 || third.Failed != 0 || len(evs) != 1 ||
		evs[0].Type != events.UserConnected || evs[0].ID != owed[ann] || evs[0].User != ann || evs[0].EmailAddress != "ann@example.com" {
		t.Fatalf("third run %+v published %+v; want ann's connected event %s alone", third, evs, owed[ann])
	}
	if u := e.user(t, ann); u.Notice != nil || u.Status != store.Active {
		t.Errorf("ann after the run: %+v, want active, owing nothing", u)
	}
	if rep := e.post(t); rep.Announced != 0 || rep.Joined != 0 {
		t.Errorf("fourth run %+v, want nothing more", rep)
	}
	if evs := e.pull(t, time.Second); len(evs) != 0 {
		t.Errorf("fourth run published %+v, want nothing", evs)
	}
}

// logged reports whether one line of logs holds every one of parts.
func logged(logs *testenv.LogBuffer, parts ...string) bool {
	for _, line := range strings.Split(logs.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// TestDelegatedUsersKeepTheirKeysAcrossARotation: after the user-key secret
// is rotated ("new old"), a delegated user keyed with the old secret is still
// the same user to the run (neither left nor joined again, so no event),
// while a user new to the directory is keyed with the new secret.
func TestDelegatedUsersKeepTheirKeysAcrossARotation(t *testing.T) {
	ctx := context.Background()
	e, must := newDelegation(t, nil, "hal@example.com", "ivy@example.com")
	const older, newer = "user-key-secret-before-rotation-0123456789ab", "user-key-secret-after-rotation-0123456789abc"
	e.PutSecret("user-key-secret", newer+" "+older)
	was, _ := store.NewKeyer([]byte(older))
	now, _ := store.NewKeyer([]byte(newer))
	hal := googleauth.Subject("hal@example.com")
	_, _, err := e.users.Connect(ctx, store.Connection{Key: was.Key(hal), Sub: hal, Email: "hal@example.com", Delegated: true,
		HistoryID: 1, WatchExpiration: time.Now().Add(6 * 24 * time.Hour), RenewAt: time.Now().Add(time.Hour), SyncDueAt: time.Now().Add(time.Hour)})
	must(err)
	if rep := e.post(t); rep.Joined != 1 || rep.Left != 0 || rep.Error != "" {
		t.Fatalf("run after the rotation: %+v, want ivy joined and no one left", rep)
	}
	if u := e.user(t, was.Key(hal)); u.Status != store.Active || !u.Delegated {
		t.Errorf("hal under the old key: %+v, want still active", u)
	}
	if _, err := e.users.Get(ctx, now.Key(hal)); err == nil {
		t.Error("hal got a second record under the new key")
	}
	if u := e.user(t, now.Key(googleauth.Subject("ivy@example.com"))); u.Status != store.Active {
		t.Errorf("ivy: %+v, want active under the new secret's key", u)
	}
	for _, ev := range e.pull(t, 1500*time.Millisecond) {
		if ev.EmailAddress == "hal@example.com" {
			t.Errorf("hal was announced again: %s", ev.Type)
		}
	}
}
