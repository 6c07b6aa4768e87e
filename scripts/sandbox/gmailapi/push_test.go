package gmailapi_test

import (
	"slices"
	"testing"
	"time"

	gmail "google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
)

func TestWatchLabelFilters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		req    gmail.WatchRequest
		labels [][]string // one delivery each
		want   []bool     // whether each delivery is notified
	}{
		{"no labels: everything", gmail.WatchRequest{}, [][]string{{"INBOX"}, {"SPAM"}}, []bool{true, true}},
		{"INCLUDE INBOX", gmail.WatchRequest{LabelIds: []string{"INBOX"}, LabelFilterBehavior: "INCLUDE"},
			[][]string{{"INBOX", "UNREAD"}, {"SPAM"}, {"SENT"}}, []bool{true, false, false}},
		{"include is the default", gmail.WatchRequest{LabelIds: []string{"INBOX"}},
			[][]string{{"SPAM"}, {"INBOX"}}, []bool{false, true}},
		{"EXCLUDE SPAM", gmail.WatchRequest{LabelIds: []string{"SPAM"}, LabelFilterBehavior: "exclude"},
			[][]string{{"SPAM"}, {"INBOX"}, {"SENT"}}, []bool{false, true, true}},
		{"deprecated labelFilterAction", gmail.WatchRequest{LabelIds: []string{"SPAM"}, LabelFilterAction: "exclude"},
			[][]string{{"INBOX"}, {"SPAM"}}, []bool{true, false}},
		{"behavior wins over action", gmail.WatchRequest{LabelIds: []string{"INBOX"}, LabelFilterAction: "exclude", LabelFilterBehavior: "include"},
			[][]string{{"SPAM"}, {"INBOX"}}, []bool{false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A short interval, passed on the clock, lets every delivery go out on its own.
			clk := &clock{t: time.Now()}
			e := newEnv(t, gmailapi.Options{Now: clk.Now, AfterFunc: clk.AfterFunc, PushInterval: 10 * time.Millisecond})
			svc := e.mailbox(t, "filter@example.com")
			topic, ch := e.topic(t, "gmail")
			req := tc.req
			req.TopicName = topic
			before := time.Now()
			w, err := svc.Users.Watch("me", &req).Do()
			if err != nil {
				t.Fatal(err)
			}
			h0, _ := e.gmail.HistoryID("filter@example.com")
			exp := time.UnixMilli(w.Expiration)
			if w.HistoryId != h0 || exp.Before(before.Add(7*24*time.Hour-time.Minute)) || exp.After(time.Now().Add(7*24*time.Hour)) {
				t.Fatalf("watch = %+v, want history %d and expiration 7 days out", w, h0)
			}
			var want []uint64
			for i, labels := range tc.labels {
				d := e.deliver(t, gmailapi.Delivery{To: "filter@example.com", LabelIDs: labels})
				if tc.want[i] {
					want = append(want, d.HistoryID)
				}
				clk.Advance(30 * time.Millisecond)
			}
			got := receive(t, ch, len(want), time.Second)
			var gotIDs []uint64
			for _, n := range got {
				if n.EmailAddress != "filter@example.com" {
					t.Errorf("notification for %q", n.EmailAddress)
				}
				gotIDs = append(gotIDs, n.HistoryID)
			}
			slices.Sort(gotIDs)
			if !slices.Equal(gotIDs, want) {
				t.Fatalf("notified history ids %v, want %v", gotIDs, want)
			}
			st, _ := e.gmail.Watch("filter@example.com")
			if !st.Active || st.TopicName != topic || st.Notifications.Published != int64(len(want)) {
				t.Fatalf("watch state = %+v", st)
			}
		})
	}
}

func TestNotificationsCoalescePerSecond(t *testing.T) {
	t.Parallel()
	// The kind profile coalesces; strict_test.go shows the strict one dropping.
	e := newEnv(t, gmailapi.Options{Profile: gmailapi.Kind})
	svc := e.mailbox(t, "burst@example.com")
	e.mailbox(t, "calm@example.com")
	calm := e.client(t, "calm@example.com")
	topic, ch := e.topic(t, "gmail")
	for _, s := range []*gmail.Service{svc, calm} {
		if _, err := s.Users.Watch("me", &gmail.WatchRequest{TopicName: topic}).Do(); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var last uint64
	for range 5 {
		last = e.deliver(t, gmailapi.Delivery{To: "burst@example.com"}).HistoryID
	}
	calmID := e.deliver(t, gmailapi.Delivery{To: "calm@example.com"}).HistoryID
	got := receive(t, ch, 3, 2500*time.Millisecond)
	var burst []gmailapi.Notification
	for _, n := range got {
		switch n.EmailAddress {
		case "burst@example.com":
			burst = append(burst, n)
		case "calm@example.com":
			if n.HistoryID != calmID {
				t.Errorf("calm notified %d, want %d", n.HistoryID, calmID)
			}
		}
	}
	// The first change goes out at once, the other four coalesce into one
	// notification a second later carrying the newest history id.
	if len(burst) != 2 || burst[1].HistoryID != last || burst[0].HistoryID >= last {
		t.Fatalf("burst notifications = %+v, want 2 ending with %d", burst, last)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("two notifications within %v", el)
	}
	st, _ := e.gmail.Watch("burst@example.com")
	if st.Notifications.Published != 2 || st.Notifications.Coalesced != 3 || st.Notifications.LastHistoryID != last {
		t.Fatalf("stats = %+v", st.Notifications)
	}

	// After users.stop nothing more is published.
	if err := svc.Users.Stop("me").Do(); err != nil {
		t.Fatal(err)
	}
	e.deliver(t, gmailapi.Delivery{To: "burst@example.com"})
	select {
	case n := <-ch:
		t.Fatalf("notification %+v after stop", n)
	case <-time.After(1500 * time.Millisecond):
	}
	if st, _ := e.gmail.Watch("burst@example.com"); st.Active {
		t.Fatalf("watch still active after stop: %+v", st)
	}
}

func TestWatchExpires(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	e := newEnv(t, gmailapi.Options{Now: clk.Now, PushInterval: 10 * time.Millisecond})
	svc := e.mailbox(t, "exp@example.com")
	topic, ch := e.topic(t, "gmail")
	if _, err := svc.Users.Watch("me", &gmail.WatchRequest{TopicName: topic}).Do(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(7*24*time.Hour + time.Second)
	e.deliver(t, gmailapi.Delivery{To: "exp@example.com"})
	select {
	case n := <-ch:
		t.Fatalf("notification %+v from an expired watch", n)
	case <-time.After(500 * time.Millisecond):
	}
	if st, _ := e.gmail.Watch("exp@example.com"); st.Active || st.TopicName != topic {
		t.Fatalf("expired watch state = %+v", st)
	}
}

// The push limiter runs on the sandbox's clock: with an interval of an hour
// that the test's clock passes at once, the strict profile drops a change
// within the hour and notifies the next one after it, and the kind profile
// sends the coalesced change when the hour is up.
func TestPushLimiterRunsOnTheSandboxClock(t *testing.T) {
	t.Parallel()
	for _, profile := range []gmailapi.Profile{gmailapi.Strict, gmailapi.Kind} {
		t.Run(string(profile), func(t *testing.T) {
			t.Parallel()
			clk := &clock{t: time.Now()}
			e := newEnv(t, gmailapi.Options{Now: clk.Now, AfterFunc: clk.AfterFunc, PushInterval: time.Hour, Profile: profile})
			const user = "clocked@example.com"
			svc := e.mailbox(t, user)
			topic, ch := e.topic(t, "gmail")
			if _, err := svc.Users.Watch("me", &gmail.WatchRequest{TopicName: topic}).Do(); err != nil {
				t.Fatal(err)
			}
			first := e.deliver(t, gmailapi.Delivery{To: user})
			if got := receive(t, ch, 1, time.Second); len(got) != 1 || got[0].HistoryID != first.HistoryID {
				t.Fatalf("first change: %+v, want one notification of %d", got, first.HistoryID)
			}
			within := e.deliver(t, gmailapi.Delivery{To: user})
			st, _ := e.gmail.Watch(user)
			if dropped := st.Notifications.RateDropped == 1; dropped != (profile == gmailapi.Strict) {
				t.Fatalf("a change within the interval: %+v, want it dropped by the strict profile only", st.Notifications)
			}
			clk.Advance(time.Hour)
			want := within.HistoryID // the kind profile's coalesced change goes out now
			if profile == gmailapi.Strict {
				want = e.deliver(t, gmailapi.Delivery{To: user}).HistoryID
			}
			if got := receive(t, ch, 1, time.Second); len(got) != 1 || got[0].HistoryID != want {
				t.Fatalf("after the interval: %+v, want one notification of %d", got, want)
			}
		})
	}
}
