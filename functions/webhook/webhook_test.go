package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/platform"
	"github.com/gmailwatch/gmailwatch/shared/vault"
	"github.com/gmailwatch/gmailwatch/shared/webhooksig"
)

const (
	testSecretValue = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	testSecret      = "whsec_" + testSecretValue
	testSecretName  = "webhook-signing-secret"
)

// messagePublished is the type of every Pub/Sub CloudEvent.
const messagePublished = platform.MessagePublished

// staticSecrets stands in for Secret Manager where a test is not about it.
type staticSecrets map[string]string

func (s staticSecrets) Access(_ context.Context, id string) ([]byte, error) {
	v, ok := s[id]
	if !ok {
		return nil, fmt.Errorf("access secret %s: %w", id, vault.ErrNotFound)
	}
	return []byte(v), nil
}

// request is what the receiver saw.
type request struct {
	at       time.Time
	id       string
	body     string
	verified error
	header   http.Header
}

// receiver is an application endpoint on 127.0.0.1 that verifies every
// request and answers with respond(n) for the n-th request (from 1) with
// the same webhook-id.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests []request
	respond  func(n int, w http.ResponseWriter)
}

func newReceiver(t *testing.T, respond func(n int, w http.ResponseWriter)) *receiver {
	t.Helper()
	keys, err := webhooksig.Parse(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	rv := &receiver{respond: respond}
	rv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rv.mu.Lock()
		id := r.Header.Get(webhooksig.HeaderID)
		rv.requests = append(rv.requests, request{at: time.Now(), id: id, body: string(body), verified: keys.Verify(body, r.Header), header: r.Header.Clone()})
		n := 0
		for _, q := range rv.requests {
			if q.id == id {
				n++
			}
		}
		rv.mu.Unlock()
		rv.respond(n, w)
	}))
	t.Cleanup(rv.Close)
	return rv
}

func (rv *receiver) got() []request {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return append([]request(nil), rv.requests...)
}

func status(code int) func(int, http.ResponseWriter) {
	return func(_ int, w http.ResponseWriter) { w.WriteHeader(code) }
}

// harness is a Handler wired to the Pub/Sub emulator's dead-letter topic.
type harness struct {
	*testenv.World
	h    *Handler
	logs *testenv.LogBuffer
	ps   *pubsub.Client
	dead string // dead-letter subscription id
}

func newHarness(t *testing.T, url string, secrets SecretSource, edit func(*Config)) *harness {
	t.Helper()
	w := testenv.NewWorld(t, testenv.Options{})
	ps := w.PubSub
	topic := testenv.Topic(t, ps, "webhook-dead-letter")
	testenv.Subscription(t, ps, topic, "dead-letter-check")
	cfg := Config{
		ProjectID: ps.Project(), URL: url, SecretName: testSecretName,
		Timeout: 300 * time.Millisecond, RetryWindow: 24 * time.Hour, CallBudget: 1500 * time.Millisecond,
		DeadLetterTopic: "webhook-dead-letter", EventsTopic: "projects/p/topics/gmail-events",
	}
	if edit != nil {
		edit(&cfg)
	}
	pub := ps.Publisher(cfg.DeadLetterTopic)
	t.Cleanup(pub.Stop)
	h := New(cfg, secrets, pub, w.Log)
	h.backoff = 20 * time.Millisecond
	return &harness{World: w, h: h, logs: w.Logs, ps: ps, dead: "dead-letter-check"}
}

// deadLetters returns what reached the dead-letter topic, waiting up to wait
// for at least want messages.
func (hs *harness) deadLetters(t *testing.T, want int, wait time.Duration) []*pubsub.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var mu sync.Mutex
	var got []*pubsub.Message
	err := hs.ps.Subscriber(hs.dead).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m)
		if len(got) >= want && want > 0 {
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("receive dead letters: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

func testEvent(n int) (events.Event, []byte) {
	e := events.Event{
		Version: events.Version, Type: events.MessageReceived,
		ID:   events.ID(events.MessageReceived, "user1", fmt.Sprintf("msg%d", n)),
		Time: "2026-11-26T10:00:00Z", User: "user1", EmailAddress: "a@example.com",
		MessageID: fmt.Sprintf("msg%d", n), Subject: "hello",
	}
	body, _ := json.Marshal(e)
	return e, body
}

// pushEvent wraps a message as the Pub/Sub CloudEvent the function receives.
func pushEvent(t *testing.T, data []byte, attrs map[string]string, published time.Time) event.Event {
	t.Helper()
	ce := event.New()
	ce.SetID("push-1")
	ce.SetSource("//pubsub.googleapis.com/projects/p/topics/gmail-events")
	ce.SetType(messagePublished)
	ce.SetTime(published)
	payload := map[string]any{"message": map[string]any{
		"data": data, "attributes": attrs, "messageId": "m-1", "publishTime": published.Format(time.RFC3339Nano),
	}, "subscription": "projects/p/subscriptions/eventarc"}
	if err := ce.SetData(event.ApplicationJSON, payload); err != nil {
		t.Fatal(err)
	}
	return ce
}

func TestHandle(t *testing.T) {
	closedURL := func() string { // a port nobody listens on: the receiver is down
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "http://" + addr + "/hook"
	}
	elsewhere := newReceiver(t, status(http.StatusOK)) // where redirects point

	tests := []struct {
		name      string
		respond   func(int, http.ResponseWriter)
		url       string        // overrides the receiver's URL
		age       time.Duration // since the message was first published
		wantErr   bool          // true: the platform must redeliver
		minReqs   int
		maxReqs   int
		wantDead  string // reason of the dead-letter message, "" for none
		wantDeadS string // its status attribute
		wantLog   string
	}{
		{name: "2xx delivered once", respond: status(http.StatusNoContent), minReqs: 1, maxReqs: 1, wantLog: "webhook delivered"},
		{name: "500 then 200 within one call", respond: func(n int, w http.ResponseWriter) {
			w.WriteHeader(map[bool]int{true: 500, false: 200}[n == 1])
		}, minReqs: 2, maxReqs: 2, wantLog: "webhook delivered"},
		{name: "500 persists: redelivered by the platform", respond: status(500), wantErr: true, minReqs: 2, maxReqs: 20, wantLog: "will retry"},
		{name: "receiver down", url: closedURL(), wantErr: true, wantLog: "connection refused"},
		{name: "429 with Retry-After beyond the call budget", respond: func(_ int, w http.ResponseWriter) {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
		}, wantErr: true, minReqs: 1, maxReqs: 1, wantLog: `"status":429,"attempts":1,"result":"status 429"`},
		{name: "410 gone", respond: status(http.StatusGone), minReqs: 1, maxReqs: 1, wantDead: ReasonGone, wantDeadS: "410", wantLog: `"severity":"ERROR","message":"webhook endpoint gone"`},
		{name: "404 permanent", respond: status(http.StatusNotFound), minReqs: 1, maxReqs: 1, wantDead: ReasonRejected, wantDeadS: "404", wantLog: "webhook rejected"},
		{name: "401 permanent", respond: status(http.StatusUnauthorized), minReqs: 1, maxReqs: 1, wantDead: ReasonRejected, wantDeadS: "401"},
		{name: "slow receiver times out", respond: func(_ int, w http.ResponseWriter) {
			time.Sleep(time.Second)
		}, wantErr: true, minReqs: 1, maxReqs: 4, wantLog: "timeout after 300ms"},
		{name: "redirect is not followed", respond: func(_ int, w http.ResponseWriter) {
			w.Header().Set("Location", elsewhere.URL+"/other")
			w.WriteHeader(http.StatusFound)
		}, wantErr: true, minReqs: 1, wantLog: "webhook endpoint redirects"},
		{name: "huge response body is not read to the end", respond: func(_ int, w http.ResponseWriter) {
			w.WriteHeader(http.StatusOK)
			chunk := []byte(strings.Repeat("x", 1<<16))
			for range 1 << 10 { // 64 MiB
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, minReqs: 1, maxReqs: 1, wantLog: "webhook delivered"},
		{name: "failing past the retry window is dead-lettered", respond: status(503), age: 25 * time.Hour, minReqs: 1, wantDead: ReasonExpired, wantDeadS: "503", wantLog: "undeliverable within retry window"},
		{name: "receiver down past the retry window", url: closedURL(), age: 25 * time.Hour, wantDead: ReasonExpired, wantDeadS: "0"},
		{name: "old event still delivered when the receiver answers", respond: status(200), age: 25 * time.Hour, minReqs: 1, maxReqs: 1, wantLog: "webhook delivered"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			respond := tc.respond
			if respond == nil {
				respond = status(200)
			}
			rv := newReceiver(t, respond)
			url := rv.URL + "/hook?token=receiver-query-token"
			if tc.url != "" {
				url = tc.url
			}
			hs := newHarness(t, url, staticSecrets{testSecretName: testSecret}, nil)
			ev, body := testEvent(1)
			start := time.Now()
			err := hs.h.Handle(context.Background(), pushEvent(t, body, ev.Attributes(), time.Now().Add(-tc.age)))
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Handle took %s, want it bounded by the call budget", took)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("Handle error = %v, want error: %v", err, tc.wantErr)
			}
			reqs := rv.got()
			if len(reqs) < tc.minReqs || tc.maxReqs > 0 && len(reqs) > tc.maxReqs {
				t.Errorf("receiver got %d requests, want %d..%d", len(reqs), tc.minReqs, tc.maxReqs)
			}
			for i, r := range reqs {
				if r.id != ev.ID || r.body != string(body) || r.verified != nil {
					t.Errorf("request %d: webhook-id %q body %q verify %v; want id %q, the published body, a valid signature", i, r.id, r.body, r.verified, ev.ID)
				}
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("request %d: Content-Type %q, want application/json", i, ct)
				}
			}
			if got := len(elsewhere.got()); got != 0 {
				t.Errorf("redirect target got %d requests, want 0", got)
			}
			wantDead := 0
			if tc.wantDead != "" {
				wantDead = 1
			}
			wait := 1500 * time.Millisecond
			if wantDead > 0 {
				wait = 10 * time.Second
			}
			dead := hs.deadLetters(t, wantDead, wait)
			if len(dead) != wantDead {
				t.Fatalf("dead letters = %d, want %d", len(dead), wantDead)
			}
			if wantDead > 0 {
				d := dead[0]
				if string(d.Data) != string(body) || d.Attributes["reason"] != tc.wantDead || d.Attributes["status"] != tc.wantDeadS ||
					d.Attributes["id"] != ev.ID || d.Attributes["attempts"] == "" || d.Attributes["publishTime"] == "" {
					t.Errorf("dead letter = %q %v; want the event body with reason %q, status %q, id, attempts, publishTime", d.Data, d.Attributes, tc.wantDead, tc.wantDeadS)
				}
			}
			logs := hs.logs.String()
			if tc.wantLog != "" && !strings.Contains(logs, tc.wantLog) {
				t.Errorf("logs lack %q:\n%s", tc.wantLog, logs)
			}
			for _, secret := range []string{testSecretValue, "receiver-query-token", "whsec_"} {
				if strings.Contains(logs, secret) {
					t.Errorf("logs contain %q:\n%s", secret, logs)
				}
			}
		})
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	for _, header := range []string{"1", "date"} {
		t.Run(header, func(t *testing.T) {
			t.Parallel()
			rv := newReceiver(t, func(n int, w http.ResponseWriter) {
				if n == 1 {
					v := header
					if v == "date" {
						v = time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)
					}
					w.Header().Set("Retry-After", v)
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			hs := newHarness(t, rv.URL, staticSecrets{testSecretName: testSecret}, func(c *Config) { c.CallBudget = 5 * time.Second })
			ev, body := testEvent(2)
			if err := hs.h.Handle(context.Background(), pushEvent(t, body, ev.Attributes(), time.Now())); err != nil {
				t.Fatalf("Handle = %v, want delivered after the wait", err)
			}
			reqs := rv.got()
			if len(reqs) != 2 {
				t.Fatalf("receiver got %d requests, want 2", len(reqs))
			}
			if gap := reqs[1].at.Sub(reqs[0].at); gap < 900*time.Millisecond {
				t.Errorf("second attempt %s after the 429, want at least the Retry-After of about 1s", gap)
			}
			if reqs[0].id != reqs[1].id || reqs[1].id != ev.ID {
				t.Errorf("webhook-ids %q, %q; want both %q", reqs[0].id, reqs[1].id, ev.ID)
			}
		})
	}
}

func TestBadMessagesAreDeadLettered(t *testing.T) {
	tests := []struct {
		name string
		data string
		raw  bool // the CloudEvent's data itself, not a Pub/Sub message
	}{
		{"not a Pub/Sub message", "not a push", true},
		{"not JSON", "not json", false},
		{"not an event", `{"hello":"world"}`, false},
		{"id with a full stop", `{"specversion":"1","type":"gmail.message.received","id":"a.b"}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rv := newReceiver(t, status(200))
			hs := newHarness(t, rv.URL, staticSecrets{testSecretName: testSecret}, nil)
			ce := pushEvent(t, []byte(tc.data), map[string]string{"id": "x"}, time.Now())
			if tc.raw {
				if err := ce.SetData(event.ApplicationJSON, []byte(tc.data)); err != nil {
					t.Fatal(err)
				}
			}
			if err := hs.h.Handle(context.Background(), ce); err != nil {
				t.Fatalf("Handle = %v, want nil (acknowledged)", err)
			}
			if n := len(rv.got()); n != 0 {
				t.Errorf("receiver got %d requests, want 0", n)
			}
			dead := hs.deadLetters(t, 1, 10*time.Second)
			if len(dead) != 1 || string(dead[0].Data) != tc.data || dead[0].Attributes["reason"] != ReasonMalformed {
				t.Fatalf("dead letters = %v, want the message kept with reason %q", dead, ReasonMalformed)
			}
		})
	}
}

func TestSecretProblemsAreRetriedAndNeverLogged(t *testing.T) {
	tests := []struct {
		name    string
		secrets staticSecrets
		wantErr string
	}{
		{"missing secret", staticSecrets{}, "signing secret webhook-signing-secret: access secret webhook-signing-secret: secret not found"},
		{"not a whsec_ key", staticSecrets{testSecretName: testSecretValue}, "key 1 of 1: missing whsec_ prefix"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rv := newReceiver(t, status(200))
			hs := newHarness(t, rv.URL, tc.secrets, nil)
			ev, body := testEvent(3)
			err := hs.h.Handle(context.Background(), pushEvent(t, body, ev.Attributes(), time.Now()))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Handle = %v, want error containing %q", err, tc.wantErr)
			}
			if n := len(rv.got()); n != 0 {
				t.Errorf("receiver got %d unsigned requests, want 0", n)
			}
			if strings.Contains(err.Error(), testSecretValue) || strings.Contains(hs.logs.String(), testSecretValue) {
				t.Errorf("secret value revealed: error %q, logs %s", err, hs.logs)
			}
		})
	}
}

func TestRotationSignsWithEveryKey(t *testing.T) {
	const newKey = "whsec_c2Vjb25kLXNlY3JldC1rZXktZm9yLXJvdGF0aW9u"
	var sig string
	rv := newReceiver(t, func(_ int, w http.ResponseWriter) { w.WriteHeader(200) })
	hs := newHarness(t, rv.URL, staticSecrets{testSecretName: newKey + "\n" + testSecret + "\n"}, nil)
	ev, body := testEvent(4)
	if err := hs.h.Handle(context.Background(), pushEvent(t, body, ev.Attributes(), time.Now())); err != nil {
		t.Fatal(err)
	}
	reqs := rv.got()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(reqs))
	}
	sig = reqs[0].header.Get(webhooksig.HeaderSignature)
	if n := len(strings.Fields(sig)); n != 2 || reqs[0].verified != nil {
		t.Errorf("signature header %q (%d signatures) verify %v; want 2 signatures, valid for the old key", sig, n, reqs[0].verified)
	}
}

func TestReadConfig(t *testing.T) {
	valid := map[string]string{
		"PROJECT_ID": "p", "WEBHOOK_URL": "https://app.example.com/hooks/gmail", "DEAD_LETTER_TOPIC": "webhook-dead-letter",
		"EVENTS_TOPIC": "gmail-events",
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range valid {
			m[a] = b
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"valid https", valid, ""},
		{"http on loopback for local runs", with("WEBHOOK_URL", "http://127.0.0.1:8089/hook"), ""},
		{"http elsewhere", with("WEBHOOK_URL", "http://app.example.com/hook"), `WEBHOOK_URL: "http://app.example.com/…" must use https`},
		{"relative URL", with("WEBHOOK_URL", "/hook"), "is not an absolute URL"},
		{"missing URL", with("WEBHOOK_URL", ""), "WEBHOOK_URL_SECRET_NAME: missing (or WEBHOOK_URL, for local runs)"},
		{"bad timeout", with("WEBHOOK_TIMEOUT", "soon"), "WEBHOOK_TIMEOUT"},
		{"budget below timeout", with("WEBHOOK_CALL_BUDGET", "5s"), "WEBHOOK_CALL_BUDGET 5s is shorter than WEBHOOK_TIMEOUT 15s"},
		{"everything missing in one error", map[string]string{}, "PROJECT_ID: missing; EVENTS_TOPIC: missing; WEBHOOK_URL_SECRET_NAME: missing (or WEBHOOK_URL, for local runs); DEAD_LETTER_TOPIC: missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ReadConfig(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ReadConfig = %v, want nil", err)
				}
				want := Config{Name: "default", ProjectID: "p", URL: tc.env["WEBHOOK_URL"], SecretName: "webhook-signing-secret", Timeout: 15 * time.Second,
					RetryWindow: 24 * time.Hour, CallBudget: 40 * time.Second, DeadLetterTopic: "webhook-dead-letter",
					EventsTopic: "projects/p/topics/gmail-events", DisableAfter: 5 * 24 * time.Hour}
				if cfg != want {
					t.Errorf("ReadConfig = %+v, want %+v", cfg, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ReadConfig error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}
