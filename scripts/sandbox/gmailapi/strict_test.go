package gmailapi_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	gmail "google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
)

// The strict profile, one test per behaviour; README.md cites the Google
// documentation that allows each.

func TestStrictDropsNotificationsAboveTheRate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{PushInterval: 300 * time.Millisecond})
	svc := e.mailbox(t, "drop@example.com")
	topic, ch := e.topic(t, "gmail")
	if _, err := svc.Users.Watch("me", &gmail.WatchRequest{TopicName: topic}).Do(); err != nil {
		t.Fatal(err)
	}
	first := e.deliver(t, gmailapi.Delivery{To: "drop@example.com"})
	for range 3 {
		e.deliver(t, gmailapi.Delivery{To: "drop@example.com"})
	}
	// Four intervals: a coalescing sandbox would have sent the second one by now.
	got := receive(t, ch, 1, 1200*time.Millisecond)
	if len(got) != 1 || got[0].HistoryID != first.HistoryID {
		t.Fatalf("notifications = %+v, want only the first change's (%d)", got, first.HistoryID)
	}
	st, _ := e.gmail.Watch("drop@example.com")
	if st.Notifications.Published != 1 || st.Notifications.RateDropped != 3 || st.Notifications.Coalesced != 0 {
		t.Fatalf("stats = %+v, want 1 published, 3 dropped by the rate", st.Notifications)
	}
	// Once the interval has passed, the next change is notified again.
	next := e.deliver(t, gmailapi.Delivery{To: "drop@example.com"})
	if got := receive(t, ch, 1, time.Second); got[0].HistoryID != next.HistoryID {
		t.Fatalf("after the interval: %+v, want %d", got, next.HistoryID)
	}
}

func TestStrictHistoryIDIsCurrentWhileRecordsAreHidden(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	e := newEnv(t, gmailapi.Options{Now: clk.Now, AfterFunc: clk.AfterFunc})
	svc := e.mailbox(t, "hidden@example.com")
	start, _ := e.gmail.HistoryID("hidden@example.com")
	if err := e.gmail.SetFaults("hidden@example.com", gmailapi.Faults{HistoryDelay: gmailapi.Duration(time.Second)}); err != nil {
		t.Fatal(err)
	}
	d := e.deliver(t, gmailapi.Delivery{To: "hidden@example.com"})
	r, err := svc.Users.History.List("me").StartHistoryId(start).Do()
	if err != nil || len(r.History) != 0 || r.HistoryId != d.HistoryID {
		t.Fatalf("history while hidden = %+v, %v; want no records and the current id %d", r, err, d.HistoryID)
	}
	clk.Advance(1200 * time.Millisecond)
	r, err = svc.Users.History.List("me").StartHistoryId(start).Do()
	if err != nil || len(r.History) != 1 || r.History[0].Id != d.HistoryID {
		t.Fatalf("history once visible = %+v, %v; want the record %d", r, err, d.HistoryID)
	}
}

func TestStrictRecordsShowCurrentLabels(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{})
	const user = "labels@example.com"
	svc := e.mailbox(t, user)
	start, _ := e.gmail.HistoryID(user)
	archived := e.deliver(t, gmailapi.Delivery{To: user})
	if _, err := e.gmail.ModifyLabels(user, archived.ID, nil, []string{"INBOX"}); err != nil {
		t.Fatal(err)
	}
	deleted := e.deliver(t, gmailapi.Delivery{To: user})
	if _, err := e.gmail.DeleteMessage(user, deleted.ID); err != nil {
		t.Fatal(err)
	}
	kept := e.deliver(t, gmailapi.Delivery{To: user})

	added := func(call *gmail.UsersHistoryListCall) map[string][]string {
		t.Helper()
		r, err := call.HistoryTypes("messageAdded").Do()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]string{}
		for _, h := range r.History {
			for _, a := range h.MessagesAdded {
				out[a.Message.Id] = a.Message.LabelIds
				if a.Message.ThreadId == "" {
					t.Errorf("record of %s has no threadId", a.Message.Id)
				}
			}
		}
		return out
	}
	want := map[string][]string{archived.ID: {"UNREAD"}, deleted.ID: nil, kept.ID: {"INBOX", "UNREAD"}}
	if got := added(svc.Users.History.List("me").StartHistoryId(start)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("messageAdded labels: got %v, want the labels now %v", got, want)
	}
	// labelId filters on the labels now: the archived and the deleted message are gone from INBOX.
	if got := added(svc.Users.History.List("me").StartHistoryId(start).LabelId("INBOX")); fmt.Sprint(got) != fmt.Sprint(map[string][]string{kept.ID: {"INBOX", "UNREAD"}}) {
		t.Errorf("labelId INBOX: got %v, want only %s", got, kept.ID)
	}
}

func TestStrictPagesMayBeEmptyWithAToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{})
	const user = "pages@example.com"
	svc := e.mailbox(t, user)
	start, _ := e.gmail.HistoryID(user)
	for range 3 {
		e.deliver(t, gmailapi.Delivery{To: user, LabelIDs: []string{"SPAM"}})
	}
	inbox := e.deliver(t, gmailapi.Delivery{To: user})
	var pages, empty int
	var got []string
	for tok := ""; ; {
		r, err := svc.Users.History.List("me").StartHistoryId(start).LabelId("INBOX").MaxResults(2).PageToken(tok).Do()
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(r.History) == 0 && r.NextPageToken != "" {
			empty++
		}
		for _, h := range r.History {
			got = append(got, h.Messages[0].Id)
		}
		if tok = r.NextPageToken; tok == "" {
			break
		}
	}
	if empty == 0 || !slices.Equal(got, []string{inbox.ID}) {
		t.Fatalf("%d pages, %d empty with a token, records %v; want an empty first page and then %s", pages, empty, got, inbox.ID)
	}
}

func TestStrictQuotaErrorShapes(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 10, 0, time.UTC)}
	e := newEnv(t, gmailapi.Options{Now: clk.Now, UserUnitsPerMinute: 2, ProjectUnitsPerMinute: 3})
	a := e.mailbox(t, "a@example.com")
	b := e.mailbox(t, "b@example.com")
	profile := func(s *gmail.Service) error { _, err := s.Users.GetProfile("me").Do(); return err }
	for range 2 {
		if err := profile(a); err != nil {
			t.Fatal(err)
		}
	}
	type shape struct {
		Code           int
		Reason, Domain string
	}
	shapeOf := func(err error) shape {
		t.Helper()
		ge := apiError(t, err)
		var body struct {
			Error struct {
				Errors []struct{ Domain, Reason string }
			}
		}
		if json.Unmarshal([]byte(ge.Body), &body) != nil || len(body.Error.Errors) != 1 {
			t.Fatalf("error body %s", ge.Body)
		}
		return shape{ge.Code, body.Error.Errors[0].Reason, body.Error.Errors[0].Domain}
	}
	// The per-user limit, in both of the codes Gmail uses for it.
	if got, want := shapeOf(profile(a)), (shape{403, "userRateLimitExceeded", "usageLimits"}); got != want {
		t.Errorf("user limit: got %+v, want %+v", got, want)
	}
	if got, want := shapeOf(profile(a)), (shape{429, "userRateLimitExceeded", "usageLimits"}); got != want {
		t.Errorf("user limit again: got %+v, want %+v", got, want)
	}
	// The project's limit.
	if err := profile(b); err != nil {
		t.Fatal(err)
	}
	if got, want := shapeOf(profile(b)), (shape{403, "rateLimitExceeded", "usageLimits"}); got != want {
		t.Errorf("project limit: got %+v, want %+v", got, want)
	}

	// The per-user concurrency cap.
	clk.Advance(time.Minute)
	c := newEnv(t, gmailapi.Options{MaxConcurrent: 2})
	svc := c.mailbox(t, "busy@example.com")
	if err := c.gmail.SetFaults("busy@example.com", gmailapi.Faults{Latency: gmailapi.Duration(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = profile(svc) })
	}
	wg.Wait()
	var refused []shape
	for _, err := range errs {
		if err != nil {
			refused = append(refused, shapeOf(err))
			if ge := apiError(t, err); ge.Message != "Too many concurrent requests for user." {
				t.Errorf("concurrency refusal message %q", ge.Message)
			}
		}
	}
	if want := []shape{{429, "rateLimitExceeded", "usageLimits"}}; !slices.Equal(refused, want) {
		t.Errorf("three calls at once with a cap of two: refused %+v, want %+v", refused, want)
	}
	if u := c.gmail.Usage("busy@example.com"); u.RateLimited != 1 || u.Calls["getProfile"] != 2 {
		t.Errorf("usage %+v, want 2 calls admitted and 1 refused", u)
	}

	// An injected 429 takes each documented shape.
	f := newEnv(t, gmailapi.Options{})
	fs := f.mailbox(t, "faulty@example.com")
	if err := f.gmail.SetFaults("faulty@example.com", gmailapi.Faults{Seed: 3, ErrorRate: 1, ErrorCodes: []int{429}}); err != nil {
		t.Fatal(err)
	}
	seen := map[shape]bool{}
	for range 40 {
		seen[shapeOf(profile(fs))] = true
	}
	for _, want := range []shape{{403, "userRateLimitExceeded", "usageLimits"}, {429, "userRateLimitExceeded", "usageLimits"},
		{403, "rateLimitExceeded", "usageLimits"}, {429, "rateLimitExceeded", "usageLimits"}} {
		if !seen[want] {
			t.Errorf("injected 429s never took the shape %+v (saw %v)", want, seen)
		}
	}
}

func TestStrictDraftsAndSentMail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{})
	const user = "writer@example.com"
	svc := e.mailbox(t, user)
	start, _ := e.gmail.HistoryID(user)
	v1, err := e.gmail.SaveDraft(gmailapi.Draft{User: user, To: "bob@example.net", Subject: "plan", Body: "first"})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := e.gmail.SaveDraft(gmailapi.Draft{User: user, ID: v1.ID, To: "bob@example.net", Subject: "plan", Body: "second"})
	if err != nil {
		t.Fatal(err)
	}
	sent, err := e.gmail.SendDraft(user, v1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v2.ID != v1.ID || v2.MessageID == v1.MessageID || v2.ThreadID != v1.ThreadID || sent.ThreadID != v1.ThreadID {
		t.Fatalf("revisions %+v, %+v, sent %+v: want one draft id, new message ids, one thread", v1, v2, sent)
	}
	r, err := svc.Users.History.List("me").StartHistoryId(start).Do()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range r.History {
		for _, a := range h.MessagesAdded {
			got = append(got, fmt.Sprintf("added %s %v", a.Message.Id, a.Message.LabelIds))
		}
		for _, d := range h.MessagesDeleted {
			got = append(got, fmt.Sprintf("deleted %s %v", d.Message.Id, d.Message.LabelIds))
		}
	}
	// Strict: both revisions are deleted now, so their records show no labels.
	want := []string{
		fmt.Sprintf("added %s []", v1.MessageID), fmt.Sprintf("added %s []", v2.MessageID), fmt.Sprintf("deleted %s []", v1.MessageID),
		fmt.Sprintf("deleted %s []", v2.MessageID), fmt.Sprintf("added %s [SENT]", sent.ID),
	}
	if !slices.Equal(got, want) {
		t.Errorf("history:\n got %q\nwant %q", got, want)
	}
	if _, err := e.gmail.SendDraft(user, v1.ID); err == nil {
		t.Error("sending a sent draft again: no error")
	}
	if _, err := e.gmail.SaveDraft(gmailapi.Draft{User: user, ID: "r1", Subject: "x"}); err == nil {
		t.Error("updating an unknown draft: no error")
	}
	if _, err := e.gmail.SaveDraft(gmailapi.Draft{User: user, Subject: "two\nlines"}); err == nil {
		t.Error("a subject with a newline: no error")
	}
	// Mail to oneself lands in the inbox too.
	self, _ := e.gmail.SaveDraft(gmailapi.Draft{User: user, To: user, Subject: "note"})
	note, err := e.gmail.SendDraft(user, self.ID)
	if err != nil {
		t.Fatal(err)
	}
	m, err := svc.Users.Messages.Get("me", note.ID).Format("minimal").Do()
	if err != nil || !slices.Equal(m.LabelIds, []string{"SENT", "INBOX", "UNREAD"}) {
		t.Errorf("note to self: %+v, %v; want SENT, INBOX, UNREAD", m, err)
	}
}
