package gmailapi_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	gmail "google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
)

// The harsher behaviours switched on by faults, each against the default
// that tests not about it keep.

// pageThrough lists history from start to its end and returns the pages'
// record counts and the record ids in order.
func pageThrough(t *testing.T, svc *gmail.Service, start uint64, max int64) (pages []int, ids []uint64) {
	t.Helper()
	for tok := ""; ; {
		r, err := svc.Users.History.List("me").StartHistoryId(start).MaxResults(max).PageToken(tok).Do()
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, len(r.History))
		for _, h := range r.History {
			ids = append(ids, h.Id)
		}
		if tok = r.NextPageToken; tok == "" {
			return pages, ids
		}
		if len(pages) > 50 {
			t.Fatalf("pages %v: the listing does not end", pages)
		}
	}
}

func TestEmptyPagesOnUnfilteredHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{})
	const user = "empty@example.com"
	svc := e.mailbox(t, user)
	start, _ := e.gmail.HistoryID(user)
	var want []uint64
	for range 5 {
		want = append(want, e.deliver(t, gmailapi.Delivery{To: user}).HistoryID)
	}
	// Default: an unfiltered page holds maxResults records.
	if pages, ids := pageThrough(t, svc, start, 2); !slices.Equal(pages, []int{2, 2, 1}) || !slices.Equal(ids, want) {
		t.Fatalf("default: pages %v, ids %v; want [2 2 1] and %v", pages, ids, want)
	}
	// Every page that would hold records is first answered empty, with a
	// token that leads on to them: nothing is lost, nothing repeated.
	if err := e.gmail.SetFaults(user, gmailapi.Faults{EmptyPages: 1}); err != nil {
		t.Fatal(err)
	}
	pages, ids := pageThrough(t, svc, start, 2)
	if !slices.Equal(pages, []int{0, 2, 0, 2, 0, 1}) || !slices.Equal(ids, want) {
		t.Fatalf("emptyPages 1: pages %v, ids %v; want [0 2 0 2 0 1] and %v", pages, ids, want)
	}
	// Nothing to list: no empty page with a token either.
	end, _ := e.gmail.HistoryID(user)
	if pages, _ := pageThrough(t, svc, end, 2); !slices.Equal(pages, []int{0}) {
		t.Fatalf("from the end: pages %v, want one empty page without a token", pages)
	}
}

func TestHistoryIDReadings(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	e := newEnv(t, gmailapi.Options{Now: clk.Now, AfterFunc: clk.AfterFunc})
	const user = "reading@example.com"
	svc := e.mailbox(t, user)
	start, _ := e.gmail.HistoryID(user)
	seen := e.deliver(t, gmailapi.Delivery{To: user})
	// Records are hidden while younger than the delay: wait the first out.
	if err := e.gmail.SetFaults(user, gmailapi.Faults{HistoryDelay: gmailapi.Duration(500 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(600 * time.Millisecond)
	hidden := e.deliver(t, gmailapi.Delivery{To: user})
	for _, tc := range []struct {
		name    string
		indexed bool
		want    uint64
	}{
		{"strict: the mailbox's current id", false, hidden.HistoryID},
		{"lenient: the newest indexed record", true, seen.HistoryID},
	} {
		f := gmailapi.Faults{HistoryDelay: gmailapi.Duration(500 * time.Millisecond), IndexedHistoryID: tc.indexed}
		if err := e.gmail.SetFaults(user, f); err != nil {
			t.Fatal(err)
		}
		r, err := svc.Users.History.List("me").StartHistoryId(start).Do()
		if err != nil || len(r.History) != 1 || r.History[0].Id != seen.HistoryID || r.HistoryId != tc.want {
			t.Errorf("%s: %+v, %v; want the record %d and historyId %d", tc.name, r, err, seen.HistoryID, tc.want)
		}
		// getProfile tells the current id under either reading.
		if p, err := svc.Users.GetProfile("me").Do(); err != nil || p.HistoryId != hidden.HistoryID {
			t.Errorf("%s: getProfile %+v, %v; want %d", tc.name, p, err, hidden.HistoryID)
		}
	}
}

func TestRecordsWithoutLabelIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{})
	const user = "nolabels@example.com"
	svc := e.mailbox(t, user)
	start, _ := e.gmail.HistoryID(user)
	for range 40 {
		e.deliver(t, gmailapi.Delivery{To: user})
	}
	labelled := func() (with, without map[uint64]bool) {
		t.Helper()
		r, err := svc.Users.History.List("me").StartHistoryId(start).Do()
		if err != nil {
			t.Fatal(err)
		}
		with, without = map[uint64]bool{}, map[uint64]bool{}
		for _, h := range r.History {
			if m := h.MessagesAdded[0].Message; m.Id == "" || m.ThreadId == "" {
				t.Fatalf("record %d lost its message id or thread", h.Id)
			} else if m.LabelIds == nil {
				without[h.Id] = true
			} else {
				with[h.Id] = true
			}
		}
		return with, without
	}
	if _, without := labelled(); len(without) != 0 {
		t.Fatalf("default: %d records without labelIds, want none", len(without))
	}
	if err := e.gmail.SetFaults(user, gmailapi.Faults{Seed: 7, OmitLabelIDs: 0.5}); err != nil {
		t.Fatal(err)
	}
	with, without := labelled()
	if len(with) == 0 || len(without) == 0 {
		t.Fatalf("omitLabelIds 0.5: %d with, %d without; want some of each", len(with), len(without))
	}
	// Each record shows alike on every read.
	if again, _ := labelled(); !mapsEqual(again, with) {
		t.Errorf("a second read shows labels on other records")
	}
	// labelId still filters on the labels the record no longer shows.
	r, err := svc.Users.History.List("me").StartHistoryId(start).LabelId("INBOX").Do()
	if err != nil || len(r.History) != 40 {
		t.Errorf("labelId INBOX: %d records, %v; want all 40", len(r.History), err)
	}
}

func mapsEqual(a, b map[uint64]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func TestMessageNotFoundRightAfterItArrives(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	e := newEnv(t, gmailapi.Options{Now: clk.Now})
	const user = "young@example.com"
	svc := e.mailbox(t, user)
	if err := e.gmail.SetFaults(user, gmailapi.Faults{MessageDelay: gmailapi.Duration(3 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	start, _ := e.gmail.HistoryID(user)
	d := e.deliver(t, gmailapi.Delivery{To: user})
	if r, err := svc.Users.History.List("me").StartHistoryId(start).Do(); err != nil || len(r.History) != 1 {
		t.Fatalf("history = %+v, %v; want the arrival shown at once", r, err)
	}
	_, err := svc.Users.Messages.Get("me", d.ID).Format("metadata").Do()
	wantAPIError(t, "messages.get right after the arrival", err, 404, "notFound")
	clk.Advance(2900 * time.Millisecond)
	_, err = svc.Users.Messages.Get("me", d.ID).Format("metadata").Do()
	wantAPIError(t, "messages.get within the delay", err, 404, "notFound")
	clk.Advance(100 * time.Millisecond)
	if m, err := svc.Users.Messages.Get("me", d.ID).Format("metadata").Do(); err != nil || m.Id != d.ID {
		t.Fatalf("messages.get once the delay passed = %+v, %v", m, err)
	}
}

func TestLatePush(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{PushInterval: 50 * time.Millisecond})
	const user = "late@example.com"
	svc := e.mailbox(t, user)
	topic, ch := e.topic(t, "gmail")
	if _, err := svc.Users.Watch("me", &gmail.WatchRequest{TopicName: topic}).Do(); err != nil {
		t.Fatal(err)
	}
	if err := e.gmail.SetFaults(user, gmailapi.Faults{PushDelay: gmailapi.Duration(1500 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	d := e.deliver(t, gmailapi.Delivery{To: user})
	select {
	case n := <-ch:
		t.Fatalf("notification %+v after %v, want it held for 1.5s", n, time.Since(sent))
	case <-time.After(time.Second):
	}
	if got := receive(t, ch, 1, 2*time.Second); got[0].HistoryID != d.HistoryID || time.Since(sent) < 1500*time.Millisecond {
		t.Fatalf("late push %+v after %v, want %d after 1.5s", got, time.Since(sent), d.HistoryID)
	}
}

func TestConcurrencyCapIsFiveByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{})
	const user = "five@example.com"
	svc := e.mailbox(t, user)
	if err := e.gmail.SetFaults(user, gmailapi.Faults{Latency: gmailapi.Duration(400 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 7)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { _, errs[i] = svc.Users.GetProfile("me").Do() })
	}
	wg.Wait()
	refused := 0
	for _, err := range errs {
		if err != nil {
			wantAPIError(t, "call above the cap", err, 429, "rateLimitExceeded")
			refused++
		}
	}
	if refused != 2 {
		t.Errorf("7 calls at once: %d refused, want 2 above the cap of 5", refused)
	}
}

func TestNewFaultsRejectBadValues(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{})
	const user = "badfault@example.com"
	e.mailbox(t, user)
	good := gmailapi.Faults{MessageDelay: gmailapi.Duration(time.Second)}
	if err := e.gmail.SetFaults(user, good); err != nil {
		t.Fatal(err)
	}
	for _, f := range []gmailapi.Faults{
		{EmptyPages: 1.5}, {EmptyPages: -0.1}, {OmitLabelIDs: 2},
		{MessageDelay: gmailapi.Duration(-time.Second)}, {MessageDelay: gmailapi.Duration(2 * time.Hour)},
		{PushDelay: gmailapi.Duration(-time.Millisecond)}, {PushDelay: gmailapi.Duration(61 * time.Minute)},
	} {
		if err := e.gmail.SetFaults(user, f); err == nil {
			t.Errorf("SetFaults(%+v) accepted", f)
		}
	}
	if got := e.gmail.Faults()[user]; got.MessageDelay != good.MessageDelay || got.EmptyPages != 0 {
		t.Errorf("faults after refusals: %+v, want %+v unchanged", got, good)
	}
}
