package webhook

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/platform"
)

// TestRegisteredFunction runs the function as deployed: registered by init,
// configured from the environment, served by the functions framework, fed by
// a Pub/Sub emulator push subscription, its key read from the sandbox's
// Secret Manager. The receiver fails each event's first request, so every
// event is delivered on a repeat.
func TestRegisteredFunction(t *testing.T) {
	ctx := context.Background()
	w := testenv.NewWorld(t, testenv.Options{})
	ps, project := w.PubSub, w.Project
	w.PutSecret(testSecretName, testSecret) // Secret Manager with the signing key

	rv := newReceiver(t, func(n int, w http.ResponseWriter) {
		w.WriteHeader(map[bool]int{true: http.StatusServiceUnavailable, false: http.StatusNoContent}[n == 1])
	})

	for k, v := range w.Env(map[string]string{
		"WEBHOOK_URL":       rv.URL + "/hook",
		"DEAD_LETTER_TOPIC": "webhook-dead-letter", "EVENTS_TOPIC": "gmail-events",
		"WEBHOOK_TIMEOUT": "2s", "WEBHOOK_CALL_BUDGET": "10s",
	}) {
		t.Setenv(k, v)
	}
	url := testenv.ServeRegistered(t, "Webhook")

	eventsTopic := testenv.Topic(t, ps, "gmail-events")
	testenv.Topic(t, ps, "webhook-dead-letter")
	if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: "projects/" + project + "/subscriptions/webhook", Topic: eventsTopic, AckDeadlineSeconds: 30,
		PushConfig: &pubsubpb.PushConfig{PushEndpoint: url + "/projects/" + project + "/topics/gmail-events"},
	}); err != nil {
		t.Fatal(err)
	}
	pub := events.NewPublisher(ps, "gmail-events")
	defer pub.Stop()
	var want []events.Event
	for i := range 3 {
		ev, _ := testEvent(300 + i)
		want = append(want, ev)
	}
	if err := pub.Publish(ctx, want...); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		got := map[string]int{}
		for _, r := range rv.got() {
			if r.verified != nil {
				t.Fatalf("request for %s does not verify: %v", r.id, r.verified)
			}
			got[r.id]++
		}
		done := true
		for _, ev := range want {
			done = done && got[ev.ID] >= 2
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver saw %v, want every event of %d at least twice (503 then 204)", got, len(want))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestURLFromSecret reads the deployed configuration, whose URL is in the
// sandbox's Secret Manager: the URL comes from the secret, and a missing,
// malformed or doubly set one is refused with an error that names the
// secret and quotes no part of the URL a token may be in.
func TestURLFromSecret(t *testing.T) {
	w := testenv.NewWorld(t, testenv.Options{})
	const token = "t0ken-in-the-path"
	w.PutSecret("webhook-url", "https://app.example.com/hooks/"+token+"\n")
	w.PutSecret("webhook-url-plain-http", "http://app.example.com/hooks/"+token)
	env := func(extra map[string]string) platform.Lookup {
		m := w.Env(map[string]string{"DEAD_LETTER_TOPIC": "webhook-dead-letter", "EVENTS_TOPIC": "gmail-events"})
		for k, v := range extra {
			m[k] = v
		}
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}

	cfg, err := readDeployed(env(map[string]string{"WEBHOOK_URL_SECRET_NAME": "webhook-url"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.List[0].URL != "https://app.example.com/hooks/"+token {
		t.Errorf("URL = %q, want the secret's value, trimmed", cfg.List[0].URL)
	}

	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"no such secret", map[string]string{"WEBHOOK_URL_SECRET_NAME": "webhook-url-gone"}, "webhook URL secret webhook-url-gone"},
		{"plain http", map[string]string{"WEBHOOK_URL_SECRET_NAME": "webhook-url-plain-http"}, "must use https"},
		{"both set", map[string]string{"WEBHOOK_URL_SECRET_NAME": "webhook-url", "WEBHOOK_URL": "https://app.example.com/x"}, "not both"},
		{"neither set", nil, "WEBHOOK_URL_SECRET_NAME: missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readDeployed(env(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("readDeployed error = %v, want it to contain %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("error %q quotes the URL's path", err)
			}
		})
	}
}
