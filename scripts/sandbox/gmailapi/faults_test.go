package gmailapi_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	gmail "google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
)

func TestInjectedErrors(t *testing.T) {
	t.Parallel()
	// The kind profile: one 429 shape (strict_test.go draws from all of them).
	e := newEnv(t, gmailapi.Options{Profile: gmailapi.Kind})
	svc := e.mailbox(t, "err@example.com")
	other := e.mailbox(t, "fine@example.com")
	h, _ := e.gmail.HistoryID("err@example.com")
	history := func(s *gmail.Service) error { _, err := s.Users.History.List("me").StartHistoryId(h).Do(); return err }
	profile := func() error { _, err := svc.Users.GetProfile("me").Do(); return err }

	// Every history.list of one mailbox fails with 503; other methods and
	// other mailboxes are untouched.
	if err := e.gmail.SetFaults("err@example.com", gmailapi.Faults{ErrorRate: 1, ErrorCodes: []int{503}, ErrorMethods: []string{gmailapi.HistoryList}}); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, "history.list", history(svc), 503, "backendError")
	if err := profile(); err != nil {
		t.Fatalf("getProfile: %v", err)
	}
	h2, _ := e.gmail.HistoryID("fine@example.com")
	if _, err := other.Users.History.List("me").StartHistoryId(h2).Do(); err != nil {
		t.Fatalf("other mailbox: %v", err)
	}

	// A global fault on all methods; a mailbox's own (empty) faults replace it.
	e.gmail.ClearFaults("")
	if err := e.gmail.SetFaults("", gmailapi.Faults{ErrorRate: 1, ErrorCodes: []int{429}}); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, "global 429", profile(), 429, "rateLimitExceeded")
	if err := e.gmail.SetFaults("err@example.com", gmailapi.Faults{}); err != nil {
		t.Fatal(err)
	}
	if err := profile(); err != nil {
		t.Fatalf("mailbox faults should replace global ones: %v", err)
	}
	_, err := other.Users.GetProfile("me").Do()
	wantAPIError(t, "global fault on the other mailbox", err, 429, "rateLimitExceeded")
	if u := e.gmail.Usage("fine@example.com"); u.InjectedErrors != 1 || u.RateLimited != 0 {
		t.Fatalf("usage = %+v, want 1 injected error, no quota refusal", u)
	}
	e.gmail.ClearFaults("")
	if err := history(svc); err != nil {
		t.Fatalf("after ClearFaults: %v", err)
	}

	// A rate draws the same codes for the same seed, near the rate.
	run := func() []int {
		e.gmail.SetFaults("err@example.com", gmailapi.Faults{Seed: 7, ErrorRate: 0.3, ErrorCodes: []int{429, 500}})
		var codes []int
		for range 60 {
			code := 200
			if err := profile(); err != nil {
				code = apiError(t, err).Code
			}
			codes = append(codes, code)
		}
		return codes
	}
	first, second := run(), run()
	failed := 60 - countOf(first, 200)
	if !slices.Equal(first, second) || failed < 8 || failed > 30 || countOf(first, 429) == 0 || countOf(first, 500) == 0 {
		t.Fatalf("seeded runs %v and %v: want equal, about 30%% failed with 429 and 500", first, second)
	}
}

func countOf(xs []int, v int) int {
	n := 0
	for _, x := range xs {
		if x == v {
			n++
		}
	}
	return n
}

func TestInjectedLatency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{})
	svc := e.mailbox(t, "slow@example.com")
	m := e.deliver(t, gmailapi.Delivery{To: "slow@example.com"})
	if _, err := svc.Users.GetProfile("me").Do(); err != nil { // fetch the token first
		t.Fatal(err)
	}
	var f gmailapi.Faults
	if err := json.Unmarshal([]byte(`{"latency":"150ms","methodLatency":{"messages.get":400}}`), &f); err != nil {
		t.Fatal(err)
	}
	if err := e.gmail.SetFaults("slow@example.com", f); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		call     func() error
		min, max time.Duration
	}{
		{"getProfile", func() error { _, err := svc.Users.GetProfile("me").Do(); return err }, 150 * time.Millisecond, 1150 * time.Millisecond},
		{"messages.get", func() error { _, err := svc.Users.Messages.Get("me", m.ID).Format("minimal").Do(); return err }, 400 * time.Millisecond, 1400 * time.Millisecond},
	} {
		start := time.Now()
		if err := tc.call(); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el < tc.min || el > tc.max {
			t.Errorf("%s took %v, want %v..%v", tc.name, el, tc.min, tc.max)
		}
	}
}

func TestNotificationFaults(t *testing.T) {
	t.Parallel()
	// Pushes at most every 200ms; a held-back one is released after 600ms.
	e := newEnv(t, gmailapi.Options{PushInterval: 200 * time.Millisecond})
	svc := e.mailbox(t, "n@example.com")
	topic, ch := e.topic(t, "gmail")
	if _, err := svc.Users.Watch("me", &gmail.WatchRequest{TopicName: topic, LabelIds: []string{"INBOX"}}).Do(); err != nil {
		t.Fatal(err)
	}
	deliver := func() uint64 {
		h := e.deliver(t, gmailapi.Delivery{To: "n@example.com"}).HistoryID
		time.Sleep(250 * time.Millisecond)
		return h
	}
	ids := func(ns []gmailapi.Notification) []uint64 {
		var out []uint64
		for _, n := range ns {
			out = append(out, n.HistoryID)
		}
		return out
	}
	quiet := func(what string) {
		t.Helper()
		select {
		case n := <-ch:
			t.Fatalf("%s: unexpected notification %+v", what, n)
		case <-time.After(400 * time.Millisecond):
		}
	}

	// Dropped: nothing arrives, the stats say why.
	e.gmail.SetFaults("n@example.com", gmailapi.Faults{DropNotifications: 1})
	deliver()
	quiet("dropped")
	if st, _ := e.gmail.Watch("n@example.com"); st.Notifications.Dropped != 1 || st.Notifications.Published != 0 {
		t.Fatalf("after drop: %+v", st.Notifications)
	}

	// Duplicated: 2 or 3 copies of one notification.
	e.gmail.SetFaults("n@example.com", gmailapi.Faults{DuplicateNotifications: 1, DuplicateCopies: 2})
	h := deliver()
	got := receive(t, ch, 2, time.Second)
	if len(got) < 2 || len(got) > 3 || countOf64(ids(got), h) != len(got) {
		t.Fatalf("duplicated: got %v, want 2-3 copies of %d", ids(got), h)
	}

	// Reordered: a held-back notification goes out after the next one.
	e.gmail.SetFaults("n@example.com", gmailapi.Faults{ReorderNotifications: 1})
	held := deliver()
	e.gmail.ClearFaults("n@example.com")
	next := deliver()
	got = receive(t, ch, 2, 1500*time.Millisecond)
	if !slices.Equal(ids(got), []uint64{next, held}) {
		t.Fatalf("reordered: got %v, want [%d %d]", ids(got), next, held)
	}
	// Held back with nothing after it: it still goes out, a few intervals late.
	e.gmail.SetFaults("n@example.com", gmailapi.Faults{ReorderNotifications: 1})
	late := deliver()
	got = receive(t, ch, 1, 2*time.Second)
	if !slices.Equal(ids(got), []uint64{late}) {
		t.Fatalf("held alone: got %v, want [%d]", ids(got), late)
	}
	st, _ := e.gmail.Watch("n@example.com")
	if st.Notifications.Reordered != 2 || st.Notifications.Duplicated < 1 {
		t.Fatalf("stats = %+v", st.Notifications)
	}
}

func countOf64(xs []uint64, v uint64) int {
	n := 0
	for _, x := range xs {
		if x == v {
			n++
		}
	}
	return n
}

func TestDelayedHistoryVisibility(t *testing.T) {
	t.Parallel()
	// The kind profile: historyId stays at the newest visible record (strict_test.go has the strict reading).
	clk := &clock{t: time.Now()}
	e := newEnv(t, gmailapi.Options{Now: clk.Now, AfterFunc: clk.AfterFunc, PushInterval: 10 * time.Millisecond, Profile: gmailapi.Kind})
	svc := e.mailbox(t, "race@example.com")
	topic, ch := e.topic(t, "gmail")
	if _, err := svc.Users.Watch("me", &gmail.WatchRequest{TopicName: topic}).Do(); err != nil {
		t.Fatal(err)
	}
	start, _ := e.gmail.HistoryID("race@example.com")
	if err := e.gmail.SetFaults("race@example.com", gmailapi.Faults{HistoryDelay: gmailapi.Duration(3 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	d := e.deliver(t, gmailapi.Delivery{To: "race@example.com"})
	n := receive(t, ch, 1, 2*time.Second)
	if n[0].HistoryID != d.HistoryID {
		t.Fatalf("push = %+v, want history %d", n[0], d.HistoryID)
	}
	r, err := svc.Users.History.List("me").StartHistoryId(start).Do()
	if err != nil || len(r.History) != 0 || r.HistoryId != start {
		t.Fatalf("history right after the push = %+v, %v; want nothing yet, historyId %d", r, err, start)
	}
	// The message itself is there; only history lags.
	if _, err := svc.Users.Messages.Get("me", d.ID).Format("metadata").Do(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(3200 * time.Millisecond)
	r, err = svc.Users.History.List("me").StartHistoryId(start).Do()
	if err != nil || len(r.History) != 1 || r.HistoryId != d.HistoryID {
		t.Fatalf("history after the delay = %+v, %v; want the message at %d", r, err, d.HistoryID)
	}
}

func TestForcedHistoryExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{})
	svc := e.mailbox(t, "x@example.com")
	e.mailbox(t, "y@example.com")
	y := e.client(t, "y@example.com")
	start, _ := e.gmail.HistoryID("x@example.com")
	yStart, _ := e.gmail.HistoryID("y@example.com")
	a := e.deliver(t, gmailapi.Delivery{To: "x@example.com"})
	b := e.deliver(t, gmailapi.Delivery{To: "x@example.com"})
	if err := e.gmail.SetFaults("", gmailapi.Faults{ExpireHistory: true}); err != nil {
		t.Fatal(err)
	}
	c := e.deliver(t, gmailapi.Delivery{To: "x@example.com"})
	for _, tc := range []struct {
		name  string
		start uint64
		want  int // records, -1 for 404
	}{
		{"from the start", start, -1},
		{"from a", a.HistoryID, -1},
		{"from b (when the fault was set)", b.HistoryID, 1},
		{"from c", c.HistoryID, 0},
	} {
		r, err := svc.Users.History.List("me").StartHistoryId(tc.start).Do()
		if tc.want < 0 {
			wantAPIError(t, tc.name, err, 404, "notFound")
		} else if err != nil || len(r.History) != tc.want {
			t.Errorf("%s: %+v, %v; want %d records", tc.name, r, err, tc.want)
		}
	}
	if _, err := y.Users.History.List("me").StartHistoryId(yStart).Do(); err != nil {
		t.Errorf("y was at its head when the fault was set: %v", err)
	}
	e.gmail.ClearFaults("")
	if r, err := svc.Users.History.List("me").StartHistoryId(start).Do(); err != nil || len(r.History) != 3 {
		t.Fatalf("after clearing: %+v, %v", r, err)
	}
}

func TestFaultsJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want gmailapi.Faults
		bad  bool
	}{
		{in: `{"errorRate":0.3,"errorCodes":[429,500],"errorMethods":["history.list","messages.get"],"seed":3}`,
			want: gmailapi.Faults{Seed: 3, ErrorRate: 0.3, ErrorCodes: []int{429, 500}, ErrorMethods: []string{"history.list", "messages.get"}}},
		{in: `{"latency":"2s","historyDelay":1500}`,
			want: gmailapi.Faults{Latency: gmailapi.Duration(2 * time.Second), HistoryDelay: gmailapi.Duration(1500 * time.Millisecond)}},
		{in: `{"latency":"soon"}`, bad: true},
		{in: `{"latency":true}`, bad: true},
	} {
		var got gmailapi.Faults
		err := json.Unmarshal([]byte(tc.in), &got)
		if tc.bad {
			if err == nil {
				t.Errorf("%s: no error", tc.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(tc.want)
		if string(g) != string(w) {
			t.Errorf("%s: got %s, want %s", tc.in, g, w)
		}
	}
	e := newEnv(t, gmailapi.Options{})
	for _, f := range []gmailapi.Faults{
		{ErrorRate: -0.1}, {DropNotifications: 2}, {ErrorCodes: []int{404}}, {ErrorMethods: []string{"threads.list"}},
		{MethodLatency: map[string]gmailapi.Duration{"nope": 1}}, {Latency: gmailapi.Duration(2 * time.Minute)},
		{HistoryDelay: -1}, {DuplicateCopies: 11},
	} {
		if err := e.gmail.SetFaults("", f); err == nil {
			t.Errorf("SetFaults(%+v) accepted", f)
		}
	}
	if got := e.gmail.Faults(); len(got) != 0 {
		t.Fatalf("faults in force after rejected ones: %v", got)
	}
}
