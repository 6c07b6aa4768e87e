package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/events"
)

func TestIDIsStableAndDistinct(t *testing.T) {
	a := events.ID(events.MessageReceived, "user", "msg1")
	if a != events.ID(events.MessageReceived, "user", "msg1") {
		t.Fatal("ID is not stable")
	}
	for _, other := range []string{
		events.ID(events.MessageReceived, "user", "msg2"),
		events.ID(events.MessageReceived, "user2", "msg1"),
		events.ID(events.UserConnected, "user", "msg1"),
		events.ID(events.MessageReceived, "usermsg1"),
	} {
		if other == a {
			t.Errorf("ID collision: %s", a)
		}
	}
}

func TestDecodeRejectsWhatIsNotAnEvent(t *testing.T) {
	for _, body := range []string{``, `null`, `[]`, `{"type":"x","id":"y"}`, `{"specversion":"2","type":"x","id":"y"}`, `{"specversion":"1","id":"y"}`, `{"specversion":"1","type":"x"}`, `{"specversion":"1","type":"x","id":"y","historyId":"12"}`} {
		if _, err := events.Decode([]byte(body)); err == nil {
			t.Errorf("Decode(%s) = nil error", body)
		}
	}
}

func TestPublishRoundTripsThroughPubSub(t *testing.T) {
	ps := testenv.PubSub(t, testenv.Project(t))
	topic := testenv.Topic(t, ps, "events")
	sub := testenv.Subscription(t, ps, topic, "events-sub")
	pub := events.NewPublisher(ps, "events")
	defer pub.Stop()
	want := events.Event{Type: events.MessageReceived, ID: events.ID(events.MessageReceived, "u", "m"), User: "u", AppRef: "crm/user 42",
		EmailAddress: "a@example.com", MessageID: "m", HistoryID: 42, LabelIDs: []string{"INBOX"}, Subject: "Hi"}
	if err := pub.Publish(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got events.Event
	var attrs map[string]string
	err := ps.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		var err error
		if got, err = events.Decode(m.Data); err != nil {
			t.Error(err)
		}
		attrs = m.Attributes
		cancel()
	})
	if err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	want.Version = events.Version
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("received %s\nwant %s", gb, wb)
	}
	if attrs["type"] != events.MessageReceived || attrs["id"] != want.ID || attrs["user"] != "u" || attrs["appRef"] != "crm/user 42" {
		t.Errorf("attributes = %v", attrs)
	}
}

func TestAttributesCarryAppRefOnlyWhenSet(t *testing.T) {
	e := events.Event{Type: events.UserConnected, ID: "i", User: "u"}
	if _, ok := e.Attributes()["appRef"]; ok {
		t.Errorf("attributes %v carry an empty appRef", e.Attributes())
	}
	e.AppRef = "app-7"
	if got := e.Attributes()["appRef"]; got != "app-7" {
		t.Errorf("appRef attribute = %q, want app-7", got)
	}
}

func TestReadTypes(t *testing.T) {
	for _, tc := range []struct {
		value   string
		want    []string
		problem string
	}{
		{"", []string{events.MessageReceived}, ""},
		{"gmail.message.labels_changed, gmail.message.deleted", []string{events.MessageLabelsChanged, events.MessageDeleted}, ""},
		{strings.Join(events.MessageTypes, ","), events.MessageTypes, ""},
		{"gmail.message.received,gmail.user.connected", nil, `"gmail.user.connected" is not one of`},
		{"received", nil, `"received" is not one of`},
		{",", nil, "EVENT_TYPES"},
	} {
		env := map[string]string{}
		if tc.value != "" {
			env["EVENT_TYPES"] = tc.value
		}
		r := config.NewReader(config.FromMap(env))
		got := events.ReadTypes(r)
		err := r.Err()
		switch {
		case tc.problem != "" && (err == nil || !strings.Contains(err.Error(), tc.problem)):
			t.Errorf("EVENT_TYPES=%q: error %v, want one naming %s", tc.value, err, tc.problem)
		case tc.problem == "" && (err != nil || !slices.Equal(got, tc.want)):
			t.Errorf("EVENT_TYPES=%q: %v, %v; want %v", tc.value, got, err, tc.want)
		}
	}
}

func TestPublishKeepsEachUsersOrder(t *testing.T) {
	ps := testenv.PubSub(t, testenv.Project(t))
	topic := testenv.Topic(t, ps, "events")
	sub := testenv.Subscription(t, ps, topic, "ordered")
	pub := events.NewPublisher(ps, "events")
	defer pub.Stop()
	const perUser, batches = 20, 3
	users := []string{"u1", "u2", "u3"}
	for b := range batches {
		var evs []events.Event
		for i := range perUser {
			for _, u := range users {
				n := fmt.Sprint(b*perUser + i)
				evs = append(evs, events.Event{Type: events.MessageLabelsChanged, ID: events.ID(events.MessageLabelsChanged, u, n), User: u, MessageID: n})
			}
		}
		if err := pub.Publish(context.Background(), evs...); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	got := map[string][]string{}
	n := 0
	err := ps.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		ev, err := events.Decode(m.Data)
		if err != nil || m.OrderingKey != ev.User {
			t.Errorf("message %q with ordering key %q: %v; want the user as key", m.Data, m.OrderingKey, err)
		}
		mu.Lock()
		defer mu.Unlock()
		got[ev.User] = append(got[ev.User], ev.MessageID)
		if n++; n == len(users)*perUser*batches {
			cancel()
		}
	})
	if err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	for _, u := range users {
		var want []string
		for i := range perUser * batches {
			want = append(want, fmt.Sprint(i))
		}
		if !slices.Equal(got[u], want) {
			t.Errorf("user %s received %v, want %v", u, got[u], want)
		}
	}
}
