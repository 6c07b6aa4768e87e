package webhook

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/endpointhealth"
)

// TestAutoDisableAndEnable: an endpoint failing for longer than DisableAfter
// is disabled (its health says so, gmail.endpoint.disabled is published and
// logged), then takes no request and dead-letters nothing, its events left
// with Pub/Sub; enabled again, it delivers.
func TestAutoDisableAndEnable(t *testing.T) {
	var up atomic.Bool
	rv := newReceiver(t, func(_ int, w http.ResponseWriter) {
		w.WriteHeader(map[bool]int{true: http.StatusNoContent, false: http.StatusServiceUnavailable}[up.Load()])
	})
	now := time.Now().UTC().Truncate(time.Microsecond) // as Firestore keeps it
	clock := func() time.Time { return now }
	hs := newHarness(t, rv.URL, staticSecrets{testSecretName: testSecret}, func(c *Config) {
		c.Name, c.DisableAfter = "crm", time.Hour
		c.CallBudget = 400 * time.Millisecond
	})
	book := endpointhealth.New(hs.Firestore, clock)
	announce := hs.PubSub.Publisher(testenv.EventsTopicID)
	t.Cleanup(announce.Stop)
	hs.h.WithHealth(book, announce)
	hs.h.now = clock
	ctx := context.Background()
	ev, body := testEvent(40)
	push := pushEvent(t, body, ev.Attributes(), now)

	if err := hs.h.Handle(ctx, push); err == nil {
		t.Fatal("Handle = nil while the receiver fails")
	}
	st, err := book.Get(ctx, "crm")
	if err != nil {
		t.Fatal(err)
	}
	if st.ConsecutiveFailures != 1 || st.LastFailureStatus != 503 || st.FailingSince == nil || !st.FailingSince.Equal(now) || st.Disabled ||
		st.OldestUndelivered == nil || st.LastFailure == nil {
		t.Fatalf("health after one failure = %+v", st)
	}

	now = now.Add(2 * time.Hour)
	if err := hs.h.Handle(ctx, push); err == nil {
		t.Fatal("Handle = nil while the receiver fails")
	}
	if st, _ = book.Get(ctx, "crm"); !st.Disabled || st.ConsecutiveFailures != 2 || !st.Announced {
		t.Fatalf("health after failing 2h with DisableAfter 1h = %+v, want disabled and announced", st)
	}
	got := hs.Events.Await(1)
	if len(got) != 1 || got[0].Type != EndpointDisabled {
		t.Fatalf("events published = %+v, want one %s", got, EndpointDisabled)
	}
	if !strings.Contains(hs.logs.String(), `"message":"webhook endpoint disabled"`) {
		t.Error("no \"webhook endpoint disabled\" log entry for the alert")
	}

	up.Store(true)
	before := len(rv.got())
	now = now.Add(time.Minute)
	if err := hs.h.Handle(ctx, push); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("Handle on a disabled endpoint = %v, want it refused so Pub/Sub keeps the event", err)
	}
	if n := len(rv.got()); n != before {
		t.Errorf("a disabled endpoint's receiver got %d more requests", n-before)
	}

	if _, err := book.Enable(ctx, "crm"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(healthTTL)
	if err := hs.h.Handle(ctx, push); err != nil {
		t.Fatalf("Handle after enable = %v, want delivered", err)
	}
	if st, _ = book.Get(ctx, "crm"); st.Disabled || st.ConsecutiveFailures != 0 || st.LastSuccess == nil || st.FailingSince != nil {
		t.Errorf("health after enable and a delivery = %+v", st)
	}
	if dl := hs.deadLetters(t, 0, 300*time.Millisecond); len(dl) != 0 {
		t.Errorf("%d events dead-lettered, want none", len(dl))
	}
	if _, err := book.Enable(ctx, "nobody"); err != endpointhealth.ErrNotFound {
		t.Errorf("Enable of an unknown endpoint = %v, want ErrNotFound", err)
	}
}

// TestDisabledEndpointDeadLettersAfterTheRetryWindow: an event a disabled
// endpoint holds back past the retry window goes to its dead-letter topic,
// not to expiry in the subscription.
func TestDisabledEndpointDeadLettersAfterTheRetryWindow(t *testing.T) {
	rv := newReceiver(t, status(http.StatusNoContent))
	hs := newHarness(t, rv.URL, staticSecrets{testSecretName: testSecret}, func(c *Config) { c.Disabled = true })
	ev, body := testEvent(50)
	if err := hs.h.Handle(context.Background(), pushEvent(t, body, ev.Attributes(), time.Now())); err == nil {
		t.Fatal("Handle on a disabled endpoint = nil, want the event left with Pub/Sub")
	}
	if err := hs.h.Handle(context.Background(), pushEvent(t, body, ev.Attributes(), time.Now().Add(-25*time.Hour))); err != nil {
		t.Fatalf("Handle of an event past the retry window = %v, want it dead-lettered", err)
	}
	dl := hs.deadLetters(t, 1, 5*time.Second)
	if len(dl) != 1 || dl[0].Attributes["reason"] != ReasonDisabled || dl[0].Attributes["id"] != ev.ID {
		t.Fatalf("dead letters = %v, want the event with reason %s", dl, ReasonDisabled)
	}
	if n := len(rv.got()); n != 0 {
		t.Errorf("a disabled endpoint's receiver got %d requests", n)
	}
}
