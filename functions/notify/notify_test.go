package notify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/platform"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

const email = "nora@example.com"

// world is one test's testenv.World with nora connected.
type world struct {
	*testenv.World
	t       *testing.T
	project string
	sb      *sandbox.Sandbox
	store   *store.Store
	user    store.User
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{World: testenv.NewWorld(t, testenv.Options{}), t: t}
	w.project, w.sb, w.store = w.Project, w.Sandbox, w.Store
	w.user = w.Connect(email)
	return w
}

// messagePublished and topicSource are what Eventarc sets on a message of a topic.
const messagePublished = platform.MessagePublished

func topicSource(topic string) string { return "//pubsub.googleapis.com/" + topic }

// handler returns the function's handler over a Syncer of this world, for
// pushes of projects/p/topics/gmail, and its log.
func (w *world) handler() (*Handler, *testenv.LogBuffer) {
	s := gmailsync.New(gmailsync.Deps{Users: w.store, Gmail: w.Mailboxes(), Events: w.Publisher, Logger: w.Log},
		gmailsync.Settings{BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond, MaxTries: 2})
	return New(s, w.project, "projects/p/topics/gmail", w.Log), w.Logs
}

// events waits for at least want events, and for the stream to go quiet.
func (w *world) events(want int) []events.Event { return w.Events.Await(want) }

func messageIDs(evs []events.Event) []string {
	var ids []string
	for _, ev := range evs {
		ids = append(ids, ev.MessageID)
	}
	slices.Sort(ids)
	return ids
}

// cloudEvent builds the CloudEvent the functions framework makes of a
// Pub/Sub push whose message data is data (raw JSON of the data field when
// rawData is set).
func cloudEvent(t *testing.T, data string, rawData bool) event.Event {
	t.Helper()
	field := `"` + base64.StdEncoding.EncodeToString([]byte(data)) + `"`
	if rawData {
		field = data
	}
	body := `{"message":{"@type":"type.googleapis.com/google.pubsub.v1.PubsubMessage","attributes":null,"data":` + field +
		`,"messageId":"42","publishTime":"2026-11-26T10:00:00Z"}}`
	e := event.New()
	e.SetID("42")
	e.SetType(messagePublished)
	e.SetSource("//pubsub.googleapis.com/projects/p/topics/gmail")
	if err := e.SetData(event.ApplicationJSON, []byte(body)); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestGarbagePushesAreAcknowledged(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	h, logs := w.handler()
	for _, tc := range []struct {
		name    string
		data    string
		rawData bool
		reason  string
	}{
		{"not JSON", "hello", false, "not JSON"},
		{"wrong types", `{"emailAddress":["x"],"historyId":{}}`, false, "emailAddress is a JSON array"},
		{"missing email", `{"historyId":99999999}`, false, "emailAddress missing"},
		{"missing history id", `{"emailAddress":"` + email + `"}`, false, "historyId missing"},
		{"negative history id", `{"emailAddress":"` + email + `","historyId":-1}`, false, "not a positive whole number"},
		{"bad base64", `"***"`, true, "not base64"},
		{"no data", `null`, true, "no message data"},
		{"huge body", `{"emailAddress":"` + email + `","historyId":1,"pad":"` + strings.Repeat("a", MaxPushBytes) + `"}`, false, "is over"},
		{"unknown user", `{"emailAddress":"stranger@example.com","historyId":5}`, false, "no such user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(logs.String())
			if err := h.Handle(context.Background(), cloudEvent(t, tc.data, tc.rawData)); err != nil {
				t.Fatalf("handle: got %v, want nil (acknowledged)", err)
			}
			var lines []map[string]any
			for _, l := range strings.Split(strings.TrimSpace(logs.String()[before:]), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) == nil {
					lines = append(lines, m)
				}
			}
			if len(lines) != 1 || lines[0]["severity"] != "WARNING" || lines[0]["message"] != "push ignored" ||
				!strings.Contains(fmt.Sprint(lines[0]["reason"]), tc.reason) {
				t.Errorf("log: got %v, want one WARNING push ignored with reason containing %q", lines, tc.reason)
			}
			if strings.Contains(logs.String()[before:], "@example.com") {
				t.Errorf("log quotes an address: %s", logs.String()[before:])
			}
		})
	}
	u, err := w.store.Get(context.Background(), w.user.Key)
	if err != nil || !u.UpdatedAt.Equal(w.user.UpdatedAt) || u.Cursor != w.user.Cursor {
		t.Errorf("user changed by garbage: %+v, %v; was %+v", u, err, w.user)
	}
	if usage := w.sb.Gmail.Usage(email); usage.Units != 0 {
		t.Errorf("Gmail used by garbage: %+v", usage)
	}
	if evs := w.events(0); len(evs) != 0 {
		t.Errorf("events published for garbage: %+v", evs)
	}
}

func TestPushIsSyncedAndOnlyRetryableFailuresReturnErrors(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	h, _ := w.handler()
	ctx := context.Background()
	d1, _ := w.sb.Deliver(gmailapi.Delivery{To: email, Subject: "one"})
	d2, _ := w.sb.Deliver(gmailapi.Delivery{To: email, Subject: "two"})
	for _, tc := range []struct {
		name    string
		data    string
		faults  *gmailapi.Faults
		wantErr bool
	}{
		{"number history id, Gmail down", fmt.Sprintf(`{"emailAddress":%q,"historyId":%d}`, email, d1.HistoryID),
			&gmailapi.Faults{ErrorRate: 1, ErrorCodes: []int{500}}, true},
		{"number history id", fmt.Sprintf(`{"emailAddress":%q,"historyId":%d}`, email, d1.HistoryID), nil, false},
		{"string history id", fmt.Sprintf(`{"emailAddress":%q,"historyId":"%d"}`, strings.ToUpper(email), d2.HistoryID), nil, false},
		{"stale redelivery", fmt.Sprintf(`{"emailAddress":%q,"historyId":%d}`, email, d1.HistoryID), nil, false},
	} {
		w.sb.ClearFaults(email)
		if tc.faults != nil {
			if err := w.sb.Gmail.SetFaults(email, *tc.faults); err != nil {
				t.Fatal(err)
			}
		}
		err := h.Handle(ctx, cloudEvent(t, tc.data, false))
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: got %v, want error %v", tc.name, err, tc.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "@") {
			t.Errorf("%s: error %q holds the address", tc.name, err)
		}
	}
	if got, want := messageIDs(w.events(2)), []string{d1.ID, d2.ID}; !slices.Equal(got, want) {
		t.Errorf("events: got %v, want %v", got, want)
	}
}

// TestEndToEnd runs the registered Notify function behind the functions
// framework, built from the environment as when deployed: the sandbox's
// watch publishes Gmail pushes to the Pub/Sub emulator, whose push
// subscription posts them to the framework, and the events arrive on the
// output topic. It sets process environment, so it does not run in parallel.
func TestEndToEnd(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for k, v := range w.Env(nil) {
		t.Setenv(k, v)
	}
	url := testenv.ServeRegistered(t, "Notify")

	gmailTopic := w.GmailTopic
	_, err := w.PubSub.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: "projects/" + w.project + "/subscriptions/notify", Topic: gmailTopic, AckDeadlineSeconds: 10,
		PushConfig: &pubsubpb.PushConfig{PushEndpoint: url + "/" + gmailTopic},
	})
	if err != nil {
		t.Fatalf("push subscription: %v", err)
	}
	svc, err := w.Mailboxes().ForUser(ctx, w.user)
	if err != nil {
		t.Fatal(err)
	}
	watch := gmailclient.WatchSettings{Topic: gmailTopic, Labels: []string{"INBOX"}, LabelFilter: "include"}
	if _, _, err := watch.Watch(ctx, svc); err != nil {
		t.Fatalf("users.watch: %v", err)
	}

	// A raw push with garbage inside is acknowledged: 2xx, so Pub/Sub does not redeliver it.
	garbage := `{"message":{"data":"` + base64.StdEncoding.EncodeToString([]byte("garbage")) + `","messageId":"1"},"subscription":"s"}`
	resp, err := http.Post(url+"/"+gmailTopic, "application/json", strings.NewReader(garbage))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Errorf("garbage push: got %s, want 2xx (acknowledged)", resp.Status)
	}

	var want []string
	for i := range 3 {
		d, err := w.sb.Deliver(gmailapi.Delivery{To: email, Subject: fmt.Sprint("end to end ", i)})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, d.ID)
	}
	slices.Sort(want)
	if got := messageIDs(w.events(len(want))); !slices.Equal(got, want) {
		t.Errorf("events through the framework: got %v, want %v", got, want)
	}
}

func TestMissingConfigurationFailsEveryPushWithOneBuild(t *testing.T) {
	for _, k := range []string{"PROJECT_ID", "EVENTS_TOPIC", "OAUTH_CLIENT_ID"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	builds := 0
	get := platform.Production("notify", func(lookup platform.Lookup) (Config, error) {
		builds++
		return ReadConfig(lookup)
	}, wire)
	for i := range 2 {
		h, err := get()
		for _, name := range []string{"PROJECT_ID", "EVENTS_TOPIC", "OAUTH_CLIENT_ID"} {
			if h != nil || err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("push %d without %s: got %v, %v; want an error naming it (so Pub/Sub keeps the push)", i, name, h, err)
			}
		}
	}
	if builds != 1 {
		t.Errorf("built %d times, want once", builds)
	}
}
