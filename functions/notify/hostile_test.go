package notify

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/secrets"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

// worldState is what a refused push must leave as it was.
type worldState struct {
	Users  []store.User
	Token  []secrets.Version
	Watch  gmailapi.WatchState
	Usage  gmailapi.Usage
	Events int
}

func (w *world) snapshot() worldState {
	w.t.Helper()
	users, err := w.store.List(context.Background(), "", 100)
	if err != nil {
		w.t.Fatal(err)
	}
	token, _ := w.sb.Secrets.Secret("projects/" + w.project + "/secrets/" + vault.RefreshPrefix + w.user.Key)
	watch, err := w.sb.Gmail.Watch(email)
	if err != nil {
		w.t.Fatal(err)
	}
	return worldState{Users: users, Token: token, Watch: watch, Usage: w.sb.Gmail.Usage(email), Events: len(w.events(0))}
}

// TestHostilePushesChangeNothing posts forged, malformed and misrouted
// requests to the function served as deployed, while alice's mailbox holds a
// message a genuine push would announce. Each gets its status and nothing
// changes: the user record, the refresh token in Secret Manager, the Gmail
// watch and quota, the output topic. A genuine push then announces the
// message, so the forgeries carried a push that works.
func TestHostilePushesChangeNothing(t *testing.T) {
	w := newWorld(t)
	h, logs := w.handler()
	gmailTopic := "projects/" + w.project + "/topics/gmail"
	h.gmailTopic = gmailTopic
	url := testenv.ServeCloudEvent(t, h.Handle)
	d, err := w.sb.Deliver(gmailapi.Delivery{To: email, Subject: "only a genuine push announces this"})
	if err != nil {
		t.Fatal(err)
	}
	valid := fmt.Sprintf(`{"emailAddress":%q,"historyId":%d}`, email, d.HistoryID)
	message := func(data string) string { // Pub/Sub's message, as Eventarc's data and the push body carry it
		return `{"message":{"data":"` + base64.StdEncoding.EncodeToString([]byte(data)) + `","messageId":"7","publishTime":"2026-11-26T10:00:00Z"},"subscription":"projects/` + w.project + `/subscriptions/s"}`
	}
	binary := func(source, typ string) map[string]string {
		return map[string]string{"Ce-Id": "7", "Ce-Specversion": "1.0", "Ce-Type": typ, "Ce-Source": source, "Content-Type": "application/json"}
	}
	ours := topicSource(gmailTopic)
	structured := func(spec, source, data string) string {
		return `{"specversion":"` + spec + `","id":"7","type":"` + messagePublished + `","source":"` + source + `","datacontenttype":"application/json","data":` + data + `}`
	}
	before := w.snapshot()

	tests := []struct {
		name, method, path string
		header             map[string]string
		body               string
		want               int
		reason             string // the function's log reason; "" when the framework answers without calling it
	}{
		// Forged CloudEvent headers around a push that would be announced.
		{"binary, another topic", "POST", "/", binary(topicSource("projects/"+w.project+"/topics/other"), messagePublished), message(valid), 200, "not a message of GMAIL_TOPIC"},
		{"binary, the topic in another project", "POST", "/", binary(topicSource("projects/evil/topics/gmail"), messagePublished), message(valid), 200, "not a message of GMAIL_TOPIC"},
		{"binary, no topic", "POST", "/", binary("//pubsub.googleapis.com/", messagePublished), message(valid), 200, "not a message of GMAIL_TOPIC"},
		{"binary, another event type", "POST", "/", binary(ours, "google.cloud.storage.object.v1.finalized"), message(valid), 200, "not a message of GMAIL_TOPIC"},
		{"structured, another topic", "POST", "/", map[string]string{"Content-Type": "application/cloudevents+json"},
			structured("1.0", topicSource("projects/evil/topics/gmail"), message(valid)), 200, "not a message of GMAIL_TOPIC"},
		{"raw push to another topic's path", "POST", "/projects/" + w.project + "/topics/other", nil, message(valid), 200, "not a message of GMAIL_TOPIC"},
		{"raw push to no topic's path", "POST", "/", nil, message(valid), 200, "not a message of GMAIL_TOPIC"},
		{"background event of another topic", "POST", "/", nil, `{"context":{"eventId":"7","timestamp":"2026-11-26T10:00:00Z",` +
			`"eventType":"google.pubsub.topic.publish","resource":{"service":"pubsub.googleapis.com","name":"projects/evil/topics/gmail"}},` +
			`"data":{"data":"` + base64.StdEncoding.EncodeToString([]byte(valid)) + `"}}`, 200, "not a message of GMAIL_TOPIC"},

		// Garbage from the right source is acknowledged, so it is not redelivered.
		{"binary, garbage data", "POST", "/", binary(ours, messagePublished), "\x00\xff garbage", 200, "pub/sub envelope: not JSON"},
		{"binary, XML", "POST", "/", map[string]string{"Ce-Id": "7", "Ce-Specversion": "1.0", "Ce-Type": messagePublished, "Ce-Source": ours,
			"Content-Type": "text/xml"}, "<push/>", 200, "pub/sub envelope: not JSON"},
		{"binary, garbage inside the message", "POST", "/", binary(ours, messagePublished), message("<xml/>"), 200, "gmail notification: not JSON"},
		{"binary, a stranger's push", "POST", "/", binary(ours, messagePublished), message(`{"emailAddress":"stranger@example.com","historyId":99}`), 200, "no such user"},
		{"raw push over 64 KiB", "POST", "/" + gmailTopic, nil, message(`{"emailAddress":"` + email + `","historyId":1,"pad":"` + strings.Repeat("x", 8<<20) + `"}`), 200, "is over 65536"},

		// The framework refuses what is not a CloudEvent or a push, without
		// calling the function. (Its 400 answers, and stderr, quote the body.)
		{"structured, unknown specversion", "POST", "/", map[string]string{"Content-Type": "application/cloudevents+json"}, structured("2.0", ours, message(valid)), 400, ""},
		{"binary, unknown specversion", "POST", "/", map[string]string{"Ce-Id": "7", "Ce-Specversion": "0.9", "Ce-Type": messagePublished,
			"Ce-Source": ours, "Content-Type": "application/json"}, message(valid), 415, ""},
		{"structured, not JSON", "POST", "/", map[string]string{"Content-Type": "application/cloudevents+json"}, "not json", 500, ""},
		{"raw push to the topic with a NUL", "POST", "/" + gmailTopic + "%00", nil, message(valid), 500, ""}, // the converted event's source is invalid
		{"raw body not JSON", "POST", "/" + gmailTopic, nil, "not json", 400, ""},
		{"raw JSON that is not a push", "POST", "/" + gmailTopic, map[string]string{"Content-Type": "application/json"}, `{"historyId":"5"}`, 400, ""},
		{"GET", "GET", "/" + gmailTopic, nil, "", 400, ""},
		{"GET with CloudEvent headers", "GET", "/", binary(ours, messagePublished), "", 405, ""},
		{"PUT without a body", "PUT", "/" + gmailTopic, nil, "", 400, ""},
		{"DELETE with CloudEvent headers", "DELETE", "/", binary(ours, messagePublished), "", 405, ""},
		{"OPTIONS with CloudEvent headers", "OPTIONS", "/", binary(ours, messagePublished), "", 405, ""},
		{"path cleaned from another topic to the Gmail topic", "POST", "/projects/" + w.project + "/topics/other/../gmail", nil, message(valid), 307, ""},
		{"double slash", "POST", "//" + gmailTopic, nil, message(valid), 307, ""},
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logged := len(logs.String())
			req, err := http.NewRequest(tc.method, url+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d: %.200s", resp.StatusCode, tc.want, body)
			}
			if strings.Contains(string(body), email) {
				t.Errorf("the answer quotes the address: %.200s", body)
			}
			log := logs.String()[logged:]
			switch {
			case tc.reason == "" && log != "":
				t.Errorf("the framework should have answered without calling the function, which logged:\n%s", log)
			case tc.reason != "" && (!strings.Contains(log, `"message":"push ignored"`) || !strings.Contains(log, tc.reason)):
				t.Errorf("log %q, want the push ignored because %q", log, tc.reason)
			}
			if strings.Contains(log, email) {
				t.Errorf("the log quotes the address: %s", log)
			}
		})
	}
	if after := w.snapshot(); !reflect.DeepEqual(after, before) {
		t.Errorf("hostile pushes changed the state:\n got %+v\nwant %+v", after, before)
	}

	req, _ := http.NewRequest("POST", url+"/", strings.NewReader(message(valid)))
	for k, v := range binary(ours, messagePublished) {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if evs := w.events(1); resp.StatusCode != http.StatusOK || len(evs) != 1 || evs[0].MessageID != d.ID {
		t.Errorf("the genuine push: status %d, events %+v; want 200 and %s announced", resp.StatusCode, evs, d.ID)
	}
}
