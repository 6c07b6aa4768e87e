package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

const (
	clientID     = "admin-test.apps.googleusercontent.com"
	clientSecret = "GOCSPX-admin-test-secret"
	alice        = "alice@example.com" // connected, watched, token stored
	carol        = "carol@example.com" // reauth_required
)

func TestAdmin(t *testing.T) {
	ctx := context.Background()
	log, logs := testenv.Logger(t)
	project := testenv.Project(t)
	users := store.New(testenv.Firestore(t, project), nil)
	ps := testenv.PubSub(t, project)
	gmailTopic := testenv.Topic(t, ps, "gmail")
	published := receive(t, ps, testenv.Subscription(t, ps, testenv.Topic(t, ps, "events"), "events-sub"))

	sb, err := sandbox.Start(ctx, sandbox.Options{ProjectID: project, ClientID: clientID, ClientSecret: clientSecret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	if err := sb.PutSecret(ctx, project, "oauth-client-secret", []byte(clientSecret)); err != nil {
		t.Fatal(err)
	}
	env := sb.Env()
	env["PROJECT_ID"], env["EVENTS_TOPIC"], env["GMAIL_TOPIC"] = project, "events", gmailTopic
	refresh := connect(t, sb, users, env, alice)
	if _, _, err := users.Connect(ctx, store.Connection{Email: carol, HistoryID: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Update(ctx, store.Key(carol), func(u *store.User) error { u.Status = store.ReauthRequired; return nil }); err != nil {
		t.Fatal(err)
	}

	without := func(keys ...string) map[string]string {
		m := map[string]string{}
		for k, v := range env {
			m[k] = v
		}
		for _, k := range keys {
			delete(m, k)
		}
		return m
	}
	refused := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"no command", nil, env, usage},
		{"unknown command", []string{"remove", alice}, env, usage},
		{"show without address", []string{"show"}, env, usage},
		{"list with an argument", []string{"list", alice}, env, usage},
		{"disconnect two", []string{"disconnect", alice, carol}, env, usage},
		{"not an address", []string{"disconnect", "alice"}, env, "not an email address"},
		{"named address", []string{"disconnect", "Alice <" + alice + ">"}, env, "not an email address"},
		{"no project", []string{"list"}, without("PROJECT_ID"), "PROJECT_ID: missing"},
		{"disconnect without OAuth settings", []string{"disconnect", alice}, without("OAUTH_CLIENT_ID", "EVENTS_TOPIC"), "OAUTH_CLIENT_ID: missing"},
		{"show unknown", []string{"show", "zed@example.com"}, env, "user not found"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(ctx, tc.args, config.FromMap(tc.env), &out, log)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.wantErr)
			}
			if tc.wantErr == usage && !errors.Is(err, errUsage) {
				t.Errorf("run(%q) = %v, want the usage error", tc.args, err)
			}
			if u, _ := users.Get(ctx, store.Key(alice)); u.Status != store.Active {
				t.Errorf("a refused command changed %s to %s", alice, u.Status)
			}
		})
	}

	steps := []struct {
		args []string
		want []string // lines or fragments of the output
	}{
		{[]string{"list"}, []string{alice, carol, "active", "reauth_required", "2 users: 1 active, 1 reauth_required, 0 disconnected"}},
		{[]string{"show", alice}, []string{"status:", "active", "key:", store.Key(alice), "watch expires:", "labels:", "include INBOX"}},
		{[]string{"disconnect", alice}, []string{"disconnected " + alice}},
		{[]string{"disconnect", "zed@example.com"}, []string{"zed@example.com was not connected; nothing to do"}},
		{[]string{"list"}, []string{"2 users: 0 active, 1 reauth_required, 1 disconnected"}},
	}
	for _, st := range steps {
		var out bytes.Buffer
		if err := run(ctx, st.args, config.FromMap(env), &out, log); err != nil {
			t.Fatalf("run(%q): %v", st.args, err)
		}
		for _, w := range st.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("run(%q) printed\n%s\nwant it to contain %q", st.args, out.String(), w)
			}
		}
	}

	// The disconnect went all the way, as the user's own does.
	if u, _ := users.Get(ctx, store.Key(alice)); u.Status != store.Disconnected {
		t.Errorf("status %q, want disconnected", u.Status)
	}
	if _, ok := sb.Secrets.Secret("projects/" + project + "/secrets/" + vault.RefreshPrefix + store.Key(alice)); ok {
		t.Error("the refresh token secret still exists")
	}
	if w, _ := sb.Gmail.Watch(alice); w.Active {
		t.Error("the Gmail watch is still active")
	}
	conf := oauth2.Config{ClientID: clientID, ClientSecret: clientSecret, Endpoint: oauth2.Endpoint{TokenURL: sb.URL + "/token"}}
	if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: refresh}).Token(); !gmailclient.IsInvalidGrant(err) {
		t.Errorf("refreshing the old token: %v, want invalid_grant", err)
	}
	if _, err := users.Get(ctx, store.Key("zed@example.com")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("disconnecting an unknown address created a record: %v", err)
	}
	if logs.Contains(refresh) || !logs.Contains("user disconnected") {
		t.Errorf("the log holds the refresh token, or not the disconnect:\n%s", logs)
	}
	got := published(t, 1)
	if got[0].Type != events.UserDisconnect || got[0].EmailAddress != alice {
		t.Errorf("event = %+v, want %s for %s", got[0], events.UserDisconnect, alice)
	}
}

// connect sets email up as the consent function leaves a user: token in
// Secret Manager, Gmail watch, active record. It returns the refresh token.
func connect(t *testing.T, sb *sandbox.Sandbox, users *store.Store, env map[string]string, email string) string {
	t.Helper()
	ctx := context.Background()
	r := config.NewReader(config.FromMap(env))
	settings, watch := gmailclient.ReadSettings(r), gmailclient.ReadWatchSettings(r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	v, err := vault.New(ctx, env["PROJECT_ID"], sb.SecretManagerAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	refresh, err := sb.Connect(email)
	if err != nil {
		t.Fatal(err)
	}
	key := store.Key(email)
	if err := v.PutRefreshToken(ctx, key, refresh); err != nil {
		t.Fatal(err)
	}
	svc, err := gmailclient.NewFactory(settings, v).ForUser(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	h, exp, err := watch.Watch(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = users.Connect(ctx, store.Connection{Email: email, Labels: watch.Labels, LabelFilter: watch.LabelFilter,
		HistoryID: h, WatchExpiration: exp, RenewAt: watch.NextRenewal(exp, time.Now())})
	if err != nil {
		t.Fatal(err)
	}
	return refresh
}

// receive collects the events published on sub; the returned function
// waits for n of them.
func receive(t *testing.T, ps *pubsub.Client, sub string) func(t *testing.T, n int) []events.Event {
	var mu sync.Mutex
	var got []events.Event
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ps.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			e, err := events.Decode(m.Data)
			if err != nil {
				t.Errorf("published %q is not an event: %v", m.Data, err)
			}
			mu.Lock()
			got = append(got, e)
			mu.Unlock()
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func(t *testing.T, n int) []events.Event {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			mu.Lock()
			out := append([]events.Event(nil), got...)
			mu.Unlock()
			if len(out) >= n || time.Now().After(deadline) {
				time.Sleep(time.Second) // and no more than n
				mu.Lock()
				defer mu.Unlock()
				if len(got) != n {
					t.Fatalf("got %d events, want %d: %+v", len(got), n, got)
				}
				return append([]events.Event(nil), got...)
			}
		}
	}
}
