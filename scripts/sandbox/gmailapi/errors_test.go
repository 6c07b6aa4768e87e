package gmailapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
)

func TestAuthAndScopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{})
	meta := e.mailbox(t, "meta@example.com")
	e.mailbox(t, "other@example.com")
	m := e.deliver(t, gmailapi.Delivery{To: "meta@example.com", Subject: "s"})
	ro := e.client(t, "meta@example.com", gmailapi.ScopeReadonly)
	full := e.client(t, "meta@example.com", gmailapi.ScopeFull)
	signIn := e.client(t, "meta@example.com", "openid", "email")
	e.auth.AddAccount("nomail@example.com")
	noMail := e.client(t, "nomail@example.com", gmailapi.ScopeReadonly)

	for _, tc := range []struct {
		name   string
		do     func() error
		code   int
		reason string
	}{
		{"metadata: get metadata", func() error { _, err := meta.Users.Messages.Get("me", m.ID).Format("metadata").Do(); return err }, 0, ""},
		{"metadata: get minimal", func() error { _, err := meta.Users.Messages.Get("me", m.ID).Format("minimal").Do(); return err }, 0, ""},
		{"metadata: get full", func() error { _, err := meta.Users.Messages.Get("me", m.ID).Format("full").Do(); return err }, 403, "insufficientPermissions"},
		{"metadata: get default (full)", func() error { _, err := meta.Users.Messages.Get("me", m.ID).Do(); return err }, 403, "insufficientPermissions"},
		{"metadata: get raw", func() error { _, err := meta.Users.Messages.Get("me", m.ID).Format("raw").Do(); return err }, 403, "insufficientPermissions"},
		{"metadata: list with q", func() error { _, err := meta.Users.Messages.List("me").Q("from:bob").Do(); return err }, 403, "insufficientPermissions"},
		{"metadata: list", func() error { _, err := meta.Users.Messages.List("me").Do(); return err }, 0, ""},
		{"readonly: get full", func() error { _, err := ro.Users.Messages.Get("me", m.ID).Format("full").Do(); return err }, 0, ""},
		{"mail.google.com: get raw", func() error { _, err := full.Users.Messages.Get("me", m.ID).Format("raw").Do(); return err }, 0, ""},
		{"sign-in scopes only", func() error { _, err := signIn.Users.GetProfile("me").Do(); return err }, 403, "insufficientPermissions"},
		{"address as userId", func() error { _, err := meta.Users.GetProfile("META@example.com").Do(); return err }, 0, ""},
		{"another user's mailbox", func() error { _, err := meta.Users.GetProfile("other@example.com").Do(); return err }, 403, "forbidden"},
		{"another user's history", func() error {
			_, err := meta.Users.History.List("other@example.com").StartHistoryId(1).Do()
			return err
		}, 403, "forbidden"},
		{"account without a mailbox", func() error { _, err := noMail.Users.GetProfile("me").Do(); return err }, 400, "failedPrecondition"},
	} {
		err := tc.do()
		if tc.code == 0 {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		wantAPIError(t, tc.name, err, tc.code, tc.reason)
	}

	// A revoked account's access tokens stop working at once.
	e.auth.RevokeAccount("meta@example.com")
	_, err := meta.Users.GetProfile("me").Do()
	wantAPIError(t, "revoked token", err, 401, "authError")
	_, err = e.client(t, "other@example.com").Users.GetProfile("me").Do()
	if err != nil {
		t.Fatalf("other account after revoking meta: %v", err)
	}
}

// TestBadRequests sends malformed requests over plain HTTP and checks every
// answer has Google's error shape and changes nothing.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gmailapi.Options{})
	e.mailbox(t, "bad@example.com", gmailapi.ScopeReadonly)
	rt := e.auth.IssueRefreshToken(clientID, "bad@example.com", []string{gmailapi.ScopeReadonly})
	cfg := oauth2.Config{ClientID: clientID, ClientSecret: clientSecret, Endpoint: oauth2.Endpoint{TokenURL: e.url + "/token"}}
	tok, err := cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.AccessToken, "ya29.") {
		t.Fatalf("access token %q does not look like Google's", tok.AccessToken)
	}
	topic := "projects/" + e.pubsub.Project() + "/topics/missing"
	m := e.deliver(t, gmailapi.Delivery{To: "bad@example.com"})
	before, _ := e.gmail.HistoryID("bad@example.com")

	base := e.url + "/gmail/v1/users/me/"
	for _, tc := range []struct {
		name, method, path, body, auth string
		code                           int
		status, reason, message        string
	}{
		{"no token", "GET", "profile", "", "-", 401, "UNAUTHENTICATED", "authError", "missing required authentication"},
		{"bad token", "GET", "profile", "", "Bearer ya29.forged", 401, "UNAUTHENTICATED", "authError", "invalid authentication credentials"},
		{"basic auth", "GET", "profile", "", "Basic YTpi", 401, "UNAUTHENTICATED", "authError", "missing required"},
		{"malformed JSON", "POST", "watch", `{"topicName":`, "", 400, "INVALID_ARGUMENT", "invalidArgument", "Invalid JSON payload"},
		{"unknown field", "POST", "watch", `{"topic":"x"}`, "", 400, "INVALID_ARGUMENT", "invalidArgument", `Unknown name "topic"`},
		{"wrong type", "POST", "watch", `{"labelIds":"INBOX"}`, "", 400, "INVALID_ARGUMENT", "invalidArgument", "Invalid JSON payload"},
		{"two bodies", "POST", "watch", `{} {}`, "", 400, "INVALID_ARGUMENT", "invalidArgument", "Invalid JSON payload"},
		{"no topic", "POST", "watch", `{}`, "", 400, "INVALID_ARGUMENT", "invalidArgument", "Invalid topicName"},
		{"bad topic name", "POST", "watch", `{"topicName":"mytopic"}`, "", 400, "INVALID_ARGUMENT", "invalidArgument", "Invalid topicName"},
		{"missing topic", "POST", "watch", `{"topicName":"` + topic + `"}`, "", 404, "NOT_FOUND", "notFound", "Resource not found"},
		{"bad filter", "POST", "watch", `{"topicName":"` + topic + `","labelFilterBehavior":"maybe"}`, "", 400, "INVALID_ARGUMENT", "invalidArgument", "label_filter_behavior"},
		{"bad watch label", "POST", "watch", `{"topicName":"` + topic + `","labelIds":["nope"]}`, "", 400, "INVALID_ARGUMENT", "invalidArgument", "Invalid label"},
		{"no startHistoryId", "GET", "history", "", "", 400, "INVALID_ARGUMENT", "invalidArgument", "startHistoryId"},
		{"text startHistoryId", "GET", "history?startHistoryId=abc", "", "", 400, "INVALID_ARGUMENT", "invalidArgument", "start_history_id"},
		{"negative startHistoryId", "GET", "history?startHistoryId=-5", "", "", 400, "INVALID_ARGUMENT", "invalidArgument", "start_history_id"},
		{"bad historyTypes", "GET", "history?startHistoryId=1&historyTypes=everything", "", "", 400, "INVALID_ARGUMENT", "invalidArgument", "history_types"},
		{"bad maxResults", "GET", "history?startHistoryId=1&maxResults=ten", "", "", 400, "INVALID_ARGUMENT", "invalidArgument", "max_results"},
		{"bad history pageToken", "GET", "history?startHistoryId=1&pageToken=%25%25", "", "", 400, "INVALID_ARGUMENT", "invalidArgument", "pageToken"},
		{"bad format", "GET", "messages/" + m.ID + "?format=pdf", "", "", 400, "INVALID_ARGUMENT", "invalidArgument", "format"},
		{"bad message id", "GET", "messages/not-an-id", "", "", 400, "INVALID_ARGUMENT", "invalidArgument", "Invalid id"},
		{"unknown message", "GET", "messages/00000000000000ff", "", "", 404, "NOT_FOUND", "notFound", "not found"},
		{"bad messages pageToken", "GET", "messages?pageToken=bm90OmhleA", "", "", 400, "INVALID_ARGUMENT", "invalidArgument", "pageToken"},
		{"bad includeSpamTrash", "GET", "messages?includeSpamTrash=perhaps", "", "", 400, "INVALID_ARGUMENT", "invalidArgument", "include_spam_trash"},
		{"unknown list label", "GET", "messages?labelIds=Label_7", "", "", 400, "INVALID_ARGUMENT", "invalidArgument", "Invalid label"},
		{"unsupported method", "DELETE", "messages/" + m.ID, "", "", 404, "NOT_FOUND", "notFound", "Method not found"},
		{"unknown resource", "GET", "drafts", "", "", 404, "NOT_FOUND", "notFound", "Method not found"},
		{"wrong verb", "GET", "watch", "", "", 404, "NOT_FOUND", "notFound", "Method not found"},
		{"deep path", "GET", "messages/a/b/c", "", "", 404, "NOT_FOUND", "notFound", "Method not found"},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
		switch tc.auth {
		case "":
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		case "-":
		default:
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
				Status  string `json:"status"`
				Errors  []struct {
					Domain, Reason, Message string
				} `json:"errors"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Errorf("%s: body %q is not JSON: %v", tc.name, body, err)
			continue
		}
		g := got.Error
		if resp.StatusCode != tc.code || g.Code != tc.code || g.Status != tc.status || len(g.Errors) != 1 ||
			g.Errors[0].Reason != tc.reason || g.Errors[0].Domain != "global" || !strings.Contains(g.Message, tc.message) ||
			resp.Header.Get("Content-Type") != "application/json; charset=UTF-8" {
			t.Errorf("%s: got %d %s, want %d %s %s containing %q", tc.name, resp.StatusCode, body, tc.code, tc.status, tc.reason, tc.message)
		}
		if tc.code == 401 && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
		}
	}
	if after, _ := e.gmail.HistoryID("bad@example.com"); after != before {
		t.Errorf("history moved from %d to %d", before, after)
	}
	if w, _ := e.gmail.Watch("bad@example.com"); w.Active || w.TopicName != "" {
		t.Errorf("watch = %+v after rejected watch calls", w)
	}
}
