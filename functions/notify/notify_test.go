package notify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

const (
	clientID     = "notify-test.apps.googleusercontent.com"
	clientSecret = "GOCSPX-notify-test"
	email        = "nora@example.com"
)

// world is one test's emulator project, sandbox, connected user and output
// topic, read through a pull subscription.
type world struct {
	t       *testing.T
	project string
	sb      *sandbox.Sandbox
	ps      *pubsub.Client
	store   *store.Store
	user    store.User
	gmail   gmailclient.Settings

	mu       sync.Mutex
	received []events.Event
}

func newWorld(t *testing.T) *world {
	t.Helper()
	testenv.Need(t, "FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST")
	ctx := context.Background()
	w := &world{t: t, project: testenv.Project(t)}
	w.ps = testenv.PubSub(t, w.project)
	w.store = store.New(testenv.Firestore(t, w.project), nil)
	sb, err := sandbox.Start(ctx, sandbox.Options{ClientID: clientID, ClientSecret: clientSecret})
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	t.Cleanup(func() { sb.Close() })
	w.sb = sb
	if err := sb.PutSecret(ctx, w.project, "oauth-client-secret", []byte(clientSecret)); err != nil {
		t.Fatal(err)
	}
	rt, err := sb.Connect(email)
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.PutSecret(ctx, w.project, vault.RefreshPrefix+store.Key(email), []byte(rt)); err != nil {
		t.Fatal(err)
	}
	w.gmail = gmailclient.Settings{ClientID: clientID, ClientSecretName: "oauth-client-secret", Scope: gmailclient.ScopeMetadata,
		AuthURL: sb.URL + "/o/oauth2/v2/auth", TokenURL: sb.URL + "/token", RevokeURL: sb.URL + "/revoke", GmailEndpoint: sb.URL + "/"}
	h, _ := sb.Gmail.HistoryID(email)
	if w.user, _, err = w.store.Connect(ctx, store.Connection{Email: email, Labels: []string{"INBOX"}, LabelFilter: "include", HistoryID: int64(h)}); err != nil {
		t.Fatal(err)
	}
	if w.user, err = w.store.Get(ctx, w.user.Key); err != nil {
		t.Fatal(err)
	}

	topic := testenv.Topic(t, w.ps, "events")
	sub := testenv.Subscription(t, w.ps, topic, "events-pull")
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.ps.Subscriber(sub).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			if ev, err := events.Decode(m.Data); err == nil {
				w.mu.Lock()
				w.received = append(w.received, ev)
				w.mu.Unlock()
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// handler returns the function's handler over a Syncer of this world, and
// its log.
func (w *world) handler() (*handler, *testenv.LogBuffer) {
	v, err := vault.New(context.Background(), w.project, w.sb.SecretManagerAddr)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { v.Close() })
	pub := events.NewPublisher(w.ps, "events")
	w.t.Cleanup(pub.Stop)
	log, buf := testenv.Logger(w.t)
	s := gmailsync.New(gmailsync.Deps{Users: w.store, Gmail: gmailclient.NewFactory(w.gmail, v), Events: pub, Logger: log},
		gmailsync.Settings{BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond, MaxTries: 2})
	return &handler{syncer: s, log: log, project: w.project, source: topicSource("projects/p/topics/gmail")}, buf
}

// events waits for at least want events, and a little more for duplicates.
func (w *world) events(want int) []events.Event {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		w.mu.Lock()
		n := len(w.received)
		w.mu.Unlock()
		if n >= want {
			break
		}
	}
	time.Sleep(500 * time.Millisecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.received)
}

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
	e.SetType("google.cloud.pubsub.topic.v1.messagePublished")
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
			if err := h.handle(context.Background(), cloudEvent(t, tc.data, tc.rawData)); err != nil {
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
		err := h.handle(ctx, cloudEvent(t, tc.data, false))
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
	for k, v := range w.sb.Env() {
		t.Setenv(k, v)
	}
	t.Setenv("PROJECT_ID", w.project)
	t.Setenv("EVENTS_TOPIC", "events")
	t.Setenv("FUNCTION_TARGET", "Notify")
	port := freePort(t)
	go func() {
		if err := funcframework.StartHostPort("127.0.0.1", port); err != nil {
			t.Errorf("functions framework: %v", err)
		}
	}()
	url := "http://127.0.0.1:" + port

	gmailTopic := testenv.Topic(t, w.ps, "gmail")
	t.Setenv("GMAIL_TOPIC", gmailTopic)
	_, err := w.ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: "projects/" + w.project + "/subscriptions/notify", Topic: gmailTopic, AckDeadlineSeconds: 10,
		PushConfig: &pubsubpb.PushConfig{PushEndpoint: url + "/" + gmailTopic},
	})
	if err != nil {
		t.Fatalf("push subscription: %v", err)
	}
	v, err := vault.New(ctx, w.project, w.sb.SecretManagerAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	svc, err := gmailclient.NewFactory(w.gmail, v).ForUser(ctx, w.user.Key)
	if err != nil {
		t.Fatal(err)
	}
	watch := gmailclient.WatchSettings{Topic: gmailTopic, Labels: []string{"INBOX"}, LabelFilter: "include"}
	if _, _, err := watch.Watch(ctx, svc); err != nil {
		t.Fatalf("users.watch: %v", err)
	}

	// A raw push with garbage inside is acknowledged: 2xx, so Pub/Sub does not redeliver it.
	garbage := `{"message":{"data":"` + base64.StdEncoding.EncodeToString([]byte("garbage")) + `","messageId":"1"},"subscription":"s"}`
	waitHTTP(t, url)
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

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
	}
	t.Fatalf("%s never answered", url)
}

func TestMissingConfigurationFailsEveryPushWithOneBuild(t *testing.T) {
	for _, k := range []string{"PROJECT_ID", "EVENTS_TOPIC", "OAUTH_CLIENT_ID"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	builds := 0
	get := sync.OnceValues(func() (*handler, error) { builds++; return fromEnv(context.Background()) })
	for i := range 2 {
		err := handleWith(get, context.Background(), cloudEvent(t, `{"emailAddress":"a@b.co","historyId":5}`, false))
		for _, name := range []string{"PROJECT_ID", "EVENTS_TOPIC", "OAUTH_CLIENT_ID"} {
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("push %d without %s: got %v, want an error naming it (so Pub/Sub keeps the push)", i, name, err)
			}
		}
	}
	if builds != 1 {
		t.Errorf("built %d times, want once", builds)
	}
}
