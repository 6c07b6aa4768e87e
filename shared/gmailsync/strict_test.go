package gmailsync_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// The guarantees the sync keeps against the strict sandbox.

// watch makes the sandbox publish the mailbox's notifications to the world's
// Gmail topic, so the per-user rate drops them as Gmail does.
func (e *env) watch(email string) {
	e.t.Helper()
	svc, err := e.Mailboxes().ForUser(context.Background(), store.User{Key: store.Key(email)})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := svc.Users.Watch("me", &gmail.WatchRequest{TopicName: e.GmailTopic}).Do(); err != nil {
		e.t.Fatalf("watch: %v", err)
	}
}

func TestMessageAfterADroppedPushIsAnnouncedWithinTheCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "drop@example.com"
	e.connect(email, nil, "")
	e.watch(email)
	first := e.deliver(email, "pushed")
	done := make(chan gmailsync.Result, 1)
	go func() { done <- e.push(email, first.HistoryID) }()
	time.Sleep(100 * time.Millisecond)
	// Within the second after the first push: Gmail drops this one's push.
	second := e.deliver(email, "its push dropped")
	var res gmailsync.Result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("OnPush did not return")
	}
	if st, _ := e.sb.Gmail.Watch(email); st.Notifications.RateDropped != 1 {
		t.Fatalf("notifications %+v: want the second one dropped by the rate", st.Notifications)
	}
	if res.Announced != 2 || e.user(email).Cursor < int64(second.HistoryID) {
		t.Errorf("result %+v: want both messages announced by the push's own call", res)
	}
	wantExactlyOnce(t, e.events(2), first, second)
}

func TestNothingNewAfterThePushCostsOneProfileRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "floor@example.com"
	e.connect(email, nil, "")
	d := e.deliver(email, "alone")
	res := e.push(email, d.HistoryID)
	// The floor under drop semantics: history.list for the push, the
	// message, and a look after its second (getProfile): 2 + 20 + 1 units
	// under standard-2026.
	cost := e.sb.Gmail.Quota().Units
	floor := int64(cost["history.list"] + cost["messages.get"] + cost["getProfile"])
	u := e.sb.Gmail.Usage(email)
	if floor != 23 || u.Units != floor || u.Calls["history.list"] != 1 || u.Calls["messages.get"] != 1 || u.Calls["getProfile"] != 1 || res.Announced != 1 || res.Units != int(floor) {
		t.Errorf("usage %+v, result %+v: want %d units (history.list, messages.get, getProfile), counted alike", u, res, floor)
	}
	for _, h := range []uint64{d.HistoryID, d.HistoryID - 1} { // a duplicate, then an older push
		if r := e.push(email, h); r.Outcome != gmailsync.Stale || r.Calls != 0 {
			t.Errorf("push %d after the sync: %+v, want stale with no Gmail call", h, r)
		}
	}
	if got := e.sb.Gmail.Usage(email).Units; got != floor {
		t.Errorf("units after duplicate and stale pushes: %d, want still %d", got, floor)
	}
	wantExactlyOnce(t, e.events(1), d)
}

func TestCursorNeverPassesAHiddenRecord(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "hidden@example.com"
	e.connect(email, nil, "")
	if err := e.sb.Gmail.SetFaults(email, gmailapi.Faults{HistoryDelay: gmailapi.Duration(time.Second)}); err != nil {
		t.Fatal(err)
	}
	seen := e.deliver(email, "visible")
	time.Sleep(1100 * time.Millisecond)
	hidden := e.deliver(email, "still hidden")
	// A reconcile: history.list reports the mailbox's history id, which is
	// the hidden record's, while showing only the visible one.
	res, err := e.syncer.Sync(context.Background(), store.Key(email))
	if err != nil {
		t.Fatal(err)
	}
	if u := e.user(email); res.Announced != 1 || u.Cursor >= int64(hidden.HistoryID) || u.Cursor < int64(seen.HistoryID) {
		t.Fatalf("after the first sync: %+v, cursor %d; want 1 announced and the cursor in [%d, %d)", res, u.Cursor, seen.HistoryID, hidden.HistoryID)
	}
	time.Sleep(time.Second)
	if res, err = e.syncer.Sync(context.Background(), store.Key(email)); err != nil || res.Announced != 1 {
		t.Fatalf("once visible: %+v, %v; want the hidden message announced", res, err)
	}
	wantExactlyOnce(t, e.events(2), seen, hidden)
}

func TestMessageThatLeftTheLabelIsAnnounced(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "left@example.com"
	e.connect(email, []string{"INBOX"}, "include")
	modify := func(d gmailapi.Delivered, add, remove []string) {
		t.Helper()
		if _, err := e.sb.Gmail.ModifyLabels(email, d.ID, add, remove); err != nil {
			t.Fatal(err)
		}
	}
	archived := e.deliver(email, "archived")
	modify(archived, nil, []string{"INBOX"})
	moved := e.deliver(email, "moved")
	modify(moved, []string{"CATEGORY_UPDATES"}, []string{"INBOX", "UNREAD"})
	trashed := e.deliver(email, "trashed")
	modify(trashed, []string{"TRASH"}, []string{"INBOX"})
	spam := e.deliver(email, "spam, then the inbox", "SPAM")
	modify(spam, []string{"INBOX"}, []string{"SPAM"}) // reached the inbox later, not on arrival
	gone := e.deliver(email, "deleted for good")
	h, err := e.sb.Gmail.DeleteMessage(email, gone.ID)
	if err != nil {
		t.Fatal(err)
	}
	res := e.push(email, h)
	u := e.sb.Gmail.Usage(email)
	// Decided from history alone: one messages.get per announced message.
	if res.Announced != 3 || u.Calls["messages.get"] != 3 {
		t.Errorf("result %+v, messages.get %d: want 3 announced with 3 fetches", res, u.Calls["messages.get"])
	}
	wantExactlyOnce(t, e.events(3), archived, moved, trashed)
}

func TestExcludeModeNeverAnnouncesTheUsersOwnMail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "writer@example.com"
	e.connect(email, []string{"SPAM", "TRASH"}, "exclude")
	v1, err := e.sb.Gmail.SaveDraft(gmailapi.Draft{User: email, To: "bob@example.net", Subject: "plan", Body: "first"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sb.Gmail.SaveDraft(gmailapi.Draft{User: email, ID: v1.ID, To: "bob@example.net", Subject: "plan", Body: "second"}); err != nil {
		t.Fatal(err)
	}
	kept, err := e.sb.Gmail.SaveDraft(gmailapi.Draft{User: email, To: "bob@example.net", Subject: "kept as a draft"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sb.Gmail.SendDraft(email, v1.ID); err != nil {
		t.Fatal(err)
	}
	note, _ := e.sb.Gmail.SaveDraft(gmailapi.Draft{User: email, To: email, Subject: "note to self"})
	if _, err := e.sb.Gmail.SendDraft(email, note.ID); err != nil {
		t.Fatal(err)
	}
	received := e.deliver(email, "from someone else")
	h, _ := e.sb.Gmail.HistoryID(email)
	res := e.push(email, h)
	if res.Announced != 1 || e.sb.Gmail.Usage(email).Calls["messages.get"] != 1 {
		t.Errorf("result %+v: want only the received message announced and fetched (draft %s kept)", res, kept.ID)
	}
	wantExactlyOnce(t, e.events(1), received)
}

// A recorded exchange from googleworkspace/python-samples#200: the push
// {"emailAddress": …, "historyId": 1710} was followed by a history.list
// answering {"historyId": "1710"}, with no history at all. Replayed here with
// the sandbox's ids: the sync must neither fail on the missing field nor move
// its cursor to the reported id, and must announce the message once history
// shows it.
func TestRecordedEmptyHistoryAfterAPush(t *testing.T) {
	t.Parallel()
	e := newEnv(t, fast)
	const email = "recorded@example.com"
	before := e.connect(email, nil, "")
	d := e.deliver(email, "indexed late")
	target, _ := url.Parse(e.sb.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var replayed atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/history") && replayed.Add(1) == 1 {
			w.Header().Set("Content-Type", "application/json; charset=UTF-8")
			_, _ = io.WriteString(w, fmt.Sprintf(`{"historyId": "%d"}`, d.HistoryID))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	set := e.Gmail()
	set.GmailEndpoint = srv.URL + "/"
	syncer := gmailsync.New(gmailsync.Deps{Users: e.store, Gmail: gmailclient.NewFactory(set, e.Vault), Events: e.Publisher}, fast)

	res, err := syncer.OnPush(context.Background(), email, int64(d.HistoryID))
	if err != nil {
		t.Fatalf("OnPush: %v", err)
	}
	if replayed.Load() < 2 || res.Announced != 1 || res.FromHistoryID != before.Cursor {
		t.Errorf("result %+v after %d history reads: want the empty answer replayed, then the message announced", res, replayed.Load())
	}
	wantExactlyOnce(t, e.events(1), d)
}

func TestArchivedWhileItsRecordIsHiddenIsAnnounced(t *testing.T) {
	t.Parallel()
	set := fast
	set.RecheckDelay, set.Rechecks = 400*time.Millisecond, 4
	e := newEnv(t, set)
	const email = "quick@example.com"
	e.connect(email, nil, "")
	if err := e.sb.Gmail.SetFaults(email, gmailapi.Faults{HistoryDelay: gmailapi.Duration(time.Second)}); err != nil {
		t.Fatal(err)
	}
	d := e.deliver(email, "archived at once")
	time.Sleep(1100 * time.Millisecond)
	// The arrival is visible, the archiving not yet; the record of the
	// arrival already shows the labels without INBOX.
	if _, err := e.sb.Gmail.ModifyLabels(email, d.ID, nil, []string{"INBOX"}); err != nil {
		t.Fatal(err)
	}
	res, err := e.syncer.Sync(context.Background(), store.Key(email))
	if err != nil {
		t.Fatal(err)
	}
	if res.Announced != 1 || res.Rounds < 2 {
		t.Errorf("result %+v: want the message announced after reading again", res)
	}
	wantExactlyOnce(t, e.events(1), d)
}
