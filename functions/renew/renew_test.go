package renew

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"golang.org/x/sync/errgroup"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/secrets"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/disconnect"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/lifecycle"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// env is one renew handler wired, as in production, to one test's
// testenv.World.
type env struct {
	*testenv.World
	sb     *sandbox.Sandbox
	users  *store.Store
	gmail  *gmailclient.Factory
	h      *Handler
	logs   *testenv.LogBuffer
	pulled int // events already returned by pull
}

type envOptions struct {
	settings              func(*Settings)
	sandboxUnitsPerMinute int  // the sandbox's project quota; 0: Gmail's default
	alone                 bool // not in parallel with other tests
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	if !o.alone {
		t.Parallel()
	}
	ctx := context.Background()
	w := testenv.NewWorld(t, testenv.Options{Sandbox: sandbox.Options{ProjectUnitsPerMinute: o.sandboxUnitsPerMinute}})
	cfg, err := ReadConfig(config.FromMap(w.Env(map[string]string{"RECHECK_DELAY": "100ms", "GMAIL_BACKOFF": "20ms"})))
	if err != nil {
		t.Fatal(err)
	}
	if o.settings != nil {
		o.settings(&cfg.Run)
	}
	// The emulator answers a project's first queries slowly: ask each once,
	// so that runs under a time budget measure the function, not that.
	now := time.Now()
	for _, field := range []string{store.RenewDue, store.SyncDue} {
		_, err1 := w.Store.Due(ctx, 0, field, now, store.Position{}, 1)
		_, err2 := w.Store.CountDue(ctx, store.AllShards(), field, now)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Store.ReauthWatches(ctx, 0, now, store.Position{}, 1); err != nil {
		t.Fatal(err)
	}
	factory := gmailclient.NewFactory(cfg.Gmail, w.Vault)
	syncer := gmailsync.New(gmailsync.Deps{Users: w.Store, Gmail: factory, Events: w.Publisher, Logger: w.Log}, cfg.Sync)
	h := New(Deps{Users: w.Store, Gmail: factory, Syncer: syncer, Events: w.Publisher, Logger: w.Log,
		Pending: disconnect.New(w.Store, w.Vault, factory, w.Publisher, &http.Client{Timeout: 20 * time.Second}, w.Log)}, cfg.Run)
	return &env{World: w, sb: w.Sandbox, users: w.Store, gmail: factory, h: h, logs: w.Logs}
}

// connect does what the consent flow does for email: a mailbox and account
// in the sandbox, a refresh token in Secret Manager and an active user whose
// cursor is the mailbox's history id. set adjusts the stored user after.
func (e *env) connect(t *testing.T, email string, set func(u *store.User)) store.User {
	t.Helper()
	u, err := e.add(email, time.Time{}, set)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// add is connect for any goroutine; a zero renewAt means the usual one.
func (e *env) add(email string, renewAt time.Time, set func(u *store.User)) (store.User, error) {
	if renewAt.IsZero() {
		now := time.Now()
		renewAt = e.h.set.Watch.NextRenewal(now.Add(7*24*time.Hour), now)
	}
	u, err := e.TryConnect(email, renewAt)
	if err != nil || set == nil {
		return u, err
	}
	return e.users.Update(context.Background(), u.Key, func(u *store.User) error { set(u); return nil })
}

func (e *env) user(t *testing.T, key string) store.User {
	t.Helper()
	u, err := e.users.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// post runs the function once over HTTP, as Cloud Scheduler does.
func (e *env) post(t *testing.T) Report {
	t.Helper()
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/", "application/json", strings.NewReader(`{"ignored": true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatalf("decode report: %v", err)
	}
	if resp.StatusCode != http.StatusOK || rep.Error != "" {
		t.Fatalf("POST / = %d, report %+v", resp.StatusCode, rep)
	}
	return rep
}

// pull returns the events that reached the events topic since the last
// pull, once none arrived for idle.
func (e *env) pull(t *testing.T, idle time.Duration) []events.Event {
	t.Helper()
	all := e.Events.Quiet(idle)
	got := all[e.pulled:]
	e.pulled = len(all)
	return got
}

// counts is the part of a report tests compare.
type counts struct {
	Renewed, Reconciled, Skipped, Failed, ReauthRequired, WatchesStopped, RateLimited int
	Stopped                                                                           bool
	Remaining                                                                         int64
}

func countsOf(r Report) counts {
	return counts{r.Renewed, r.Reconciled, r.Skipped, r.Failed, r.ReauthRequired, r.WatchesStopped, r.RateLimited, r.Stopped, r.Remaining}
}

func TestRenewsWatchesNearExpiryAndLeavesFreshOnesAlone(t *testing.T) {
	e := newEnv(t, envOptions{})
	now := time.Now()
	cases := []struct {
		name       string
		expiresIn  time.Duration
		renewedAgo time.Duration
		wantRenew  bool
	}{
		{"expires within 48h", 47 * time.Hour, 5*24*time.Hour + time.Hour, true},
		{"renewed over 24h ago", 6*24*time.Hour - time.Hour, 25 * time.Hour, true},
		{"lapsed an hour ago", -time.Hour, 7*24*time.Hour + time.Hour, true},
		{"renewed an hour ago", 7*24*time.Hour - time.Hour, time.Hour, false},
		{"renewed 23h ago", 6*24*time.Hour + time.Hour, 23 * time.Hour, false},
		{"expires in 3 days, renewed 2h ago", 3 * 24 * time.Hour, 2 * time.Hour, false},
	}
	before := map[string]store.User{}
	for i, tc := range cases {
		email := fmt.Sprintf("watch%d@example.com", i)
		u := e.connect(t, email, func(u *store.User) {
			u.WatchExpiration, u.LastRenewAt = now.Add(tc.expiresIn), now.Add(-tc.renewedAgo)
			u.RenewAt = e.h.set.Watch.NextRenewal(u.WatchExpiration, u.LastRenewAt)
		})
		before[tc.name] = e.user(t, u.Key) // as stored, to the microsecond
	}

	rep := e.post(t)

	want := counts{Renewed: 3}
	if got := countsOf(rep); got != want {
		t.Errorf("report = %+v, want %+v", got, want)
	}
	if got, want := e.sb.Gmail.Usage("").Units, int64(3*e.h.quota.Units(gmailclient.MethodWatch)); got != want {
		t.Errorf("project units = %d, want %d: one watch per due user and nothing else", got, want)
	}
	for i, tc := range cases {
		email := fmt.Sprintf("watch%d@example.com", i)
		old := before[tc.name]
		got := e.user(t, old.Key)
		calls := e.sb.Gmail.Usage(email).Calls["watch"]
		if !tc.wantRenew {
			if calls != 0 || !got.WatchExpiration.Equal(old.WatchExpiration) || !got.RenewAt.Equal(old.RenewAt) || !got.LastRenewAt.Equal(old.LastRenewAt) {
				t.Errorf("%s: watch calls %d, record %v/%v/%v; want no call and the record unchanged %v/%v/%v", tc.name,
					calls, got.WatchExpiration, got.RenewAt, got.LastRenewAt, old.WatchExpiration, old.RenewAt, old.LastRenewAt)
			}
			continue
		}
		w, err := e.sb.Gmail.Watch(email)
		if err != nil {
			t.Fatal(err)
		}
		if calls != 1 || !w.Active || w.TopicName != e.h.set.Watch.Topic || !slices.Equal(w.LabelIDs, []string{"INBOX"}) || w.LabelFilterBehavior != "INCLUDE" {
			t.Errorf("%s: watch calls %d, sandbox watch %+v; want one call watching INBOX on %s", tc.name, calls, w, e.h.set.Watch.Topic)
		}
		wantRenewAt := e.h.set.Watch.NextRenewal(got.WatchExpiration, got.LastRenewAt)
		if !got.WatchExpiration.Equal(w.Expiration.Truncate(time.Millisecond)) || !got.LastRenewAt.After(now) || !got.RenewAt.Equal(wantRenewAt) {
			t.Errorf("%s: stored expiration %v, lastRenewAt %v, renewAt %v; want %v, after %v, %v", tc.name,
				got.WatchExpiration, got.LastRenewAt, got.RenewAt, w.Expiration, now, wantRenewAt)
		}
	}

	// Every watch is fresh now: a second run spends nothing.
	if got, want := countsOf(e.post(t)), (counts{}); got != want {
		t.Errorf("second run = %+v, want %+v", got, want)
	}
	if got, want := e.sb.Gmail.Usage("").Units, int64(3*e.h.quota.Units(gmailclient.MethodWatch)); got != want {
		t.Errorf("project units after a second run = %d, want still %d", got, want)
	}
	if !e.logs.Contains(`"message":"renew run"`) {
		t.Errorf("no run report in the log:\n%s", e.logs)
	}
}

func TestReconcileAnnouncesEveryDroppedNotificationOnce(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	const email = "dropped@example.com"
	u := e.connect(t, email, nil)
	quiet := e.user(t, e.connect(t, "quiet@example.com", nil).Key) // no mail, not due: must not be touched
	// A live watch, as consent leaves it, whose every notification is dropped.
	svc, err := e.gmail.ForUser(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.h.set.Watch.Watch(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if err := e.sb.Gmail.SetFaults(email, gmailapi.Faults{DropNotifications: 1}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 5 {
		d, err := e.sb.Gmail.Deliver(gmailapi.Delivery{To: email, Subject: fmt.Sprintf("missed %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, d.ID)
	}
	if _, err := e.sb.Gmail.Deliver(gmailapi.Delivery{To: email, Subject: "not watched", LabelIDs: []string{"SPAM"}}); err != nil {
		t.Fatal(err)
	}
	// An hour without a sync makes the user due for the safety net.
	due := func() {
		if _, err := e.users.Update(ctx, u.Key, func(u *store.User) error { u.SyncDueAt = time.Now().Add(-time.Minute); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	due()

	rep := e.post(t)

	if got, want := countsOf(rep), (counts{Reconciled: 1}); got != want {
		t.Errorf("report = %+v, want %+v", got, want)
	}
	w, err := e.sb.Gmail.Watch(email)
	if err != nil {
		t.Fatal(err)
	}
	if w.Notifications.Published != 0 || w.Notifications.Dropped == 0 {
		t.Fatalf("sandbox notifications %+v: want every one dropped", w.Notifications)
	}
	var got []string
	for _, ev := range e.pull(t, 2*time.Second) {
		if ev.Type != events.MessageReceived || ev.User != u.Key || ev.EmailAddress != email {
			t.Errorf("unexpected event %+v", ev)
		}
		got = append(got, ev.MessageID)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("announced %v, want each of %v exactly once", got, want)
	}
	if calls := e.sb.Gmail.Usage("quiet@example.com").Calls; len(calls) != 0 {
		t.Errorf("a user not due was called: %v", calls)
	}
	if after := e.user(t, quiet.Key); !after.SyncDueAt.Equal(quiet.SyncDueAt) {
		t.Errorf("a user not due was changed: syncDueAt %v, was %v", after.SyncDueAt, quiet.SyncDueAt)
	}

	// The next safety-net sync finds nothing new and announces nothing again.
	due()
	if got, want := countsOf(e.post(t)), (counts{Reconciled: 1}); got != want {
		t.Errorf("second run = %+v, want %+v", got, want)
	}
	if again := e.pull(t, 2*time.Second); len(again) != 0 {
		t.Errorf("second run announced %d events again: %+v", len(again), again)
	}
}

func TestRevokedUsersAreMarkedOnceAndGmailErrorsFailOnlyTheirUsers(t *testing.T) {
	e := newEnv(t, envOptions{})
	past := func(u *store.User) { u.RenewAt = time.Now().Add(-time.Minute) }
	kinds := map[string]string{ // email -> what Gmail does for it
		"ok1@example.com": "ok", "ok2@example.com": "ok", "ok3@example.com": "ok",
		"revoked1@example.com": "revoked", "revoked2@example.com": "revoked",
		"broken1@example.com": "500", "broken2@example.com": "500",
	}
	keys := map[string]string{}
	for email, kind := range kinds {
		keys[email] = e.connect(t, email, past).Key
		switch kind {
		case "revoked":
			e.sb.Revoke(email)
		case "500":
			if err := e.sb.Gmail.SetFaults(email, gmailapi.Faults{ErrorRate: 1, ErrorCodes: []int{500}, ErrorMethods: []string{gmailapi.WatchMethod}}); err != nil {
				t.Fatal(err)
			}
		}
	}

	runs := []struct {
		name string
		want counts
	}{
		{"first run", counts{Renewed: 3, Failed: 2, ReauthRequired: 2, Remaining: 2}},
		// The revoked users are no longer active, so not due: no second event.
		// The broken ones stay due and fail again; the others are fresh.
		{"second run", counts{Failed: 2, Remaining: 2}},
	}
	for _, run := range runs {
		if got := countsOf(e.post(t)); got != run.want {
			t.Errorf("%s: report %+v, want %+v", run.name, got, run.want)
		}
	}

	reauthEvents := map[string]int{}
	for _, ev := range e.pull(t, 2*time.Second) {
		if ev.Type == events.UserReauth {
			reauthEvents[ev.EmailAddress]++
		}
	}
	if want := map[string]int{"revoked1@example.com": 1, "revoked2@example.com": 1}; !mapsEqual(reauthEvents, want) {
		t.Errorf("reauth_required events per user = %v, want %v", reauthEvents, want)
	}
	for email, kind := range kinds {
		u := e.user(t, keys[email])
		wantStatus := map[string]string{"ok": store.Active, "revoked": store.ReauthRequired, "500": store.Active}[kind]
		if u.Status != wantStatus || (kind == "revoked") == u.ReauthSince.IsZero() {
			t.Errorf("%s (%s): status %s reauthSince %v, want %s", email, kind, u.Status, u.ReauthSince, wantStatus)
		}
		if kind == "500" && !u.RenewAt.Before(time.Now()) {
			t.Errorf("%s: renewAt moved to %v after failed renewals; want it still due", email, u.RenewAt)
		}
	}
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, `"watch renewal failed"`) {
			if !strings.Contains(line, `"severity":"ERROR"`) || !(strings.Contains(line, keys["broken1@example.com"]) || strings.Contains(line, keys["broken2@example.com"])) {
				t.Errorf("renewal failure logged as %s; want ERROR naming a broken user", line)
			}
		}
	}
	if n := strings.Count(e.logs.String(), `"watch renewal failed"`); n != 4 {
		t.Errorf("%d \"watch renewal failed\" lines, want 4 (2 users x 2 runs)", n)
	}
}

// TestOwedConnectedEventsGoOutOnceAndInOrder: users whose connection was
// recorded but whose connected event could not be published. A run
// publishes an active user's owed event once, with the id of the notice,
// once it is older than noticeGrace, and leaves younger ones to the connect
// still publishing it; a user whose token is refused first has it published
// just ahead of its reauth_required event; a disconnected user's notice is
// dropped, as a connected event after the disconnected one would mislead.
func TestOwedConnectedEventsGoOutOnceAndInOrder(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	// owe connects u again, as a connect whose publish failed leaves it.
	owe := func(u store.User) store.User {
		t.Helper()
		v, _, err := e.users.Connect(ctx, store.Connection{Key: u.Key, Email: u.Email, Labels: u.Labels, LabelFilter: u.LabelFilter,
			HistoryID: u.Cursor, WatchExpiration: u.WatchExpiration, RenewAt: u.RenewAt})
		if err != nil || v.Notice == nil {
			t.Fatalf("connect %s again: %+v, %v", u.Email, v.Notice, err)
		}
		return v
	}
	ann := owe(e.connect(t, "ann@example.com", nil))
	rev := owe(e.connect(t, "rev@example.com", func(u *store.User) { u.RenewAt = time.Now().Add(-time.Minute) }))
	e.sb.Revoke("rev@example.com")
	gone := owe(e.connect(t, "gone@example.com", nil))
	if _, err := e.users.Update(ctx, gone.Key, func(u *store.User) error { u.Status = store.Disconnected; return nil }); err != nil {
		t.Fatal(err)
	}

	// Young notices are left alone; rev's goes out with its refusal.
	first := e.post(t)
	evs := e.pull(t, 1500*time.Millisecond)
	if first.Announced != 0 || first.ReauthRequired != 1 || len(evs) != 2 ||
		evs[0].Type != events.UserConnected || evs[0].ID != lifecycle.Connected(rev).ID || evs[1].Type != events.UserReauth || evs[1].User != rev.Key {
		t.Fatalf("first run %+v published %+v; want rev's owed connected event %s, then its reauth_required one", first, evs, lifecycle.Connected(rev).ID)
	}
	if u := e.user(t, ann.Key); u.Notice == nil {
		t.Error("a young notice was cleared without being published")
	}

	now := e.h.d.Now
	e.h.d.Now = func() time.Time { return now().Add(noticeGrace + time.Minute) }
	second := e.post(t)
	evs = e.pull(t, 1500*time.Millisecond)
	want := lifecycle.Connected(ann)
	if second.Announced != 1 || len(evs) != 1 || evs[0].Type != events.UserConnected || evs[0].ID != want.ID ||
		evs[0].Time != want.Time || evs[0].HistoryID != want.HistoryID || evs[0].EmailAddress != "ann@example.com" {
		t.Fatalf("second run %+v published %+v; want ann's owed event %+v alone", second, evs, want)
	}
	for _, u := range []store.User{ann, rev, gone} {
		if got := e.user(t, u.Key); got.Notice != nil {
			t.Errorf("%s still owes %+v", u.Email, got.Notice)
		}
	}
	if got := e.user(t, gone.Key); got.Status != store.Disconnected {
		t.Errorf("gone is %s, want still disconnected", got.Status)
	}
	if rep := e.post(t); rep.Announced != 0 {
		t.Errorf("third run announced %d, want none", rep.Announced)
	}
	if evs := e.pull(t, time.Second); len(evs) != 0 {
		t.Errorf("third run published %+v, want nothing", evs)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestStopsWatchesOfUsersLongInReauth(t *testing.T) {
	e := newEnv(t, envOptions{settings: func(s *Settings) { s.ReauthStopAfter = 24 * time.Hour }})
	ctx := context.Background()
	now := time.Now()
	reauth := func(since, expiresIn time.Duration) func(*store.User) {
		return func(u *store.User) {
			u.Status, u.ReauthSince, u.WatchExpiration = store.ReauthRequired, now.Add(-since), now.Add(expiresIn)
		}
	}
	// A user whose token still works (marked for another reason) has a live watch Gmail can stop.
	live := e.connect(t, "live@example.com", nil)
	svc, err := e.gmail.ForUser(ctx, live)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.h.set.Watch.Watch(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if _, err := e.users.Update(ctx, live.Key, func(u *store.User) error { reauth(48*time.Hour, 5*24*time.Hour)(u); return nil }); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		email       string
		set         func(*store.User)
		revoke      bool
		wantStopped bool // the record says the watch is no longer live
		wantCalls   int64
	}{
		{"live@example.com", nil, false, true, 1},
		{"revoked@example.com", reauth(48*time.Hour, 5*24*time.Hour), true, true, 0}, // Gmail lets nothing be done: left to lapse
		{"recent@example.com", reauth(time.Hour, 6*24*time.Hour), true, false, 0},
		{"lapsed@example.com", reauth(8*24*time.Hour, -time.Hour), true, false, 0},
		{"active@example.com", nil, false, false, 0},
	}
	before := map[string]store.User{"live@example.com": e.user(t, live.Key)}
	for _, tc := range cases {
		if tc.email == "live@example.com" {
			continue
		}
		before[tc.email] = e.user(t, e.connect(t, tc.email, tc.set).Key)
		if tc.revoke {
			e.sb.Revoke(tc.email)
		}
	}

	if got, want := countsOf(e.post(t)), (counts{WatchesStopped: 2}); got != want {
		t.Errorf("report = %+v, want %+v", got, want)
	}
	for _, tc := range cases {
		old, got := before[tc.email], e.user(t, before[tc.email].Key)
		stopped := !got.WatchExpiration.Equal(old.WatchExpiration) && !got.WatchExpiration.After(time.Now())
		calls := e.sb.Gmail.Usage(tc.email).Calls["stop"]
		if stopped != tc.wantStopped || calls != tc.wantCalls || got.Status != old.Status {
			t.Errorf("%s: recorded stopped=%v (expiration %v, was %v), stop calls %d, status %s; want stopped=%v, %d calls, status %s",
				tc.email, stopped, got.WatchExpiration, old.WatchExpiration, calls, got.Status, tc.wantStopped, tc.wantCalls, old.Status)
		}
	}
	if w, err := e.sb.Gmail.Watch("live@example.com"); err != nil || w.Active {
		t.Errorf("live@example.com's watch after stop: %+v, %v; want inactive", w, err)
	}
	// Handled once: a second run tries nothing.
	if got, want := countsOf(e.post(t)), (counts{}); got != want {
		t.Errorf("second run = %+v, want %+v", got, want)
	}
	if got := e.sb.Gmail.Usage("").Calls["stop"]; got != 1 {
		t.Errorf("stop calls after two runs = %d, want 1", got)
	}
}

func TestSlowsDownOn429WithoutARetryStorm(t *testing.T) {
	// The configured quota is wrong: Gmail allows far less, 10 watches a
	// minute, so most of a run's calls meet 429.
	e := newEnv(t, envOptions{
		sandboxUnitsPerMinute: 1_000,
		settings: func(s *Settings) {
			s.UnitsPerMinute, s.QuotaShare = 240_000, 1 // ~40 watches a second
			s.Concurrency = 4
		},
	})
	const n = 30 // however a minute boundary splits their calls, one side meets 429s
	seedUsers(t, e, n)
	ceiling := e.h.limiter.rate()

	rep := e.post(t)

	usage := e.sb.Gmail.Usage("")
	t.Logf("report %+v; sandbox calls %v, 429s %d", rep, usage.Calls, usage.RateLimited)
	got := counts{Renewed: int(usage.Calls["watch"]), Skipped: int(usage.RateLimited), RateLimited: int(usage.RateLimited), Remaining: usage.RateLimited}
	if rep.RateLimited == 0 || countsOf(rep) != got {
		t.Errorf("report %+v; want it to match the sandbox, %+v, with some 429s", countsOf(rep), got)
	}
	if attempts := usage.Calls["watch"] + usage.RateLimited; attempts != n {
		t.Errorf("%d watch attempts for %d users, want one each: no retries", attempts, n)
	}
	if rep.UnitsPerSecond >= ceiling {
		t.Errorf("limiter rate %v units/s after 429s, want below its ceiling %v", rep.UnitsPerSecond, ceiling)
	}
}

// seedUsers connects n users due for renewal: sandbox mailboxes and refresh
// tokens in Secret Manager as consent leaves them, and user documents as
// store.Connect writes them, but with a BulkWriter instead of a transaction
// each, which the emulator would take minutes over.
func seedUsers(t *testing.T, e *env, n int) {
	t.Helper()
	// Seeding thousands of tokens is not what is measured: Secret Manager's
	// project write quota is lifted while it runs.
	e.sb.Secrets.SetProjectWriteLimit(0)
	defer e.sb.Secrets.SetProjectWriteLimit(secrets.ProjectWritesPerMinute)
	ctx := context.Background()
	now := time.Now()
	bw := e.Firestore.BulkWriter(ctx)
	var g errgroup.Group
	g.SetLimit(32)
	var mu sync.Mutex
	var jobs []*firestore.BulkWriterJob
	for i := range n {
		g.Go(func() error {
			email := fmt.Sprintf("user%05d@example.com", i)
			rt, err := e.sb.Connect(email, gmailclient.ScopeMetadata)
			if err != nil {
				return err
			}
			key := store.Key(email)
			if err := e.Vault.PutRefreshToken(ctx, key, rt); err != nil {
				return err
			}
			h, err := e.sb.Gmail.HistoryID(email)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			j, err := bw.Set(e.Firestore.Collection("users").Doc(key), store.User{
				Email: email, Status: store.Active, Cursor: int64(h), Labels: []string{"INBOX"}, LabelFilter: "include",
				WatchExpiration: now.Add(6 * 24 * time.Hour), RenewAt: now.Add(-time.Minute), SyncDueAt: now.Add(time.Hour),
				LastRenewAt: now.Add(-25 * time.Hour), ConnectedAt: now.Add(-25 * time.Hour), UpdatedAt: now,
			})
			jobs = append(jobs, j)
			return err
		})
	}
	err := g.Wait()
	bw.End()
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if _, err := j.Results(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRunOver2000UsersKeepsToQuotaAndBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 users take about a minute")
	}
	const (
		n              = 2000
		unitsPerMinute = 240_000 // 40 watches a second
	)
	e := newEnv(t, envOptions{
		alone:                 true,
		sandboxUnitsPerMinute: unitsPerMinute, // Gmail answers 429 beyond it
		settings: func(s *Settings) {
			s.UnitsPerMinute, s.QuotaShare = unitsPerMinute, 1 // the whole quota: this test is about keeping to it
			s.Concurrency = 32
			s.RunBudget = 8 * time.Second
		},
	})
	start := time.Now()
	seedUsers(t, e, n)
	t.Logf("seeded %d users in %v", n, time.Since(start).Round(time.Millisecond))
	if err := e.sb.Gmail.SetFaults("", gmailapi.Faults{Latency: gmailapi.Duration(50 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}

	began := time.Now()
	first := e.post(t)
	t.Logf("first run: %+v", first)
	if !first.Stopped || first.Renewed == 0 || first.Renewed >= n || first.Failed != 0 || first.Remaining != int64(n-first.Renewed) {
		t.Errorf("first run %+v: want it stopped by its budget partway, with the rest remaining", countsOf(first))
	}
	if !logged(e.logs, `"message":"renew run"`, fmt.Sprintf(`"remaining":%d`, first.Remaining)) {
		t.Errorf("the stopped run did not log its remaining count, which the renew_work_left alert matches")
	}

	e.h.set.RunBudget = 2 * time.Minute
	second := e.post(t)
	elapsed := time.Since(began)
	t.Logf("second run: %+v", second)
	if second.Stopped || second.Remaining != 0 || second.Failed != 0 || first.Renewed+second.Renewed != n {
		t.Errorf("second run %+v after first %+v: want it to renew the remaining %d", countsOf(second), countsOf(first), n-first.Renewed)
	}

	// Gmail's quota counts the 60 seconds before each call, which two runs
	// this short fill only partly. So also hold the units to what the
	// quota allows in any stretch as long as the runs took: a second of it
	// at once plus the rest of a minute's, spread. A slower machine only
	// loosens this bound.
	usage := e.sb.Gmail.Usage("")
	allowed := unitsPerMinute/60 + float64(unitsPerMinute-unitsPerMinute/60)*elapsed.Minutes()
	t.Logf("sandbox: %d watch calls, %d units, %d rate-limited over %v of runs; the quota allows %.0f units in that time (%d a minute)",
		usage.Calls["watch"], usage.Units, usage.RateLimited, elapsed.Round(time.Millisecond), allowed, unitsPerMinute)
	if usage.RateLimited != 0 || usage.Calls["watch"] != n || usage.Units != int64(n*e.h.quota.Units(gmailclient.MethodWatch)) {
		t.Errorf("sandbox usage %+v: want exactly %d watch calls and no 429", usage, n)
	}
	if float64(usage.Units) > allowed {
		t.Errorf("%d units spent in %v: more than the quota's %.0f", usage.Units, elapsed, allowed)
	}
}

func TestHTTP(t *testing.T) {
	e := newEnv(t, envOptions{})
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	for _, tc := range []struct {
		method, body string
		wantStatus   int
		wantAllow    string
	}{
		{http.MethodPost, "", http.StatusOK, ""},
		{http.MethodPost, "not json at all \x00", http.StatusOK, ""}, // the body is ignored
		{http.MethodGet, "", http.StatusMethodNotAllowed, "POST"},
		{http.MethodPut, "{}", http.StatusMethodNotAllowed, "POST"},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+"/", strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus || resp.Header.Get("Allow") != tc.wantAllow || err != nil ||
			resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %q: status %d, Allow %q, body %v (%v); want %d, Allow %q, JSON",
				tc.method, tc.body, resp.StatusCode, resp.Header.Get("Allow"), body, err, tc.wantStatus, tc.wantAllow)
		}
		if _, ok := body["renewed"]; ok != (tc.wantStatus == http.StatusOK) {
			t.Errorf("%s: body %v; want a report only from a run", tc.method, body)
		}
	}
	if n := strings.Count(e.logs.String(), `"message":"renew run"`); n != 2 {
		t.Errorf("%d run reports logged, want 2 (one per POST)", n)
	}
}

// TestLimiterTakesRenewsShareOfTheProjectQuota: the limiter paces to
// RENEW_QUOTA_SHARE of QUOTA_UNITS_PER_MINUTE, a second of it at once and
// the rest spread over the minute, at the selected profile's watch cost.
func TestLimiterTakesRenewsShareOfTheProjectQuota(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env       map[string]string
		wantBurst int
		wantRate  float64 // units per second
	}{
		{map[string]string{}, 5_000, (300_000 - 5_000) / 60.0}, // a quarter of 1,200,000
		{map[string]string{"RENEW_QUOTA_SHARE": "0.5", "QUOTA_UNITS_PER_MINUTE": "600000"}, 5_000, (300_000 - 5_000) / 60.0},
		{map[string]string{"RENEW_QUOTA_SHARE": "1", "QUOTA_UNITS_PER_MINUTE": "60000"}, 1_000, (60_000 - 1_000) / 60.0},
		// A small share still holds one watch at once.
		{map[string]string{"RENEW_QUOTA_SHARE": "0.01", "QUOTA_UNITS_PER_MINUTE": "6000", "GMAIL_QUOTA_PROFILE": "legacy"}, 100, 30 / 60.0},
	} {
		env := map[string]string{"PROJECT_ID": "p", "EVENTS_TOPIC": "events", "GMAIL_TOPIC": "projects/p/topics/gmail", "OAUTH_CLIENT_ID": "c"}
		maps.Copy(env, tc.env)
		cfg, err := ReadConfig(config.FromMap(env))
		if err != nil {
			t.Fatal(err)
		}
		h := New(Deps{Gmail: gmailclient.NewFactory(cfg.Gmail, nil)}, cfg.Run)
		if got := h.limiter.lim.Burst(); got != tc.wantBurst {
			t.Errorf("%v: burst %d, want %d", tc.env, got, tc.wantBurst)
		}
		if got := h.limiter.rate(); math.Abs(got-tc.wantRate) > 1e-9 {
			t.Errorf("%v: rate %v units/s, want %v", tc.env, got, tc.wantRate)
		}
	}
}

func TestConfigurationErrorsNameEverySetting(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"nothing set", map[string]string{}, []string{"PROJECT_ID: missing", "EVENTS_TOPIC: missing", "GMAIL_TOPIC: missing", "OAUTH_CLIENT_ID: missing"}},
		{"bad values", map[string]string{
			"PROJECT_ID": "p", "EVENTS_TOPIC": "events", "GMAIL_TOPIC": "gmail", "OAUTH_CLIENT_ID": "c",
			"QUOTA_UNITS_PER_MINUTE": "lots", "RUN_BUDGET": "-1m", "REAUTH_STOP_AFTER": "week", "RENEW_CONCURRENCY": "0",
			"SECRETMANAGER_ENDPOINT": "", "RENEW_BEFORE": "0s", "RENEW_QUOTA_SHARE": "1.5", "GMAIL_QUOTA_PROFILE": "standard-2025",
		}, []string{"GMAIL_TOPIC:", "QUOTA_UNITS_PER_MINUTE:", "RENEW_QUOTA_SHARE: 1.5 is outside 0.01..1", "GMAIL_QUOTA_PROFILE:", "RUN_BUDGET:", "REAUTH_STOP_AFTER:", "RENEW_CONCURRENCY:", "RENEW_BEFORE:"}},
	} {
		_, err := ReadConfig(config.FromMap(tc.env))
		if err == nil {
			t.Errorf("%s: ReadConfig = nil error; want one", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %q", tc.name, err, w)
			}
		}
	}
}

func TestRegisteredFunctionRunsFromTheEnvironment(t *testing.T) {
	e := newEnv(t, envOptions{alone: true}) // t.Setenv: not in parallel
	for k, v := range e.Env(nil) {
		t.Setenv(k, v)
	}
	u := e.connect(t, "env@example.com", func(u *store.User) { u.RenewAt = time.Now().Add(-time.Minute) })
	url := testenv.ServeRegistered(t, "Renew")
	resp, err := http.Post(url+"/", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST / = %d, %v", resp.StatusCode, err)
	}
	if got, want := countsOf(rep), (counts{Renewed: 1}); got != want {
		t.Errorf("report %+v, want %+v", got, want)
	}
	if got := e.user(t, u.Key); !got.RenewAt.After(time.Now()) {
		t.Errorf("renewAt %v after the run, want in the future", got.RenewAt)
	}
}
