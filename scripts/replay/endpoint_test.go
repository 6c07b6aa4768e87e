package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/webhooksig"
)

const (
	oldKey = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	newKey = "whsec_c2VjcmV0LWtleS1udW1iZXItdHdvLXh5eg=="
)

// TestReplayToEndpoint replays one endpoint's dead letters straight to its
// URL, read from its URL secret, signed with its current key (rotated since
// they were dead-lettered); the receiver refuses one, which stays behind.
func TestReplayToEndpoint(t *testing.T) {
	w := testenv.NewWorld(t, testenv.Options{})
	ctx := context.Background()
	current, err := webhooksig.Parse(newKey)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	rv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if current.Verify(body, r.Header) != nil {
			rw.WriteHeader(http.StatusUnauthorized)
			return
		}
		id := r.Header.Get(webhooksig.HeaderID)
		if id == "e2" {
			rw.WriteHeader(http.StatusInternalServerError)
			return
		}
		mu.Lock()
		got = append(got, id)
		mu.Unlock()
		rw.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rv.Close)
	w.PutSecret("gw-webhook-crm-url", rv.URL+"/hooks/t0ken")
	w.PutSecret("gw-webhook-crm-signing-secret", newKey)

	dl := testenv.Topic(t, w.PubSub, "gw-webhook-crm-dead-letter")
	testenv.Subscription(t, w.PubSub, dl, "gw-webhook-crm-dead-letter")
	pub := w.PubSub.Publisher("gw-webhook-crm-dead-letter")
	for _, m := range []*pubsub.Message{deadLetter("e1", "expired"), deadLetter("e3", "expired"), deadLetter("e2", "rejected")} {
		if _, err := pub.Publish(ctx, m).Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pub.Stop()

	env := w.Env(nil)
	var stdout, stderr bytes.Buffer
	err = run(ctx, []string{"-project", w.Project, "-endpoint", "crm", "-prefix", "gw-", "-idle", "1500ms", "-reason", "expired"},
		func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run = %v\n%s%s", err, stdout.String(), stderr.String())
	}
	mu.Lock()
	if strings.Join(got, ",") != "e1,e3" {
		t.Errorf("receiver accepted %v, want e1 and e3 (e2 has another reason)", got)
	}
	mu.Unlock()
	if left := drain(t, w.PubSub, "gw-webhook-crm-dead-letter", nil); strings.Join(left, ",") != "e2" {
		t.Errorf("left dead-lettered %v, want e2", left)
	}
	if strings.Contains(stdout.String()+stderr.String(), "t0ken") {
		t.Error("output quotes the URL")
	}

	// A refused delivery stops the run and leaves the dead letter.
	pub = w.PubSub.Publisher("gw-webhook-crm-dead-letter")
	if _, err := pub.Publish(ctx, deadLetter("e2", "rejected")).Get(ctx); err != nil {
		t.Fatal(err)
	}
	pub.Stop()
	err = run(ctx, []string{"-project", w.Project, "-endpoint", "crm", "-prefix", "gw-", "-idle", "1500ms"},
		func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "status 500") {
		t.Fatalf("run = %v, want the receiver's 500", err)
	}
	if left := drain(t, w.PubSub, "gw-webhook-crm-dead-letter", nil); strings.Join(left, ",") != "e2" {
		t.Errorf("left dead-lettered %v, want e2", left)
	}
}

func TestReplayToEndpointRejectsBadArguments(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no project", []string{"-endpoint", "crm"}, "-project is required"},
		{"bad since", []string{"-project", "p", "-endpoint", "crm", "-since", "yesterday"}, "-since must be an RFC 3339 time"},
		{"future since", []string{"-project", "p", "-endpoint", "crm", "-since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, "-since is in the future"},
		{"plain http url", []string{"-project", "p", "-endpoint", "crm", "-url", "http://app.example.com/t0ken"}, "-url:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tc.args, func(string) (string, bool) { return "", false }, &out, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run = %v, want error containing %q", err, tc.want)
			}
		})
	}
}
