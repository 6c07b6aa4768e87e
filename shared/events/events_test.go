package events_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
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
