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
	for _, tc := range []struct {
		quota   gmailapi.QuotaProfile
		get     int64 // what messages.get costs
		profile gmailapi.QuotaProfile
	}{
		{"", 20, gmailapi.Standard2026}, // the default
		{gmailapi.Standard2026, 20, gmailapi.Standard2026},
		{gmailapi.Legacy, 5, gmailapi.Legacy},
	} {
		t.Run(string(tc.profile)+"/"+string(tc.quota), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, gmailapi.Options{Quota: tc.quota})
			if got := e.gmail.Quota().Profile; got != tc.profile {
				t.Fatalf("profile %q, want %q", got, tc.profile)
			}
			quotaUnits(t, e, tc.get)
		})
	}
}

func quotaUnits(t *testing.T, e *env, get int64) {
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
		Units: 1 + 2 + 2 + get + 5 + 1 + 100 + 50 + get,
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
	// The legacy costs: messages.get at 5 units.
	e := newEnv(t, gmailapi.Options{Now: clk.Now, Quota: gmailapi.Legacy, UserUnitsPerMinute: 10, ProjectUnitsPerMinute: 15, Profile: gmailapi.Kind})
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
	if err := e.gmail.SetQuota("", 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := getA(); err != nil {
		t.Fatalf("after raising limits: %v", err)
	}
}

// TestQuotaRollingWindow: the limits count the 60 seconds before each call,
// not the clock's minute, for the user and for the project.
func TestQuotaRollingWindow(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 6, 1, 9, 0, 50, 0, time.UTC)}
	e := newEnv(t, gmailapi.Options{Now: clk.Now, UserUnitsPerMinute: 100})
	a := e.mailbox(t, "a@example.com")
	m := e.deliver(t, gmailapi.Delivery{To: "a@example.com"})
	get := func(n int) error {
		for range n {
			if _, err := a.Users.Messages.Get("me", m.ID).Format("minimal").Do(); err != nil {
				return err
			}
		}
		return nil
	}
	for i, tc := range []struct {
		name    string
		at      time.Duration // after 09:00:50
		admit   int           // messages.get at 20 units admitted
		refused int           // then refused with this code
	}{
		{"60 units", 0, 3, 0},
		{"100 units, then over", 5 * time.Second, 2, 403},
		{"a new clock minute does not reset the window", 15 * time.Second, 0, 429},
		{"just before the first calls roll off", 60*time.Second - time.Millisecond, 0, 403},
		{"the first 60 units rolled off", 60 * time.Second, 3, 429},
		{"the next 40 rolled off", 65 * time.Second, 2, 403},
	} {
		clk.mu.Lock()
		clk.t = time.Date(2026, 6, 1, 9, 0, 50, 0, time.UTC).Add(tc.at)
		clk.mu.Unlock()
		if err := get(tc.admit); err != nil {
			t.Fatalf("step %d %s: %v", i, tc.name, err)
		}
		if tc.refused != 0 {
			wantAPIError(t, tc.name, get(1), tc.refused, "userRateLimitExceeded")
		}
	}
	if got := e.gmail.Usage("a@example.com"); got.Units != 200 || got.RateLimited != 5 {
		t.Errorf("usage %+v, want 200 units and 5 refusals", got)
	}

	// The project's window rolls the same way.
	clk2 := &clock{t: time.Date(2026, 6, 1, 9, 0, 30, 0, time.UTC)}
	p := newEnv(t, gmailapi.Options{Now: clk2.Now, ProjectUnitsPerMinute: 40})
	pa, pb := p.mailbox(t, "a@example.com"), p.mailbox(t, "b@example.com")
	list := func(s *gmail.Service) error {
		_, err := s.Users.Messages.List("me").Do() // 5 units
		return err
	}
	for range 4 {
		if err := list(pa); err != nil {
			t.Fatal(err)
		}
	}
	clk2.Advance(15 * time.Second) // 09:00:45
	for range 4 {
		if err := list(pb); err != nil {
			t.Fatal(err)
		}
	}
	clk2.Advance(20 * time.Second) // 09:01:05: 40 units in the last minute
	wantAPIError(t, "project window full", list(pa), 403, "rateLimitExceeded")
	clk2.Advance(25 * time.Second) // 09:01:30: a's 20 units rolled off
	for range 4 {
		if err := list(pa); err != nil {
			t.Fatalf("after a's units rolled off: %v", err)
		}
	}
	wantAPIError(t, "project window full again", list(pb), 403, "rateLimitExceeded")
}

// TestQuotaProfiles: standard-2026 holds a user to 6,000 units a minute
// (300 messages.get); switching to legacy raises it to 15,000 and prices
// messages.get at 5, and bad settings change nothing.
func TestQuotaProfiles(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)}
	e := newEnv(t, gmailapi.Options{Now: clk.Now})
	want := gmailapi.QuotaState{Profile: gmailapi.Standard2026, UserUnitsPerMinute: 6000, ProjectUnitsPerMinute: 1_200_000, WindowSeconds: 60,
		Units: map[string]int{"getProfile": 1, "watch": 100, "stop": 50, "history.list": 2, "messages.get": 20, "messages.list": 5, "labels.list": 1}}
	if got := e.gmail.Quota(); !quotaStateEqual(got, want) {
		t.Fatalf("default quota %+v, want %+v", got, want)
	}
	a := e.mailbox(t, "a@example.com")
	m := e.deliver(t, gmailapi.Delivery{To: "a@example.com"})
	get := func() error { _, err := a.Users.Messages.Get("me", m.ID).Format("minimal").Do(); return err }
	for i := range 300 {
		if err := get(); err != nil {
			t.Fatalf("get %d of 300: %v", i+1, err)
		}
	}
	wantAPIError(t, "301st get", get(), 403, "userRateLimitExceeded")

	for _, bad := range []struct {
		p             gmailapi.QuotaProfile
		user, project int
	}{{"standard-2025", 0, 0}, {gmailapi.Legacy, -1, 0}, {"", 0, -5}} {
		if err := e.gmail.SetQuota(bad.p, bad.user, bad.project); err == nil {
			t.Errorf("SetQuota(%q, %d, %d) accepted", bad.p, bad.user, bad.project)
		}
		if got := e.gmail.Quota(); !quotaStateEqual(got, want) {
			t.Fatalf("after SetQuota(%q, %d, %d): %+v", bad.p, bad.user, bad.project, got)
		}
	}

	if err := e.gmail.SetQuota(gmailapi.Legacy, 0, 0); err != nil {
		t.Fatal(err)
	}
	if got := e.gmail.Quota(); got.Profile != gmailapi.Legacy || got.UserUnitsPerMinute != 15_000 || got.Units["messages.get"] != 5 {
		t.Fatalf("legacy quota %+v", got)
	}
	before := e.gmail.Usage("a@example.com").Units
	if err := get(); err != nil {
		t.Fatalf("get under legacy with 6,000 units in the window: %v", err)
	}
	if got := e.gmail.Usage("a@example.com").Units - before; got != 5 {
		t.Errorf("a legacy messages.get cost %d units, want 5", got)
	}
	// Limits set with the profile, then one changed alone.
	if err := e.gmail.SetQuota(gmailapi.Standard2026, 7000, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.gmail.SetQuota("", 0, 500_000); err != nil {
		t.Fatal(err)
	}
	if got := e.gmail.Quota(); got.Profile != gmailapi.Standard2026 || got.UserUnitsPerMinute != 7000 || got.ProjectUnitsPerMinute != 500_000 {
		t.Fatalf("quota after setting limits %+v", got)
	}
}

func quotaStateEqual(a, b gmailapi.QuotaState) bool {
	return a.Profile == b.Profile && a.UserUnitsPerMinute == b.UserUnitsPerMinute && a.ProjectUnitsPerMinute == b.ProjectUnitsPerMinute &&
		a.WindowSeconds == b.WindowSeconds && maps.Equal(a.Units, b.Units)
}
