package gmailapi_test

import (
	"maps"
	"testing"
	"time"

	gmail "google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
)

func TestQuotaUnits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{})
	svc := e.mailbox(t, "q@example.com")
	e.mailbox(t, "q2@example.com")
	topic, _ := e.topic(t, "quota")
	m := e.deliver(t, gmailapi.Delivery{To: "q@example.com"})
	h, _ := e.gmail.HistoryID("q@example.com")

	calls := []func() error{
		func() error { _, err := svc.Users.GetProfile("me").Do(); return err },
		func() error { _, err := svc.Users.History.List("me").StartHistoryId(h).Do(); return err },
		func() error { _, err := svc.Users.History.List("me").StartHistoryId(h).Do(); return err },
		func() error { _, err := svc.Users.Messages.Get("me", m.ID).Format("metadata").Do(); return err },
		func() error { _, err := svc.Users.Messages.List("me").Do(); return err },
		func() error { _, err := svc.Users.Labels.List("me").Do(); return err },
		func() error {
			_, err := svc.Users.Watch("me", &gmail.WatchRequest{TopicName: topic}).Do()
			return err
		},
		func() error { return svc.Users.Stop("me").Do() },
		// A call that fails on its parameters still costs its units.
		func() error {
			_, err := svc.Users.Messages.Get("me", "00000000000000ff").Format("metadata").Do()
			wantAPIError(t, "get unknown message", err, 404, "notFound")
			return nil
		},
	}
	for i, c := range calls {
		if err := c(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	want := gmailapi.Usage{
		Units: 1 + 2 + 2 + 5 + 5 + 1 + 100 + 50 + 5,
		Calls: map[string]int64{"getProfile": 1, "history.list": 2, "messages.get": 2, "messages.list": 1, "labels.list": 1, "watch": 1, "stop": 1},
	}
	for _, user := range []string{"q@example.com", "Q@EXAMPLE.COM", ""} {
		got := e.gmail.Usage(user)
		if got.Units != want.Units || !maps.Equal(got.Calls, want.Calls) || got.RateLimited != 0 {
			t.Errorf("Usage(%q) = %+v, want %+v", user, got, want)
		}
	}
	if got := e.gmail.Usage("q2@example.com"); got.Units != 0 || len(got.Calls) != 0 {
		t.Errorf("untouched mailbox usage = %+v", got)
	}
	e.gmail.ResetUsage()
	if got := e.gmail.Usage(""); got.Units != 0 {
		t.Errorf("after reset = %+v", got)
	}
}

func TestQuotaLimits(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 10, 0, time.UTC)}
	// The kind profile: one 429 shape (strict_test.go has Gmail's several).
	e := newEnv(t, gmailapi.Options{Now: clk.Now, UserUnitsPerMinute: 10, ProjectUnitsPerMinute: 15, Profile: gmailapi.Kind})
	a := e.mailbox(t, "a@example.com")
	b := e.mailbox(t, "b@example.com")
	m := e.deliver(t, gmailapi.Delivery{To: "a@example.com"})
	getA := func() error { _, err := a.Users.Messages.Get("me", m.ID).Format("minimal").Do(); return err }
	profileB := func() error { _, err := b.Users.GetProfile("me").Do(); return err }

	for i, tc := range []struct {
		name    string
		call    func() error
		advance time.Duration
		wantErr bool
	}{
		{"a: 5 units", getA, 0, false},
		{"a: 10 units", getA, 0, false},
		{"a: over the user limit", getA, 0, true},
		{"b: 11 project units", profileB, 0, false},
		{"b: 15 project units", func() error {
			for range 4 {
				if err := profileB(); err != nil {
					return err
				}
			}
			return nil
		}, 0, false},
		{"b: over the project limit", profileB, 0, true},
		{"next minute", getA, time.Minute, false},
	} {
		clk.Advance(tc.advance)
		err := tc.call()
		if tc.wantErr {
			wantAPIError(t, tc.name, err, 429, "rateLimitExceeded")
		} else if err != nil {
			t.Fatalf("step %d %s: %v", i, tc.name, err)
		}
	}
	for _, tc := range []struct {
		user        string
		units       int64
		rateLimited int64
	}{
		{"a@example.com", 15, 1},
		{"b@example.com", 5, 1},
		{"", 20, 2},
	} {
		got := e.gmail.Usage(tc.user)
		if got.Units != tc.units || got.RateLimited != tc.rateLimited {
			t.Errorf("Usage(%q) = %+v, want %d units, %d rate limited", tc.user, got, tc.units, tc.rateLimited)
		}
	}
	e.gmail.SetQuotaLimits(1000, 1000)
	if err := getA(); err != nil {
		t.Fatalf("after raising limits: %v", err)
	}
}
