package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/logging"
	"github.com/gmailwatch/gmailwatch/shared/webhooksig"
)

// FuzzReadConfig reads fuzzed settings. Properties: no panic, the same
// answer twice, an error (and no settings) for every bad value, an error
// that quotes no path, query, fragment or password of WEBHOOK_URL, and
// accepted settings the handler can work with.
func FuzzReadConfig(f *testing.F) {
	f.Add("p", "https://app.example.com/hooks/gmail", "", "", "", "", "webhook-dead-letter", "gmail-events", "")
	f.Add("p", "http://127.0.0.1:8089/hook", "s", "2s", "1h", "10s", "dl", "events", "127.0.0.1:9000")
	f.Add("p", "http://127.0.0.1.evil.example/hook", "", "", "", "", "dl", "events", "")
	f.Add("p", "http://app.example.com/hooks/T0K3N-s3cret?key=s3cret-key#frag-s3cret", "", "", "", "", "dl", "events", "")
	f.Add("p", "https://user:pa55w0rd-s3cret@app.example.com/x", "", "1ns", "-1h", "0s", "dl", "events", "")
	f.Add("", "/relative/s3cret-path", "", "soon", "forever", "15s", "", "", "")
	f.Add(" p ", " https://[::1]:8443/x ", " name ", " 1m ", " 2h ", " 1m ", " dl ", " events ", " ")
	f.Add("p", "https://:443/x", "", "", "", "", "dl", "events", "")
	f.Add("p", "https://app.example.com/\x00s3cret-nul", "", "", "", "", "dl", "events", "")
	f.Add("p", "HTTPS://APP.EXAMPLE.COM/", "", "9223372036854775807ns", "", "", "dl", "events", "")
	f.Fuzz(func(t *testing.T, project, hook, secretName, timeout, retry, budget, deadLetter, eventsTopic, endpoint string) {
		env := map[string]string{
			"PROJECT_ID": project, "WEBHOOK_URL": hook, "WEBHOOK_SECRET_NAME": secretName, "WEBHOOK_TIMEOUT": timeout,
			"WEBHOOK_RETRY_WINDOW": retry, "WEBHOOK_CALL_BUDGET": budget, "DEAD_LETTER_TOPIC": deadLetter,
			"EVENTS_TOPIC": eventsTopic, "SECRETMANAGER_ENDPOINT": endpoint,
		}
		cfg, err := ReadConfig(config.FromMap(env))
		again, err2 := ReadConfig(config.FromMap(env))
		if cfg != again || (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("ReadConfig is not deterministic: %+v, %v then %+v, %v", cfg, err, again, err2)
		}
		if err != nil {
			if cfg != (Config{}) {
				t.Fatalf("ReadConfig = %+v with error %v; want no settings", cfg, err)
			}
			env["WEBHOOK_URL"] = "ftp://neutral.example"
			_, neutral := ReadConfig(config.FromMap(env))
			for _, part := range urlSecrets(hook) {
				if strings.Contains(err.Error(), part) && (neutral == nil || !strings.Contains(neutral.Error(), part)) {
					t.Fatalf("error %q quotes %q of WEBHOOK_URL", err, part)
				}
			}
			return
		}
		u, perr := url.Parse(cfg.URL)
		switch {
		case perr != nil || u.Hostname() == "":
			t.Fatalf("accepted WEBHOOK_URL %q without a host", cfg.URL)
		case u.Scheme != "https" && !(u.Scheme == "http" && loopback(u.Hostname())):
			t.Fatalf("accepted WEBHOOK_URL %q: plain http off loopback", cfg.URL)
		case cfg.ProjectID == "" || cfg.DeadLetterTopic == "" || cfg.SecretName == "" ||
			cfg.EventsTopic != "projects/"+cfg.ProjectID+"/topics/"+strings.TrimSpace(eventsTopic) || strings.TrimSpace(eventsTopic) == "":
			t.Fatalf("accepted incomplete settings %+v", cfg)
		case cfg.Timeout <= 0 || cfg.RetryWindow <= 0 || cfg.CallBudget < cfg.Timeout:
			t.Fatalf("accepted durations %v, %v, %v", cfg.Timeout, cfg.RetryWindow, cfg.CallBudget)
		}
		if _, err := http.NewRequest(http.MethodPost, cfg.URL, nil); err != nil {
			t.Fatalf("accepted WEBHOOK_URL %q that no request can use: %v", cfg.URL, err)
		}
		New(cfg, staticSecrets{}, nil, slog.New(slog.DiscardHandler))
	})
}

// urlSecrets are the parts of a WEBHOOK_URL that may hold a token, long
// enough to tell a quotation from chance.
func urlSecrets(raw string) []string {
	var parts []string
	if u, err := url.Parse(strings.TrimSpace(raw)); err == nil {
		pw, _ := u.User.Password()
		parts = []string{pw, u.RawQuery, u.Fragment, strings.Trim(u.EscapedPath(), "/")}
	} else if _, rest, ok := strings.Cut(raw, "/"); ok {
		parts = []string{rest}
	}
	var long []string
	for _, p := range parts {
		if len(p) >= 8 {
			long = append(long, p)
		}
	}
	return long
}

func loopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// FuzzHandle hands the handler fuzzed trigger payloads (the CloudEvent data
// of a message of the events topic) with a receiver that accepts everything
// and the Pub/Sub emulator's dead-letter topic. Properties: no panic; every
// payload is acknowledged (delivered or dead-lettered, nothing left for a
// redelivery storm); what reaches the receiver is exactly the published
// message, signed, with the event's id as webhook-id; a message holding an
// event is never dead-lettered instead; nothing logged holds the key.
func FuzzHandle(f *testing.F) {
	keys, err := webhooksig.Parse(testSecret)
	if err != nil {
		f.Fatal(err)
	}
	var mu sync.Mutex
	var got []request
	rv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, request{id: r.Header.Get(webhooksig.HeaderID), body: string(body), verified: keys.Verify(body, r.Header)})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	f.Cleanup(rv.Close)
	ps := testenv.PubSub(f, testenv.Project(f))
	testenv.Topic(f, ps, "webhook-dead-letter")
	pub := ps.Publisher("webhook-dead-letter")
	f.Cleanup(pub.Stop)
	logs := &keyWatch{}
	h := New(Config{ProjectID: ps.Project(), URL: rv.URL + "/hook", SecretName: testSecretName, Timeout: time.Second,
		RetryWindow: time.Hour, CallBudget: 2 * time.Second, DeadLetterTopic: "webhook-dead-letter", EventsTopic: "projects/p/topics/gmail-events"},
		staticSecrets{testSecretName: testSecret}, pub, logging.New(logs, slog.LevelDebug))

	_, valid := testEvent(1)
	for _, data := range []string{string(valid), `{"specversion":"1","type":"t","id":"a.b"}`, `{"specversion":"1"}`, `not json`, ``, `null`, `[]`} {
		payload, _ := json.Marshal(map[string]any{"message": map[string]any{"data": []byte(data), "attributes": map[string]string{"id": "x"},
			"messageId": "1", "publishTime": "2026-11-26T10:00:00Z"}, "subscription": "projects/p/subscriptions/s"})
		f.Add(payload)
	}
	f.Add([]byte(`{"message":{"data":"%%%"}}`))
	f.Add([]byte(`{"message":{"publishTime":"yesterday"}}`))
	f.Add([]byte(`{"message":null}`))
	f.Add([]byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		var push pushData
		decoded := json.Unmarshal(payload, &push) == nil
		if decoded && !publishable(push.Message.Attributes) {
			t.Skip("Pub/Sub never delivers such attributes")
		}
		mu.Lock()
		before := len(got)
		mu.Unlock()
		ce := event.New()
		ce.SetID("fuzz")
		ce.SetSource("//pubsub.googleapis.com/projects/p/topics/gmail-events")
		ce.SetType(messagePublished)
		ce.SetTime(time.Now())
		if err := ce.SetData(event.ApplicationJSON, payload); err != nil {
			t.Skip("not a CloudEvent payload")
		}
		if err := h.Handle(context.Background(), ce); err != nil {
			t.Fatalf("Handle(%q) = %v; want it delivered or dead-lettered", payload, err)
		}
		mu.Lock()
		sent := append([]request(nil), got[before:]...)
		mu.Unlock()
		ev, decodeErr := events.Decode(push.Message.Data)
		deliverable := decoded && decodeErr == nil && !strings.Contains(ev.ID, ".")
		switch {
		case !deliverable && len(sent) != 0:
			t.Fatalf("payload %q: %d requests for a message that holds no event", payload, len(sent))
		case deliverable && len(sent) != 1:
			t.Fatalf("payload %q: %d requests, want the event delivered once", payload, len(sent))
		case deliverable && (sent[0].body != string(push.Message.Data) || sent[0].id != ev.ID || sent[0].verified != nil):
			t.Fatalf("payload %q: receiver got id %q body %q (verify %v); want id %q and the message's bytes, signed",
				payload, sent[0].id, sent[0].body, sent[0].verified, ev.ID)
		}
		if logs.leaked.Load() {
			t.Fatalf("payload %q: the signing key was logged", payload)
		}
	})
}

// keyWatch is a log that keeps nothing but whether the signing key was written to it.
type keyWatch struct{ leaked atomic.Bool }

func (k *keyWatch) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(testSecretValue)) {
		k.leaked.Store(true)
	}
	return len(p), nil
}

// publishable reports whether Pub/Sub would accept a message with attrs
// and the dead-letter attributes added.
func publishable(attrs map[string]string) bool {
	if len(attrs) > 90 {
		return false
	}
	for k, v := range attrs {
		if k == "" || strings.HasPrefix(k, "goog") || len(k) > 256 || len(v) > 1024 {
			return false
		}
	}
	return true
}
