package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/events"
)

func TestReadEndpoints(t *testing.T) {
	base := map[string]string{"PROJECT_ID": "p", "EVENTS_TOPIC": "gmail-events"}
	two := `[{"name":"crm","subscription":"gw-webhook-crm","url":"https://crm.example.com/h","secret":"crm-key","deadLetterTopic":"crm-dl","ratePerSecond":5},
	         {"name":"audit","subscription":"gw-webhook-audit","urlSecret":"audit-url","secret":"audit-key","deadLetterTopic":"audit-dl","enabled":false}]`
	env := func(endpoints string, extra ...string) platform_lookup {
		m := map[string]string{"WEBHOOK_ENDPOINTS": endpoints}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return config.FromMap(m)
	}
	e, err := ReadEndpoints(env(two))
	if err != nil {
		t.Fatal(err)
	}
	if len(e.List) != 2 {
		t.Fatalf("ReadEndpoints = %d endpoints, want 2", len(e.List))
	}
	crm, audit := e.List[0], e.List[1]
	if crm.Name != "crm" || crm.Subscription != "gw-webhook-crm" || crm.URL != "https://crm.example.com/h" || crm.SecretName != "crm-key" ||
		crm.DeadLetterTopic != "crm-dl" || crm.RatePerSecond != 5 || crm.Disabled || crm.Timeout != 15*time.Second {
		t.Errorf("crm = %+v", crm)
	}
	if audit.Name != "audit" || audit.URLSecretName != "audit-url" || audit.URL != "" || !audit.Disabled || audit.DeadLetterTopic != "audit-dl" {
		t.Errorf("audit = %+v", audit)
	}

	for _, tc := range []struct {
		name, endpoints string
		extra           []string
		want            string
	}{
		{"not JSON", `crm`, nil, "not a JSON list of endpoints"},
		{"unknown field", `[{"name":"crm","subscription":"s","url":"https://x.example","deadLetterTopic":"d","filter":"x"}]`, nil, `unknown field "filter"`},
		{"empty list", `[]`, nil, "lists no endpoint"},
		{"bad name", `[{"name":"CRM","subscription":"s","url":"https://x.example","deadLetterTopic":"d"}]`, nil, `name "CRM" is not`},
		{"name twice", `[{"name":"a","subscription":"s","url":"https://x.example","deadLetterTopic":"d"},{"name":"a","subscription":"t","url":"https://x.example","deadLetterTopic":"d"}]`, nil, "names a twice"},
		{"subscription twice", `[{"name":"a","subscription":"s","url":"https://x.example","deadLetterTopic":"d"},{"name":"b","subscription":"s","url":"https://x.example","deadLetterTopic":"d"}]`, nil, "feeds another endpoint"},
		{"no subscription", `[{"name":"a","url":"https://x.example","deadLetterTopic":"d"}]`, nil, "subscription must be a subscription id"},
		{"negative rate", `[{"name":"a","subscription":"s","url":"https://x.example","deadLetterTopic":"d","ratePerSecond":-1}]`, nil, "ratePerSecond is negative"},
		{"plain http", `[{"name":"a","subscription":"s","url":"http://x.example/t0ken","deadLetterTopic":"d"}]`, nil, "endpoint a: configuration"},
		{"no dead-letter topic", `[{"name":"a","subscription":"s","url":"https://x.example"}]`, nil, "endpoint a: configuration: DEAD_LETTER_TOPIC: missing"},
		{"single-webhook setting beside", two, []string{"WEBHOOK_URL", "https://x.example"}, "WEBHOOK_URL is set with WEBHOOK_ENDPOINTS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ReadEndpoints(env(tc.endpoints, tc.extra...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadEndpoints error = %v, want it to contain %q", err, tc.want)
			}
			if len(e.List) != 0 {
				t.Errorf("ReadEndpoints returned %d endpoints with its error", len(e.List))
			}
			if strings.Contains(err.Error(), "t0ken") {
				t.Errorf("error %q quotes the URL", err)
			}
		})
	}
}

type platform_lookup = func(string) (string, bool)

// twoEndpoints is the function serving two endpoints through the Pub/Sub
// emulator: "crm" takes gmail.message.received only, "audit" everything.
type twoEndpoints struct {
	*testenv.World
	router *Router
	url    string
	pub    *events.Publisher
}

func newTwoEndpoints(t *testing.T, crmURL, auditURL string, edit func(*Endpoints)) *twoEndpoints {
	t.Helper()
	ctx := context.Background()
	w := testenv.NewWorld(t, testenv.Options{})
	ps, project := w.PubSub, w.Project
	eventsTopic := testenv.Topic(t, ps, "gmail-events")
	for _, n := range []string{"crm", "audit"} {
		testenv.Subscription(t, ps, testenv.Topic(t, ps, "webhook-"+n+"-dead-letter"), "webhook-"+n+"-dead-letter")
	}
	spec, _ := json.Marshal([]endpointSpec{
		{Name: "crm", Subscription: "webhook-crm", URL: crmURL, Secret: testSecretName, DeadLetterTopic: "webhook-crm-dead-letter", EventTypes: []string{events.MessageReceived}},
		{Name: "audit", Subscription: "webhook-audit", URL: auditURL, Secret: testSecretName, DeadLetterTopic: "webhook-audit-dead-letter"},
	})
	e, err := ReadEndpoints(config.FromMap(w.Env(map[string]string{
		"EVENTS_TOPIC": "gmail-events", "WEBHOOK_ENDPOINTS": string(spec), "WEBHOOK_TIMEOUT": "1s", "WEBHOOK_CALL_BUDGET": "3s",
	})))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&e)
	}
	var hs []*Handler
	for _, c := range e.List {
		p := ps.Publisher(c.DeadLetterTopic)
		t.Cleanup(p.Stop)
		h := New(c, staticSecrets{testSecretName: testSecret}, p, w.Log)
		h.backoff = 20 * time.Millisecond
		hs = append(hs, h)
	}
	r := NewRouter(project, hs, w.Log)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	filters := map[string]string{"crm": `attributes.type = "` + events.MessageReceived + `"`, "audit": ""}
	for n, f := range filters {
		if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
			Name: "projects/" + project + "/subscriptions/webhook-" + n, Topic: eventsTopic, AckDeadlineSeconds: 10,
			EnableMessageOrdering: true, Filter: f,
			RetryPolicy: &pubsubpb.RetryPolicy{MinimumBackoff: durationpb.New(100 * time.Millisecond), MaximumBackoff: durationpb.New(time.Second)},
			PushConfig:  &pubsubpb.PushConfig{PushEndpoint: srv.URL + "/projects/" + project + "/topics/gmail-events"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	pub := events.NewPublisher(ps, "gmail-events")
	t.Cleanup(pub.Stop)
	return &twoEndpoints{World: w, router: r, url: srv.URL, pub: pub}
}

// mixedEvents are n events per user for two users, alternating received and sent.
func mixedEvents(n int) []events.Event {
	var out []events.Event
	for i := range n {
		for _, u := range []string{"ann", "bob"} {
			typ := events.MessageReceived
			if i%2 == 1 {
				typ = events.MessageSent
			}
			id := fmt.Sprintf("m%02d", i)
			out = append(out, events.Event{Version: events.Version, Type: typ, ID: events.ID(typ, u, id), Time: "2026-11-26T10:00:00Z",
				User: u, EmailAddress: u + "@example.com", MessageID: id})
		}
	}
	return out
}

// switchable is a receiver that accepts (204) while up and answers 503
// otherwise, recording per user the event ids it accepted, in order, and
// every body it saw.
type switchable struct {
	*httptest.Server
	up       atomic.Bool
	mu       sync.Mutex
	accepted map[string][]string
	seen     []events.Event
	twice    bool
}

func newSwitchable(t *testing.T, up bool) *switchable {
	s := &switchable{accepted: map[string][]string{}}
	s.up.Store(up)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev events.Event
		_ = json.NewDecoder(r.Body).Decode(&ev)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.seen = append(s.seen, ev)
		if !s.up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		for _, id := range s.accepted[ev.User] {
			s.twice = s.twice || id == ev.ID
		}
		s.accepted[ev.User] = append(s.accepted[ev.User], ev.ID)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *switchable) got() (map[string][]string, []events.Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	for u, ids := range s.accepted {
		out[u] = append([]string(nil), ids...)
	}
	return out, append([]events.Event(nil), s.seen...), s.twice
}

// waitFor polls s until it accepted want, per user and in order.
func (s *switchable) waitFor(t *testing.T, name string, want map[string][]string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, _, twice := s.got()
		if twice {
			t.Fatalf("%s accepted an event twice: %v", name, got)
		}
		if samePerUser(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s accepted %v, want %v", name, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func wantPerUser(evs []events.Event, keep func(events.Event) bool) map[string][]string {
	out := map[string][]string{}
	for _, e := range evs {
		if keep(e) {
			out[e.User] = append(out[e.User], e.ID)
		}
	}
	return out
}

func samePerUser(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for u, ids := range a {
		if strings.Join(ids, ",") != strings.Join(b[u], ",") {
			return false
		}
	}
	return true
}

// TestOneEndpointDownTheOtherUp: audit's receiver is down for a while; crm
// gets every received event, in order per user, meanwhile and no sent one;
// audit gets everything in order once it is back; nothing is dead-lettered.
func TestOneEndpointDownTheOtherUp(t *testing.T) {
	crm, audit := newSwitchable(t, true), newSwitchable(t, false)
	env := newTwoEndpoints(t, crm.URL, audit.URL, nil)

	evs := mixedEvents(6)
	if err := env.pub.Publish(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
	crm.waitFor(t, "crm", wantPerUser(evs, func(e events.Event) bool { return e.Type == events.MessageReceived }), 30*time.Second)
	if _, seen, _ := audit.got(); len(seen) == 0 {
		t.Fatal("audit's receiver was never tried while down")
	}
	audit.up.Store(true)
	audit.waitFor(t, "audit", wantPerUser(evs, func(events.Event) bool { return true }), 45*time.Second)

	_, seen, _ := crm.got()
	for _, ev := range seen {
		if ev.Type != events.MessageReceived {
			t.Errorf("crm got %s, a %s event its filter excludes", ev.ID, ev.Type)
		}
	}
	for _, n := range []string{"crm", "audit"} {
		if dl := env.pullAll(t, "webhook-"+n+"-dead-letter", 500*time.Millisecond); len(dl) != 0 {
			t.Errorf("%s dead-lettered %d events", n, len(dl))
		}
	}
}

// pullAll returns what subscription holds, acknowledging it, waiting up to
// quiet for more after the last message.
func (e *twoEndpoints) pullAll(t *testing.T, subscription string, quiet time.Duration) []*pubsub.Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var got []*pubsub.Message
	timer := time.AfterFunc(quiet, cancel)
	err := e.PubSub.Subscriber(subscription).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
		timer.Reset(quiet)
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

// TestLongRetryAfterPausesTheEndpoint: a 429 whose Retry-After outlasts the
// call budget leaves the event with Pub/Sub (an error, no dead letter), and
// until then further pushes post nothing; afterwards the event is delivered.
func TestLongRetryAfterPausesTheEndpoint(t *testing.T) {
	rv := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 1 {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	hs := newHarness(t, rv.URL, staticSecrets{testSecretName: testSecret}, nil)
	now := time.Now()
	hs.h.now = func() time.Time { return now }
	ev, body := testEvent(7)
	push := pushEvent(t, body, ev.Attributes(), now)
	if err := hs.h.Handle(context.Background(), push); err == nil {
		t.Fatal("Handle = nil after a 429 with Retry-After 120, want an error so Pub/Sub redelivers")
	}
	now = now.Add(60 * time.Second)
	if err := hs.h.Handle(context.Background(), push); err == nil || !strings.Contains(err.Error(), "Retry-After") {
		t.Fatalf("Handle during the pause = %v, want the pause", err)
	}
	if n := len(rv.got()); n != 1 {
		t.Fatalf("receiver got %d requests during its Retry-After, want 1", n)
	}
	now = now.Add(61 * time.Second)
	if err := hs.h.Handle(context.Background(), push); err != nil {
		t.Fatalf("Handle after the pause = %v, want delivered", err)
	}
	if n := len(rv.got()); n != 2 {
		t.Errorf("receiver got %d requests, want 2", n)
	}
	if dl := hs.deadLetters(t, 0, 300*time.Millisecond); len(dl) != 0 {
		t.Errorf("%d events dead-lettered, want none", len(dl))
	}
}

// TestRateLimit: an endpoint limited to 5 requests a second takes about a
// second for ten events after its burst of five.
func TestRateLimit(t *testing.T) {
	rv := newReceiver(t, status(http.StatusNoContent))
	hs := newHarness(t, rv.URL, staticSecrets{testSecretName: testSecret}, func(c *Config) { c.RatePerSecond = 5; c.CallBudget = 5 * time.Second })
	for i := range 10 {
		ev, body := testEvent(100 + i)
		if err := hs.h.Handle(context.Background(), pushEvent(t, body, ev.Attributes(), time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	reqs := rv.got()
	if len(reqs) != 10 {
		t.Fatalf("receiver got %d requests, want 10", len(reqs))
	}
	if span := reqs[9].at.Sub(reqs[0].at); span < 900*time.Millisecond {
		t.Errorf("ten requests within %s at 5 per second (burst 5), want at least about 1s", span)
	}
}

func TestReadEndpointsNeitherWay(t *testing.T) {
	_, err := ReadEndpoints(config.FromMap(map[string]string{}))
	if err == nil || !strings.Contains(err.Error(), "PROJECT_ID: missing") || !strings.Contains(err.Error(), "WEBHOOK_ENDPOINTS: missing") {
		t.Fatalf("ReadEndpoints with nothing set = %v, want PROJECT_ID and WEBHOOK_ENDPOINTS missing", err)
	}
}

// TestRouterRefusesWhatNoEndpointTakes: a push from a subscription no
// endpoint is fed by is refused (503: Pub/Sub keeps it), a request that is
// not a push is answered and ignored, and neither reaches a receiver.
func TestRouterRefusesWhatNoEndpointTakes(t *testing.T) {
	rv := newReceiver(t, status(http.StatusNoContent))
	hs := newHarness(t, rv.URL, staticSecrets{testSecretName: testSecret}, func(c *Config) { c.Subscription = "webhook-crm" })
	srv := httptest.NewServer(NewRouter("p", []*Handler{hs.h, New(Config{Name: "audit", Subscription: "webhook-audit"}, staticSecrets{}, nil, hs.Log)}, hs.Log))
	t.Cleanup(srv.Close)
	ev, body := testEvent(60)
	push := func(sub string) string {
		b, _ := json.Marshal(map[string]any{"message": map[string]any{"data": body, "attributes": ev.Attributes(), "messageId": "1",
			"publishTime": time.Now().Format(time.RFC3339Nano)}, "subscription": sub})
		return string(b)
	}
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"unknown subscription", http.MethodPost, "/projects/p/topics/gmail-events", push("projects/p/subscriptions/webhook-other"), http.StatusServiceUnavailable},
		{"another project's subscription", http.MethodPost, "/projects/p/topics/gmail-events", push("projects/q/subscriptions/webhook-crm"), http.StatusServiceUnavailable},
		{"not JSON", http.MethodPost, "/projects/p/topics/gmail-events", "hello", http.StatusNoContent},
		{"no topic in the path", http.MethodPost, "/", push("projects/p/subscriptions/webhook-crm"), http.StatusNoContent},
		{"GET", http.MethodGet, "/projects/p/topics/gmail-events", "", http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	if n := len(rv.got()); n != 0 {
		t.Fatalf("receiver got %d requests from refused pushes", n)
	}
	// The same push from crm's subscription is delivered.
	resp, err := http.Post(srv.URL+"/projects/p/topics/gmail-events", "application/json", strings.NewReader(push("projects/p/subscriptions/webhook-crm")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || len(rv.got()) != 1 {
		t.Errorf("crm's push: status %d, receiver got %d requests; want 204 and 1", resp.StatusCode, len(rv.got()))
	}
}
