package gmailsync_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

func TestPushAnnouncesEachNewMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		messages int
	}{
		{"one message", 1},
		{"burst of ten", 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, fast)
			const email = "Alice@Example.com"
			before := e.connect(email, []string{"INBOX"}, "include")
			var delivered []gmailapi.Delivered
			for i := range tc.messages {
				delivered = append(delivered, e.deliver(email, fmt.Sprintf("hello %d", i)))
			}
			last := delivered[len(delivered)-1]

			res, err := e.syncer.OnPush(context.Background(), email, int64(last.HistoryID))
			if err != nil {
				t.Fatalf("OnPush: %v", err)
			}
			evs := e.events(tc.messages)
			wantExactlyOnce(t, evs, delivered...)
			if res.Outcome != gmailsync.Synced || res.Announced != tc.messages || res.FromHistoryID != before.Cursor || res.ToHistoryID < int64(last.HistoryID) {
				t.Errorf("result: got %+v, want synced, %d announced, from %d to >= %d", res, tc.messages, before.Cursor, last.HistoryID)
			}
			usage := e.sb.Gmail.Usage(email)
			if int64(res.Units) != usage.Units || int64(res.Calls) != e.calls(email) {
				t.Errorf("counted %d calls, %d units; the sandbox counted %d calls, %d units", res.Calls, res.Units, e.calls(email), usage.Units)
			}
			if got, want := usage.Calls["messages.get"], int64(tc.messages); got != want {
				t.Errorf("messages.get calls: got %d, want %d", got, want)
			}

			u := e.user(email)
			if u.Cursor != res.ToHistoryID || u.Lease != (store.Lease{}) || u.LastSyncAt.IsZero() ||
				u.SyncDueAt.Before(time.Now().Add(50*time.Minute)) {
				t.Errorf("user after sync: cursor %d (want %d), lease %+v (want none), lastSyncAt %v, syncDueAt %v (want ~1h ahead)",
					u.Cursor, res.ToHistoryID, u.Lease, u.LastSyncAt, u.SyncDueAt)
			}
			ids := make([]string, len(delivered)) // markers are keyed by event id
			for i, d := range delivered {
				ids[i] = events.ID(events.MessageReceived, u.Key, d.ID)
			}
			marked, err := e.store.Announced(context.Background(), u.Key, ids)
			if err != nil || len(marked) != len(ids) {
				t.Errorf("markers: got %d of %d (%v)", len(marked), len(ids), err)
			}

			if tc.messages == 1 {
				got := evs[0]
				d := delivered[0]
				key := store.Key(email)
				want := events.Event{
					Version: events.Version, Type: events.MessageReceived, ID: events.ID(events.MessageReceived, key, d.ID),
					User: key, EmailAddress: "alice@example.com", MessageID: d.ID, ThreadID: d.ThreadID, HistoryID: d.HistoryID,
					LabelIDs: []string{"INBOX", "UNREAD"}, From: "Ann Sender <ann@example.net>", To: email, Subject: "hello 0",
					Snippet: "body of hello 0",
				}
				if _, err := time.Parse(time.RFC1123Z, got.Date); err != nil {
					t.Errorf("Date %q is not the message's Date header: %v", got.Date, err)
				}
				if _, err := time.Parse(time.RFC3339Nano, got.Time); err != nil || got.InternalDate <= 0 {
					t.Errorf("time %q / internalDate %d: want RFC 3339 and > 0", got.Time, got.InternalDate)
				}
				got.Date, got.Time, got.InternalDate = "", "", 0
				if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
					t.Errorf("event:\n got %+v\nwant %+v", got, want)
				}
			}

			lines := jsonLines(t, e.logs.String())
			var syncLine map[string]any
			for _, l := range lines {
				if l["message"] == "sync" {
					syncLine = l
				}
			}
			for _, k := range []string{"user", "fromHistoryId", "toHistoryId", "messages", "calls", "units", "durationMs"} {
				if _, ok := syncLine[k]; !ok {
					t.Errorf("sync log line %v lacks %q", syncLine, k)
				}
			}
			if syncLine["severity"] != "INFO" || syncLine["messages"] != float64(tc.messages) || syncLine["user"] != store.Key(email) {
				t.Errorf("sync log line: got %v, want INFO with user key and messages %d", syncLine, tc.messages)
			}
			if log := strings.ToLower(e.logs.String()); strings.Contains(log, "alice@example.com") || strings.Contains(log, "ya29.") || strings.Contains(log, "1//") {
				t.Errorf("log holds an address or a token:\n%s", log)
			}
		})
	}
}

// watchCursor samples the user's cursor until the returned function is
// called, and fails the test if it ever moved backwards.
func (e *env) watchCursor(email string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last int64
		for ctx.Err() == nil {
			u, err := e.store.Get(ctx, store.Key(email))
			if err == nil {
				if u.Cursor < last {
					e.t.Errorf("cursor moved backwards: %d after %d", u.Cursor, last)
				}
				last = u.Cursor
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() { cancel(); <-done }
}

func TestRepeatedReorderedAndOldPushesAnnounceOnce(t *testing.T) {
	t.Parallel()
	const email = "bob@example.com"
	for _, tc := range []struct {
		name     string
		messages int
		// pushes sends the scenario's pushes given the delivered history
		// ids (and the cursor before), returning their outcomes in order.
		pushes func(e *env, cursor int64, h []uint64) []gmailsync.Result
		want   func(outcomes []string) error
	}{
		{
			name: "same push five times concurrently", messages: 3,
			pushes: func(e *env, _ int64, h []uint64) []gmailsync.Result {
				out := make([]gmailsync.Result, 5)
				var wg sync.WaitGroup
				for i := range out {
					wg.Go(func() { out[i] = e.push(email, h[len(h)-1]) })
				}
				wg.Wait()
				return out
			},
			want: func(o []string) error {
				slices.Sort(o)
				synced := slices.Index(o, gmailsync.Synced)
				for _, x := range o {
					if x != gmailsync.Synced && x != gmailsync.Busy && x != gmailsync.Stale {
						return fmt.Errorf("outcome %q", x)
					}
				}
				if synced < 0 {
					return errors.New("no push synced")
				}
				return nil
			},
		},
		{
			name: "pushes in reverse order", messages: 4,
			pushes: func(e *env, _ int64, h []uint64) []gmailsync.Result {
				var out []gmailsync.Result
				for _, id := range slices.Backward(h) {
					out = append(out, e.push(email, id))
				}
				return out
			},
			want: wantOutcomes(gmailsync.Synced, gmailsync.Stale, gmailsync.Stale, gmailsync.Stale),
		},
		{
			name: "push for an old history id", messages: 2,
			pushes: func(e *env, cursor int64, h []uint64) []gmailsync.Result {
				return []gmailsync.Result{e.push(email, h[1]), e.push(email, h[0]), e.push(email, uint64(cursor)), e.push(email, 1)}
			},
			want: wantOutcomes(gmailsync.Synced, gmailsync.Stale, gmailsync.Stale, gmailsync.Stale),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, fast)
			u := e.connect(email, nil, "")
			var delivered []gmailapi.Delivered
			var ids []uint64
			for i := range tc.messages {
				d := e.deliver(email, fmt.Sprint("m", i))
				delivered, ids = append(delivered, d), append(ids, d.HistoryID)
			}
			stop := e.watchCursor(email)
			results := tc.pushes(e, u.Cursor, ids)
			stop()

			var outcomes []string
			for _, r := range results {
				outcomes = append(outcomes, r.Outcome)
				if r.Outcome == gmailsync.Stale && (r.Calls != 0 || r.Units != 0) {
					t.Errorf("stale push made %d Gmail calls", r.Calls)
				}
			}
			if err := tc.want(slices.Clone(outcomes)); err != nil {
				t.Errorf("outcomes %v: %v", outcomes, err)
			}
			// Stale pushes cost nothing: the sandbox saw only the one sync's calls.
			if got, want := e.sb.Gmail.Usage(email).Calls["history.list"], int64(1); got != want {
				t.Errorf("history.list calls: got %d, want %d (outcomes %v)", got, want, outcomes)
			}
			wantExactlyOnce(t, e.events(tc.messages), delivered...)
			if got := e.user(email).Cursor; got < int64(ids[len(ids)-1]) {
				t.Errorf("cursor %d is behind the last history id %d", got, ids[len(ids)-1])
			}
		})
	}
}

func wantOutcomes(want ...string) func([]string) error {
	return func(got []string) error {
		if !slices.Equal(got, want) {
			return fmt.Errorf("want %v", want)
		}
		return nil
	}
}

// A push arriving while a sync runs is recorded as pending and the holder
// syncs again before letting go.
func TestPushWhileLeaseHeldIsPickedUpByHolder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "carol@example.com"
	e.connect(email, nil, "")
	if err := e.sb.Gmail.SetFaults(email, gmailapi.Faults{MethodLatency: map[string]gmailapi.Duration{"messages.get": gmailapi.Duration(700 * time.Millisecond)}}); err != nil {
		t.Fatal(err)
	}
	first := e.deliver(email, "first")
	stop := e.watchCursor(email)
	holder := make(chan gmailsync.Result)
	go func() { holder <- e.push(email, first.HistoryID) }()
	for e.sb.Gmail.Usage(email).Calls["messages.get"] == 0 { // the holder has read history and is fetching
		time.Sleep(5 * time.Millisecond)
	}
	second := e.deliver(email, "second")
	busy, err := e.syncer.OnPush(context.Background(), email, int64(second.HistoryID))
	if err != nil {
		t.Fatal(err)
	}
	mid := e.user(email)
	if busy.Outcome != gmailsync.Busy || busy.Calls != 0 || mid.PendingHistoryID != int64(second.HistoryID) ||
		mid.SyncDueAt.After(mid.Lease.Until) {
		t.Errorf("push during a sync: got %+v, pending %d, syncDueAt %v, lease until %v; want busy, no calls, pending %d, due by lease end",
			busy, mid.PendingHistoryID, mid.SyncDueAt, mid.Lease.Until, second.HistoryID)
	}
	res := <-holder
	stop()
	if res.Outcome != gmailsync.Synced || res.Announced != 2 || res.Rounds != 2 || res.ToHistoryID < int64(second.HistoryID) {
		t.Errorf("holder: got %+v, want synced, 2 announced in 2 rounds, cursor >= %d", res, second.HistoryID)
	}
	wantExactlyOnce(t, e.events(2), first, second)
	if u := e.user(email); u.Lease != (store.Lease{}) {
		t.Errorf("lease after the holder finished: %+v, want released", u.Lease)
	}
}

// A holder that died leaves its lease to lapse; the pending push is then
// synced by the safety net (the renew function's Sync).
func TestLeaseOfDeadHolderLapses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "dan@example.com"
	e.connect(email, nil, "")
	key := store.Key(email)
	until := time.Now().Add(1500 * time.Millisecond).Truncate(time.Millisecond)
	read, err := e.store.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := e.store.Claim(context.Background(), read, store.Lease{Holder: "crashed-instance", Until: until}, 0, time.Now()); !ok || err != nil {
		t.Fatalf("claim for the instance that will crash: %v, %v", ok, err)
	}
	d := e.deliver(email, "while the holder is dead")
	res := e.push(email, d.HistoryID)
	u := e.user(email)
	if res.Outcome != gmailsync.Busy || e.calls(email) != 0 || u.PendingHistoryID != int64(d.HistoryID) || u.SyncDueAt.After(until) {
		t.Fatalf("push under a dead lease: got %+v, %d Gmail calls, pending %d, due %v; want busy, 0 calls, pending %d, due by %v",
			res, e.calls(email), u.PendingHistoryID, u.SyncDueAt, d.HistoryID, until)
	}
	time.Sleep(time.Until(until))
	res, err = e.syncer.Sync(context.Background(), key)
	if err != nil || res.Outcome != gmailsync.Synced || res.Announced != 1 || res.Pending != 0 {
		t.Fatalf("Sync after the lease lapsed: got %+v, %v; want synced, 1 announced, nothing pending", res, err)
	}
	wantExactlyOnce(t, e.events(1), d)
}

func TestGmailErrorsAreRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "erin@example.com"
	e.connect(email, nil, "")
	err := e.sb.Gmail.SetFaults(email, gmailapi.Faults{Seed: 7, ErrorRate: 0.3, ErrorCodes: []int{429, 500},
		ErrorMethods: []string{"history.list", "messages.get"}})
	if err != nil {
		t.Fatal(err)
	}
	var delivered []gmailapi.Delivered
	for i := range 12 {
		d := e.deliver(email, fmt.Sprint("flaky ", i))
		delivered = append(delivered, d)
		if i%3 == 2 { // a push per few messages, each redelivered on error
			e.push(email, d.HistoryID)
		}
	}
	wantExactlyOnce(t, e.events(len(delivered)), delivered...)
	if u := e.sb.Gmail.Usage(email); u.InjectedErrors == 0 {
		t.Errorf("no error was injected (usage %+v): the test proves nothing", u)
	}
}

func TestPersistentGmailErrorIsReturnedForRedelivery(t *testing.T) {
	t.Parallel()
	set := fast
	set.MaxTries = 3
	e := newEnv(t, set)
	const email = "frank@example.com"
	before := e.connect(email, nil, "")
	if err := e.sb.Gmail.SetFaults(email, gmailapi.Faults{ErrorRate: 1, ErrorCodes: []int{503}, ErrorMethods: []string{"history.list"}}); err != nil {
		t.Fatal(err)
	}
	d := e.deliver(email, "delayed by an outage")
	for i := range 2 { // the second push must not find the lease held
		res, err := e.syncer.OnPush(context.Background(), email, int64(d.HistoryID))
		if err == nil || !gmailclient.IsRetryable(err) || res.Announced != 0 {
			t.Fatalf("push %d during an outage: got %+v, %v; want a retryable error", i, res, err)
		}
	}
	if got, want := e.sb.Gmail.Usage(email).Calls["history.list"], int64(2*set.MaxTries); got != want {
		t.Errorf("history.list calls: got %d, want %d (MaxTries per push)", got, want)
	}
	u := e.user(email)
	if u.Cursor != before.Cursor || u.Lease != (store.Lease{}) || u.PendingHistoryID != int64(d.HistoryID) {
		t.Errorf("user after failed syncs: cursor %d (want %d), lease %+v (want none), pending %d (want %d)",
			u.Cursor, before.Cursor, u.Lease, u.PendingHistoryID, d.HistoryID)
	}
	e.sb.Gmail.ClearFaults(email)
	e.push(email, d.HistoryID)
	wantExactlyOnce(t, e.events(1), d)
}

func TestCursorTooOldCatchesUp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		chunk int
		want  []int // indexes of the unannounced messages the catch-up announces
	}{
		{"one page", 500, []int{0, 1, 2}},
		{"pages of two", 2, []int{0, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			set := fast
			set.CatchUpChunk = tc.chunk
			e := newEnv(t, set)
			const email = "gina@example.com"
			e.connect(email, nil, "")
			seen := []gmailapi.Delivered{e.deliver(email, "seen 1"), e.deliver(email, "seen 2")}
			e.push(email, seen[1].HistoryID)
			var missed []gmailapi.Delivered
			for i := range 3 { // their pushes were lost, and history aged out
				missed = append(missed, e.deliver(email, fmt.Sprint("missed ", i)))
			}
			e.deliver(email, "not watched", "SENT")
			if err := e.sb.Gmail.SetFaults(email, gmailapi.Faults{ExpireHistory: true}); err != nil {
				t.Fatal(err)
			}
			now, _ := e.sb.Gmail.HistoryID(email)

			res := e.push(email, now)
			want := slices.Clone(seen)
			for _, i := range tc.want {
				want = append(want, missed[i])
			}
			wantExactlyOnce(t, e.events(len(want)), want...)
			if res.Outcome != gmailsync.Synced || !res.CaughtUp || res.Announced != len(tc.want) || res.ToHistoryID != int64(now) {
				t.Errorf("catch-up: got %+v, want synced, caught up, %d announced, cursor %d", res, len(tc.want), now)
			}
			// The fresh cursor works: the next message is synced from history.
			next := e.deliver(email, "after the catch-up")
			if res := e.push(email, next.HistoryID); res.CaughtUp || res.Announced != 1 {
				t.Errorf("push after the catch-up: got %+v, want 1 announced from history", res)
			}
		})
	}
}

func TestRevokedTokenMarksReauth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		cachedToken bool // an access token was cached before the revocation
	}{
		{"refresh fails", false},
		{"cached access token refused", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, fast)
			const email = "hank@example.com"
			e.connect(email, nil, "")
			want := 0
			if tc.cachedToken {
				e.push(email, e.deliver(email, "before").HistoryID)
				want = 1
			}
			e.sb.Auth.RevokeAccount(email)
			d := e.deliver(email, "after the revocation")
			res, err := e.syncer.OnPush(context.Background(), email, int64(d.HistoryID))
			if err != nil || res.Outcome != gmailsync.ReauthRequired {
				t.Fatalf("push after revocation: got %+v, %v; want reauth_required and no error", res, err)
			}
			calls := e.calls(email)
			for range 3 { // redeliveries and later pushes: no Gmail call, no new event
				res, err := e.syncer.OnPush(context.Background(), email, int64(d.HistoryID))
				if err != nil || res.Outcome != gmailsync.Inactive {
					t.Errorf("later push: got %+v, %v; want inactive", res, err)
				}
			}
			if changed, err := e.syncer.MarkReauth(context.Background(), store.Key(email)); changed || err != nil {
				t.Errorf("MarkReauth again: got %v, %v; want false, nil", changed, err)
			}
			if got := e.calls(email); got != calls {
				t.Errorf("Gmail calls after reauth_required: got %d more", got-calls)
			}
			u := e.user(email)
			if u.Status != store.ReauthRequired || u.ReauthSince.IsZero() || u.Lease != (store.Lease{}) {
				t.Errorf("user: status %q, reauthSince %v, lease %+v; want reauth_required, set, released", u.Status, u.ReauthSince, u.Lease)
			}
			evs := e.events(want + 1)
			var reauth []events.Event
			for _, ev := range evs {
				if ev.Type == events.UserReauth {
					reauth = append(reauth, ev)
				}
			}
			if len(reauth) != 1 || reauth[0].User != u.Key || reauth[0].EmailAddress != email || len(evs) != want+1 {
				t.Errorf("events: got %+v, want %d message events and one %s for %s", evs, want, events.UserReauth, u.Key)
			}
		})
	}
}

func TestEarlyPushIsNotLost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		historyDelay time.Duration
		rechecks     int
		wantPending  bool // the push outlives the call; a later Sync announces it
	}{
		{"visible at a recheck", 300 * time.Millisecond, 3, false},
		{"still hidden after the rechecks", 1500 * time.Millisecond, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			set := fast
			set.Rechecks = tc.rechecks
			e := newEnv(t, set)
			const email = "iris@example.com"
			before := e.connect(email, nil, "")
			if err := e.sb.Gmail.SetFaults(email, gmailapi.Faults{HistoryDelay: gmailapi.Duration(tc.historyDelay)}); err != nil {
				t.Fatal(err)
			}
			d := e.deliver(email, "early")
			res, err := e.syncer.OnPush(context.Background(), email, int64(d.HistoryID))
			// A lag outlasting the rechecks is retryable, so Pub/Sub redelivers the push.
			if lagged := errors.Is(err, gmailsync.ErrHistoryLag); lagged != tc.wantPending || (err != nil && !lagged) {
				t.Fatalf("OnPush: got %v, want ErrHistoryLag %v", err, tc.wantPending)
			}
			u := e.user(email)
			if tc.wantPending {
				if res.Announced != 0 || res.Pending != int64(d.HistoryID) || u.Cursor >= int64(d.HistoryID) ||
					u.PendingHistoryID != int64(d.HistoryID) || u.Lease != (store.Lease{}) || u.SyncDueAt.After(time.Now()) {
					t.Fatalf("push still hidden: got %+v; user cursor %d pending %d lease %+v due %v; want pending %d kept, cursor before it, due now",
						res, u.Cursor, u.PendingHistoryID, u.Lease, u.SyncDueAt, d.HistoryID)
				}
				if u.Cursor < before.Cursor {
					t.Errorf("cursor moved back: %d < %d", u.Cursor, before.Cursor)
				}
				time.Sleep(tc.historyDelay)
				if res, err = e.syncer.Sync(context.Background(), u.Key); err != nil {
					t.Fatalf("Sync: %v", err)
				}
			}
			if res.Announced != 1 || res.Pending != 0 || (!tc.wantPending && res.Rounds < 2) {
				t.Errorf("result: got %+v, want 1 announced (after a recheck), nothing pending", res)
			}
			wantExactlyOnce(t, e.events(1), d)
		})
	}
}

func TestMessageDeletedBeforeFetchIsSkipped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "jack@example.com"
	e.connect(email, nil, "")
	gone := e.deliver(email, "deleted at once")
	kept := e.deliver(email, "kept")
	h, err := e.sb.Gmail.DeleteMessage(email, gone.ID)
	if err != nil {
		t.Fatal(err)
	}
	res := e.push(email, h)
	if res.Announced != 1 || res.ToHistoryID < int64(h) {
		t.Errorf("result: got %+v, want 1 announced, cursor >= %d", res, h)
	}
	wantExactlyOnce(t, e.events(1), kept)
}

func TestWatchedLabels(t *testing.T) {
	t.Parallel()
	deliveries := [][]string{{"INBOX"}, {"IMPORTANT"}, {"SPAM"}, {"SENT"}, {"INBOX", "STARRED"}}
	for _, tc := range []struct {
		name   string
		labels []string
		filter string
		want   []int // indexes into deliveries
	}{
		{"default INBOX", nil, "", []int{0, 4}},
		{"include INBOX", []string{"INBOX"}, "include", []int{0, 4}},
		{"include two labels", []string{"IMPORTANT", "STARRED"}, "include", []int{1, 4}},
		{"exclude", []string{"SPAM", "SENT"}, "exclude", []int{0, 1, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, fast)
			const email = "kim@example.com"
			e.connect(email, tc.labels, tc.filter)
			var all []gmailapi.Delivered
			for i, labels := range deliveries {
				all = append(all, e.deliver(email, fmt.Sprint("labelled ", i), labels...))
			}
			e.push(email, all[len(all)-1].HistoryID)
			var want []gmailapi.Delivered
			for _, i := range tc.want {
				want = append(want, all[i])
			}
			wantExactlyOnce(t, e.events(len(want)), want...)
		})
	}
}

func TestUnknownAndBadPushesChangeNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "lee@example.com"
	e.connect(email, nil, "")
	before := e.user(email)
	for _, tc := range []struct {
		name      string
		email     string
		historyID int64
		want      string
		wantErr   bool
	}{
		{"unknown user", "nobody@example.com", 99, gmailsync.Unknown, false},
		{"zero history id", email, 0, "", true},
		{"negative history id", email, -5, "", true},
	} {
		res, err := e.syncer.OnPush(context.Background(), tc.email, tc.historyID)
		if res.Outcome != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%s: got %+v, %v; want outcome %q, error %v", tc.name, res, err, tc.want, tc.wantErr)
		}
	}
	if res, err := e.syncer.Sync(context.Background(), store.Key("nobody@example.com")); err != nil || res.Outcome != gmailsync.Unknown {
		t.Errorf("Sync of an unknown user: got %+v, %v; want unknown", res, err)
	}
	if u := e.user(email); u.Cursor != before.Cursor || u.PendingHistoryID != before.PendingHistoryID || !u.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("user changed: %+v, was %+v", u, before)
	}
	if n := e.calls(email); n != 0 {
		t.Errorf("Gmail calls: got %d, want 0", n)
	}
	if _, err := e.syncer.MarkReauth(context.Background(), store.Key("nobody@example.com")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MarkReauth of an unknown user: got %v, want store.ErrNotFound", err)
	}
}

func TestPermanentFailureKeepsThePushPending(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		breakIt func(e *env, key string) error
	}{
		{"refresh token missing", func(e *env, key string) error {
			return e.Vault.DeleteRefreshToken(context.Background(), key)
		}},
		{"grant without a Gmail scope", func(e *env, key string) error {
			rt := e.sb.Auth.IssueRefreshToken(testenv.ClientID, "mia@example.com", []string{"openid", "email"})
			return e.Vault.PutRefreshToken(context.Background(), key, rt)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, fast)
			const email = "mia@example.com"
			before := e.connect(email, nil, "")
			if err := tc.breakIt(e, before.Key); err != nil {
				t.Fatal(err)
			}
			d := e.deliver(email, "cannot be read yet")
			res, err := e.syncer.OnPush(context.Background(), email, int64(d.HistoryID))
			if err != nil || res.Outcome != gmailsync.Failed || res.Announced != 0 {
				t.Fatalf("OnPush: got %+v, %v; want failed, nil error (no retry storm)", res, err)
			}
			u := e.user(email)
			if u.Status != store.Active || u.Cursor != before.Cursor || u.PendingHistoryID != int64(d.HistoryID) ||
				u.Lease != (store.Lease{}) || u.SyncDueAt.After(time.Now()) {
				t.Errorf("user: status %s cursor %d pending %d lease %+v due %v; want active, cursor %d kept, pending %d, released, due now",
					u.Status, u.Cursor, u.PendingHistoryID, u.Lease, u.SyncDueAt, before.Cursor, d.HistoryID)
			}
			if !e.logs.Contains(`"severity":"ERROR","message":"sync refused for good"`) {
				t.Errorf("no ERROR line for the refused sync in:\n%s", e.logs)
			}
			if evs := e.events(0); len(evs) != 0 {
				t.Errorf("events: got %+v, want none", evs)
			}
		})
	}
}

// TestMarkReauthOfADelegatedUser: a delegated user whose token Google
// refuses gets the same one reauth_required event, but logs a line of its
// own, so the reauthorization alert (consent) stays quiet and the renew
// run's delegation alert is the one the admin sees.
func TestMarkReauthOfADelegatedUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "dee@example.com"
	e.connect(email, nil, "")
	if _, err := e.store.Update(context.Background(), store.Key(email), func(u *store.User) error { u.Delegated = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if changed, err := e.syncer.MarkReauth(context.Background(), store.Key(email)); !changed || err != nil {
		t.Fatalf("MarkReauth = %v, %v; want true, nil", changed, err)
	}
	first := e.events(1)
	if len(first) != 1 || first[0].Type != events.UserReauth || first[0].EmailAddress != email || first[0].Reconnect != "" {
		t.Errorf("events %+v, want one %s for %s with no reconnect path (no consent brings it back)", first, events.UserReauth, email)
	}
	if !e.logs.Contains(`"message":"delegated user refused"`) || e.logs.Contains("user must consent again") {
		t.Errorf("logs:\n%s\nwant the delegated line and not the consent one", e.logs)
	}
	// The delegation is granted again and the renew run joins the user (a
	// Connect); a second refusal is a new event, not a repeat receivers drop.
	u := e.user(email)
	if _, _, err := e.store.Connect(context.Background(), store.Connection{Key: u.Key, Sub: u.Sub, Email: email, HistoryID: u.Cursor, Delegated: true}); err != nil {
		t.Fatal(err)
	}
	if changed, err := e.syncer.MarkReauth(context.Background(), store.Key(email)); !changed || err != nil {
		t.Fatalf("MarkReauth after rejoining = %v, %v; want true, nil", changed, err)
	}
	var second []events.Event
	for _, ev := range e.events(3) { // the rejoin's connected event, then the refusal
		if ev.Type == events.UserReauth {
			second = append(second, ev)
		}
	}
	if len(second) != 2 || second[1].ID == second[0].ID {
		t.Errorf("reauth_required events %+v, want the first and a second with a new id", second)
	}
}
