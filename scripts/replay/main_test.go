package main

import (
	"bytes"
	"context"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/events"
)

func deadLetter(id, reason string) *pubsub.Message {
	e := events.Event{Version: events.Version, Type: events.MessageReceived, ID: id, User: "u1", MessageID: "m-" + id}
	body, _ := json.Marshal(e)
	attrs := e.Attributes()
	attrs["reason"], attrs["status"], attrs["attempts"] = reason, "503", "3"
	return &pubsub.Message{Data: body, Attributes: attrs}
}

// drain returns the ids of messages on sub until none arrives for a second.
func drain(t *testing.T, c *pubsub.Client, sub string, check func(*pubsub.Message)) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var mu sync.Mutex
	var ids []string
	err := c.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		id := m.Attributes["id"]
		if id == "" {
			id = string(m.Data)
		}
		ids = append(ids, id)
		if check != nil {
			check(m)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(ids)
	return ids
}

func TestReplay(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantOutput []string // ids republished to the events topic
		wantLeft   []string // ids still dead-lettered
		wantErr    string
	}{
		{"topic missing: nothing is acknowledged", []string{"-topic", "missing"}, []string{}, []string{"e1", "e2", "e3", "not an event"}, "stays dead-lettered"},
		{"everything", nil, []string{"e1", "e2", "e3"}, []string{"not an event"}, ""},
		{"one reason", []string{"-reason", "gone"}, []string{"e2"}, []string{"e1", "e3", "not an event"}, ""},
		{"at most two", []string{"-max", "2"}, nil, nil, ""}, // checked by count below
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ps := testenv.PubSub(t, testenv.Project(t))
			dlTopic := testenv.Topic(t, ps, "webhook-dead-letter")
			testenv.Subscription(t, ps, dlTopic, "webhook-dead-letter")
			evTopic := testenv.Topic(t, ps, "gmail-events")
			testenv.Subscription(t, ps, evTopic, "app")

			ctx := context.Background()
			pub := ps.Publisher("webhook-dead-letter")
			for _, m := range []*pubsub.Message{deadLetter("e1", "expired"), deadLetter("e2", "gone"), deadLetter("e3", "expired"),
				{Data: []byte("not an event"), Attributes: map[string]string{"reason": "malformed"}}} {
				if _, err := pub.Publish(ctx, m).Get(ctx); err != nil {
					t.Fatal(err)
				}
			}
			pub.Stop()

			var stdout, stderr bytes.Buffer
			env := map[string]string{"PROJECT_ID": ps.Project(), "EVENTS_TOPIC": "gmail-events"}
			args := append([]string{"-subscription", "webhook-dead-letter", "-idle", "1500ms"}, tc.args...)
			err := run(ctx, args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &stdout, &stderr)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("run = %v, want error %q\n%s", err, tc.wantErr, stderr.String())
			}
			var bad []string
			replayed := drain(t, ps, "app", func(m *pubsub.Message) {
				e, err := events.Decode(m.Data)
				if err != nil || m.Attributes["id"] != e.ID || m.Attributes["type"] != e.Type || m.Attributes["replayed"] != "true" || m.Attributes["reason"] != "" {
					bad = append(bad, m.Attributes["id"])
				}
			})
			left := drain(t, ps, "webhook-dead-letter", nil)
			if len(bad) > 0 {
				t.Errorf("republished with wrong body or attributes: %v", bad)
			}
			if tc.wantOutput == nil {
				if len(replayed) != 2 || len(left) != 2 {
					t.Errorf("replayed %v, left %v; want 2 and 2", replayed, left)
				}
				return
			}
			if strings.Join(replayed, ",") != strings.Join(tc.wantOutput, ",") || strings.Join(left, ",") != strings.Join(tc.wantLeft, ",") {
				t.Errorf("replayed %v, left %v; want %v, %v\noutput:\n%s", replayed, left, tc.wantOutput, tc.wantLeft, stdout.String())
			}
		})
	}
}

func TestReplayRejectsBadArguments(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"nothing given", nil, "-project is required\n-subscription is required\n-topic is required"},
		{"negative max", []string{"-project", "p", "-subscription", "s", "-topic", "t", "-max", "-1"}, "-max must be >= 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tc.args, func(string) (string, bool) { return "", false }, &out, &out)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("run = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}
