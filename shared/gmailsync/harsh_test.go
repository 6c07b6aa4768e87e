package gmailsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// The guarantees the sync keeps against the sandbox's harsher faults.

func (e *env) faults(email string, f gmailapi.Faults) {
	e.t.Helper()
	if err := e.sb.Gmail.SetFaults(email, f); err != nil {
		e.t.Fatal(err)
	}
}

// until calls OnPush for historyID, as Pub/Sub redelivers after an error,
// until it succeeds or the deadline passes.
func (e *env) until(email string, historyID uint64, d time.Duration) gmailsync.Result {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		res, err := e.syncer.OnPush(context.Background(), email, int64(historyID))
		if err == nil {
			return res
		}
		if !errors.Is(err, gmailsync.ErrHistoryLag) || time.Now().After(deadline) {
			e.t.Fatalf("OnPush(%d): %v", historyID, err)
		}
		time.Sleep(100 * time.Millisecond) // Pub/Sub's redelivery backoff
	}
}

// indexed waits until history shows the record d wrote (the sandbox's
// history delay has passed for it).
func (e *env) indexed(email string, d gmailapi.Delivered) {
	e.t.Helper()
	svc, err := e.Mailboxes().ForUser(context.Background(), store.User{Key: store.Key(email)})
	if err != nil {
		e.t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		r, err := svc.Users.History.List("me").StartHistoryId(d.HistoryID - 1).Do()
		if err != nil {
			e.t.Fatal(err)
		}
		if len(r.History) > 0 && r.History[0].Id == d.HistoryID {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("record %d never shown", d.HistoryID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMessageNotFoundYetIsReadAgainAndAnnounced(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		delay    time.Duration
		rechecks int
	}{
		{"readable at a recheck", 500 * time.Millisecond, 4},
		{"still not found after the rechecks", 1500 * time.Millisecond, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			set := fast
			set.Rechecks = tc.rechecks
			e := newEnv(t, set)
			const email = "young@example.com"
			e.connect(email, nil, "")
			e.faults(email, gmailapi.Faults{MessageDelay: gmailapi.Duration(tc.delay)})
			gone := e.deliver(email, "deleted at once")
			young := e.deliver(email, "not readable yet")
			h, err := e.sb.Gmail.DeleteMessage(email, gone.ID)
			if err != nil {
				t.Fatal(err)
			}
			res, err := e.syncer.OnPush(context.Background(), email, int64(h))
			if tc.rechecks == 1 {
				// Never passed: the cursor stays at the record before it, and
				// the error is retryable.
				if !errors.Is(err, gmailsync.ErrHistoryLag) {
					t.Fatalf("OnPush: %+v, %v; want ErrHistoryLag", res, err)
				}
				if u := e.user(email); u.Cursor != int64(gone.HistoryID) || u.PendingHistoryID < int64(h) {
					t.Fatalf("cursor %d pending %d: want the cursor at %d, the record before the unreadable one, and %d pending",
						u.Cursor, u.PendingHistoryID, gone.HistoryID, h)
				}
				res = e.until(email, h, 5*time.Second)
			} else if err != nil {
				t.Fatalf("OnPush: %v", err)
			}
			if u := e.user(email); res.Announced != 1 || u.Cursor < int64(h) {
				t.Errorf("result %+v, cursor %d: want the young message announced and the cursor past the deletion %d", res, u.Cursor, h)
			}
			if got := e.sb.Gmail.Usage(email).Calls["messages.get"]; got < 2 {
				t.Errorf("messages.get calls %d: want the young message read again", got)
			}
			wantExactlyOnce(t, e.events(1), young)
		})
	}
}

func TestHiddenRecordsAreFoundUnderBothReadings(t *testing.T) {
	t.Parallel()
	for _, indexed := range []bool{false, true} {
		name := "strict historyId"
		if indexed {
			name = "indexed historyId"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			t.Run("a change whose push was dropped", func(t *testing.T) {
				t.Parallel()
				set := fast
				set.Rechecks = 6
				e := newEnv(t, set)
				const email = "dropped@example.com"
				e.connect(email, nil, "")
				delay := 700 * time.Millisecond
				e.faults(email, gmailapi.Faults{HistoryDelay: gmailapi.Duration(delay), IndexedHistoryID: indexed})
				first := e.deliver(email, "pushed")
				e.indexed(email, first)
				second := e.deliver(email, "its push dropped, its record hidden")
				res, err := e.syncer.OnPush(context.Background(), email, int64(first.HistoryID))
				if err != nil || res.Announced != 2 || e.user(email).Cursor < int64(second.HistoryID) {
					t.Fatalf("OnPush: %+v, %v; want both announced within the call", res, err)
				}
				wantExactlyOnce(t, e.events(2), first, second)
			})
			t.Run("a lag outlasting the rechecks", func(t *testing.T) {
				t.Parallel()
				set := fast
				set.Rechecks = 1
				e := newEnv(t, set)
				const email = "lag@example.com"
				e.connect(email, nil, "")
				delay := 1500 * time.Millisecond
				e.faults(email, gmailapi.Faults{HistoryDelay: gmailapi.Duration(delay), IndexedHistoryID: indexed})
				first := e.deliver(email, "pushed")
				e.indexed(email, first)
				second := e.deliver(email, "hidden past the rechecks")
				_, err := e.syncer.OnPush(context.Background(), email, int64(first.HistoryID))
				u := e.user(email)
				if !errors.Is(err, gmailsync.ErrHistoryLag) || u.Cursor != int64(first.HistoryID) || u.PendingHistoryID != int64(second.HistoryID) {
					t.Fatalf("OnPush: %v, cursor %d pending %d; want ErrHistoryLag, the cursor at %d and %d pending",
						err, u.Cursor, u.PendingHistoryID, first.HistoryID, second.HistoryID)
				}
				// Pub/Sub redelivers the same push: it reads again.
				res := e.until(email, first.HistoryID, 5*time.Second)
				if res.Outcome != gmailsync.Synced {
					t.Errorf("redelivery: %+v, want a sync", res)
				}
				wantExactlyOnce(t, e.events(2), first, second)
			})
			t.Run("a refusal a hidden record may undo", func(t *testing.T) {
				t.Parallel()
				set := fast
				set.Rechecks = 1
				e := newEnv(t, set)
				const email = "undo@example.com"
				e.connect(email, nil, "")
				delay := 1500 * time.Millisecond
				e.faults(email, gmailapi.Faults{HistoryDelay: gmailapi.Duration(delay), IndexedHistoryID: indexed})
				before := e.deliver(email, "before")
				d := e.deliver(email, "archived at once")
				e.indexed(email, d)
				h, err := e.sb.Gmail.ModifyLabels(email, d.ID, nil, []string{"INBOX"})
				if err != nil {
					t.Fatal(err)
				}
				_, err = e.syncer.Sync(context.Background(), store.Key(email))
				// The cursor is held at the record before the refused
				// arrival, an id Gmail issued, never the refused id less one.
				if u := e.user(email); !errors.Is(err, gmailsync.ErrHistoryLag) || u.Cursor != int64(before.HistoryID) {
					t.Fatalf("Sync: %v, cursor %d; want ErrHistoryLag and the cursor at %d", err, u.Cursor, before.HistoryID)
				}
				e.until(email, h, 5*time.Second)
				wantExactlyOnce(t, e.events(2), before, d)
			})
		})
	}
}

func TestHeldArrivalIsPublishedBeforeLaterEvents(t *testing.T) {
	t.Parallel()
	set := fast
	set.Rechecks = 8
	e := newEnv(t, set)
	const email = "order@example.com"
	e.connect(email, nil, "")
	delay := 600 * time.Millisecond
	e.faults(email, gmailapi.Faults{HistoryDelay: gmailapi.Duration(delay)})
	held := e.deliver(email, "archived at once")
	later := e.deliver(email, "arrived after it")
	e.indexed(email, later)
	h, err := e.sb.Gmail.ModifyLabels(email, held.ID, nil, []string{"INBOX"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.syncer.OnPush(context.Background(), email, int64(h))
	if err != nil || res.Announced != 2 || res.Rounds < 2 {
		t.Fatalf("OnPush: %+v, %v; want both announced after reading again", res, err)
	}
	evs := e.events(2)
	var order []string
	for _, ev := range evs {
		order = append(order, ev.MessageID)
	}
	if len(order) != 2 || order[0] != held.ID || order[1] != later.ID {
		t.Errorf("events for %v; want the held arrival %s before %s, in history order", order, held.ID, later.ID)
	}
}

func TestEmptyHistoryPagesAreFollowedToTheEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "pages@example.com"
	e.connect(email, nil, "")
	e.faults(email, gmailapi.Faults{EmptyPages: 1})
	var ds []gmailapi.Delivered
	for i := range 3 {
		ds = append(ds, e.deliver(email, "m"+string(rune('a'+i))))
	}
	res := e.push(email, ds[2].HistoryID)
	if res.Announced != 3 || e.sb.Gmail.Usage(email).Calls["history.list"] < 2 {
		t.Errorf("result %+v, history.list %d: want every message, past the empty first page", res, e.sb.Gmail.Usage(email).Calls["history.list"])
	}
	wantExactlyOnce(t, e.events(3), ds...)
}

func TestRecordsWithoutLabelsAreDecidedOnTheMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withTypes(events.MessageReceived, events.MessageLabelsChanged))
	const email = "nolabels@example.com"
	e.connect(email, []string{"INBOX"}, "include")
	e.faults(email, gmailapi.Faults{OmitLabelIDs: 1})
	inbox := e.deliver(email, "inbox")
	spam := e.deliver(email, "spam", "SPAM")
	archived := e.deliver(email, "archived since")
	h, err := e.sb.Gmail.ModifyLabels(email, archived.ID, nil, []string{"INBOX"})
	if err != nil {
		t.Fatal(err)
	}
	res := e.push(email, h)
	if got := e.sb.Gmail.Usage(email).Calls["messages.get"]; res.Announced != 3 || got != 3 {
		t.Errorf("result %+v, messages.get %d: want 2 received and 1 label change, each message read once (spam %s to refuse it)", res, got, spam.ID)
	}
	evs := e.events(3)
	wantExactlyOnce(t, evs, inbox, archived)
	for _, ev := range evs {
		if ev.Type == events.MessageLabelsChanged && (ev.MessageID != archived.ID || len(ev.LabelsRemoved) != 1 || ev.LabelIDs == nil) {
			t.Errorf("label change %+v: want INBOX removed from %s with the labels read", ev, archived.ID)
		}
	}
}

func TestPushTheCursorPassedWithoutItGetsTheLook(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "late@example.com"
	e.connect(email, nil, "")
	first := e.deliver(email, "read by a reconcile")
	if res, err := e.syncer.Sync(context.Background(), store.Key(email)); err != nil || res.Announced != 1 {
		t.Fatalf("reconcile: %+v, %v", res, err)
	}
	// Within the second after the first one's push, which comes late: its
	// own push was dropped.
	second := e.deliver(email, "its push dropped")
	res := e.push(email, first.HistoryID)
	if res.Outcome != gmailsync.Synced || res.Announced != 1 {
		t.Errorf("late push: %+v; want the look after its second to announce the second message", res)
	}
	// Nothing new since: the look is one getProfile, after the push's second.
	e.sb.Gmail.ResetUsage()
	third := e.deliver(email, "read by another reconcile")
	if res, err := e.syncer.Sync(context.Background(), store.Key(email)); err != nil || res.Announced != 1 {
		t.Fatalf("second reconcile: %+v, %v", res, err)
	}
	before := e.sb.Gmail.Usage(email)
	start := time.Now()
	if r := e.push(email, third.HistoryID); r.Outcome != gmailsync.Synced || r.Announced != 0 || time.Since(start) < fast.TrailDelay {
		t.Errorf("late push with nothing after it: %+v after %v; want a look after %v", r, time.Since(start), fast.TrailDelay)
	}
	if u := e.sb.Gmail.Usage(email); u.Units-before.Units != 1 || u.Calls["getProfile"]-before.Calls["getProfile"] != 1 {
		t.Errorf("the look cost %d units, want one getProfile", u.Units-before.Units)
	}
	// A duplicate of it is stale and costs nothing.
	if r := e.push(email, first.HistoryID); r.Outcome != gmailsync.Stale || r.Calls != 0 {
		t.Errorf("duplicate of the late push: %+v, want stale with no Gmail call", r)
	}
	wantExactlyOnce(t, e.events(3), first, second, third)
}

// End to end with the sandbox's late pushes: the watch's notifications
// reach the Syncer through Pub/Sub 1.5 s after Gmail sends them.
func TestLatePushThroughPubSubGetsTheLook(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "latepush@example.com"
	e.connect(email, nil, "")
	e.watch(email)
	e.faults(email, gmailapi.Faults{PushDelay: gmailapi.Duration(1500 * time.Millisecond)})
	sub := testenv.Subscription(t, e.PubSub, e.GmailTopic, "notify")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.PubSub.Subscriber(sub).Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
			var n gmailapi.Notification
			if err := json.Unmarshal(m.Data, &n); err != nil {
				t.Errorf("push %q: %v", m.Data, err)
				m.Ack()
				return
			}
			if _, err := e.syncer.OnPush(ctx, n.EmailAddress, int64(n.HistoryID)); err != nil {
				m.Nack() // redelivered, as notify's error does
				return
			}
			m.Ack()
		})
	}()
	t.Cleanup(func() { cancel(); <-done })

	sent := time.Now()
	first := e.deliver(email, "pushed late")
	if res, err := e.syncer.Sync(context.Background(), store.Key(email)); err != nil || res.Announced != 1 {
		t.Fatalf("reconcile: %+v, %v", res, err)
	}
	if d := time.Since(sent); d > 800*time.Millisecond {
		t.Skipf("the reconcile took %v: the next message would fall outside the push's second", d)
	}
	second := e.deliver(email, "within the late push's second")
	wantExactlyOnce(t, e.events(2), first, second)
	if st, _ := e.sb.Gmail.Watch(email); st.Notifications.RateDropped != 1 || st.Notifications.Published != 1 {
		t.Errorf("notifications %+v: want the second one dropped by the rate, the first published late", st.Notifications)
	}
}
