package webhook

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
)

// TestHostileTriggersChangeNothing posts forged, malformed and misrouted
// requests to the function served as deployed. Each gets its status; none
// reaches the application, and only garbage that did come from the events
// topic is kept in the dead-letter topic (nothing else: a replay would
// publish it to the events topic). A genuine event is then delivered, so the
// forgeries carried an event that works.
func TestHostileTriggersChangeNothing(t *testing.T) {
	rv := newReceiver(t, status(http.StatusNoContent))
	hs := newHarness(t, rv.URL+"/hook", staticSecrets{testSecretName: testSecret}, nil)
	url := testenv.ServeCloudEvent(t, hs.h.Handle)
	ev, valid := testEvent(900)
	withStop, _ := testEvent(901)
	withStop.ID = "id.with.a.full.stop"
	dotted, _ := json.Marshal(withStop)
	ours := "//pubsub.googleapis.com/" + hs.h.cfg.EventsTopic
	message := func(data []byte) string { // Pub/Sub's message, as Eventarc's data and the push body carry it
		b, _ := json.Marshal(map[string]any{"message": map[string]any{"data": data, "attributes": ev.Attributes(),
			"messageId": "9", "publishTime": time.Now().UTC().Format(time.RFC3339Nano)}, "subscription": "projects/p/subscriptions/s"})
		return string(b)
	}
	binary := func(source, typ string) map[string]string {
		return map[string]string{"Ce-Id": "9", "Ce-Specversion": "1.0", "Ce-Type": typ, "Ce-Source": source, "Content-Type": "application/json"}
	}
	structured := func(spec, source, data string) string {
		return `{"specversion":"` + spec + `","id":"9","type":"` + messagePublished + `","source":"` + source + `","datacontenttype":"application/json","data":` + data + `}`
	}
	garbage := "\x00\xff garbage " + strings.Repeat("x", 2<<20)
	const ignored = "event not from the events topic ignored"

	tests := []struct {
		name, method, path string
		header             map[string]string
		body               string
		want               int
		log                string // what the function logs; "" when the framework answers without calling it
		dead               string // the data kept in the dead-letter topic, if any
	}{
		// Forged CloudEvent headers around an event that would be delivered.
		{"binary, another topic", "POST", "/", binary("//pubsub.googleapis.com/projects/p/topics/other", messagePublished), message(valid), 200, ignored, ""},
		{"binary, the topic in another project", "POST", "/", binary("//pubsub.googleapis.com/projects/evil/topics/gmail-events", messagePublished), message(valid), 200, ignored, ""},
		{"binary, no topic", "POST", "/", binary("//pubsub.googleapis.com/", messagePublished), message(valid), 200, ignored, ""},
		{"binary, another event type", "POST", "/", binary(ours, "google.cloud.storage.object.v1.finalized"), message(valid), 200, ignored, ""},
		{"structured, another topic", "POST", "/", map[string]string{"Content-Type": "application/cloudevents+json"},
			structured("1.0", "//pubsub.googleapis.com/projects/evil/topics/gmail-events", message(valid)), 200, ignored, ""},
		{"raw push to another topic's path", "POST", "/projects/p/topics/other", nil, message(valid), 200, ignored, ""},
		{"raw push to no topic's path", "POST", "/", nil, message(valid), 200, ignored, ""},
		{"background event of another topic", "POST", "/", nil, `{"context":{"eventId":"9","timestamp":"2026-11-26T10:00:00Z",` +
			`"eventType":"google.pubsub.topic.publish","resource":{"service":"pubsub.googleapis.com","name":"projects/evil/topics/gmail-events"}},` +
			`"data":{"data":"` + base64.StdEncoding.EncodeToString(valid) + `"}}`, 200, ignored, ""},
		{"binary, garbage from another topic", "POST", "/", binary("//pubsub.googleapis.com/projects/p/topics/other", messagePublished), garbage, 200, ignored, ""},

		// Garbage from the events topic is acknowledged and kept.
		{"binary, over 2 MiB of garbage", "POST", "/", binary(ours, messagePublished), garbage, 200, "webhook event dead-lettered", garbage},
		{"binary, XML", "POST", "/", map[string]string{"Ce-Id": "9", "Ce-Specversion": "1.0", "Ce-Type": messagePublished, "Ce-Source": ours,
			"Content-Type": "text/xml"}, "<event/>", 200, "webhook event dead-lettered", "<event/>"},
		{"raw push of a message that is no event", "POST", "/projects/p/topics/gmail-events", nil, message([]byte("<event/>")), 200, "webhook event dead-lettered", "<event/>"},
		{"event id with a full stop", "POST", "/", binary(ours, messagePublished), message(dotted), 200, "webhook event dead-lettered", string(dotted)},

		// The framework refuses what is not a CloudEvent or a push, without calling the function.
		{"structured, unknown specversion", "POST", "/", map[string]string{"Content-Type": "application/cloudevents+json"}, structured("2.0", ours, message(valid)), 400, "", ""},
		{"binary, unknown specversion", "POST", "/", map[string]string{"Ce-Id": "9", "Ce-Specversion": "0.9", "Ce-Type": messagePublished,
			"Ce-Source": ours, "Content-Type": "application/json"}, message(valid), 415, "", ""},
		{"structured, not JSON", "POST", "/", map[string]string{"Content-Type": "application/cloudevents+json"}, "not json", 500, "", ""},
		{"raw body not JSON", "POST", "/projects/p/topics/gmail-events", nil, "not json", 400, "", ""},
		{"GET", "GET", "/projects/p/topics/gmail-events", nil, "", 400, "", ""},
		{"GET with CloudEvent headers", "GET", "/", binary(ours, messagePublished), "", 405, "", ""},
		{"PUT without a body", "PUT", "/", nil, "", 400, "", ""},
		{"DELETE with CloudEvent headers", "DELETE", "/", binary(ours, messagePublished), "", 405, "", ""},
		{"path cleaned from another topic to the events topic", "POST", "/projects/p/topics/other/../gmail-events", nil, message(valid), 307, "", ""},
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(t *testing.T, method, path string, header map[string]string, body string) int {
		req, err := http.NewRequest(method, url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	var wantDead []string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logged := len(hs.logs.String())
			if got := post(t, tc.method, tc.path, tc.header, tc.body); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
			log := hs.logs.String()[logged:]
			if (tc.log == "") != (log == "") || !strings.Contains(log, tc.log) {
				t.Errorf("log %q, want %q", log, tc.log)
			}
			if n := len(rv.got()); n != 0 {
				t.Errorf("the application received %d requests", n)
			}
		})
		if tc.dead != "" {
			wantDead = append(wantDead, tc.dead)
		}
	}
	var gotDead []string
	for _, m := range hs.deadLetters(t, len(wantDead), 15*time.Second) {
		gotDead = append(gotDead, string(m.Data))
		if m.Attributes["reason"] != ReasonMalformed {
			t.Errorf("dead letter %.40q: reason %q, want %q", m.Data, m.Attributes["reason"], ReasonMalformed)
		}
	}
	slices.Sort(gotDead)
	slices.Sort(wantDead)
	if !slices.Equal(gotDead, wantDead) {
		t.Errorf("dead-letter topic holds %d messages, want %d (only the garbage from the events topic)", len(gotDead), len(wantDead))
	}
	if strings.Contains(hs.logs.String(), testSecretValue) {
		t.Error("the signing key was logged")
	}

	if got := post(t, "POST", "/projects/p/topics/gmail-events", nil, message(valid)); got != http.StatusOK {
		t.Errorf("the genuine event: status %d, want 200", got)
	}
	if reqs := rv.got(); len(reqs) != 1 || reqs[0].id != ev.ID || reqs[0].body != string(valid) || reqs[0].verified != nil {
		t.Errorf("the genuine event: the application received %d requests, want it once, signed", len(reqs))
	}
}
