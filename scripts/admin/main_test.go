package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

const (
	alice = "alice@example.com" // connected, watched, token stored
	carol = "carol@example.com" // reauth_required
)

func TestAdmin(t *testing.T) {
	ctx := context.Background()
	w := testenv.NewWorld(t, testenv.Options{})
	log, logs, users, sb, project := w.Log, w.Logs, w.Store, w.Sandbox, w.Project
	env := w.Env(nil)
	refresh := connect(t, w, alice)
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
	conf := oauth2.Config{ClientID: testenv.ClientID, ClientSecret: testenv.ClientSecret, Endpoint: oauth2.Endpoint{TokenURL: sb.URL + "/token"}}
	if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: refresh}).Token(); !gmailclient.IsInvalidGrant(err) {
		t.Errorf("refreshing the old token: %v, want invalid_grant", err)
	}
	if _, err := users.Get(ctx, store.Key("zed@example.com")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("disconnecting an unknown address created a record: %v", err)
	}
	if logs.Contains(refresh) || !logs.Contains("user disconnected") {
		t.Errorf("the log holds the refresh token, or not the disconnect:\n%s", logs)
	}
	got := w.Events.Await(1)
	if len(got) != 1 {
		t.Fatalf("got %d events, want 1: %+v", len(got), got)
	}
	if got[0].Type != events.UserDisconnect || got[0].EmailAddress != alice {
		t.Errorf("event = %+v, want %s for %s", got[0], events.UserDisconnect, alice)
	}
}

// connect sets email up as the consent function leaves a user: token in
// Secret Manager, Gmail watch, active record. It returns the refresh token.
func connect(t *testing.T, w *testenv.World, email string) string {
	t.Helper()
	ctx := context.Background()
	r := w.Reader(nil)
	watch := gmailclient.ReadWatchSettings(r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	u := w.Connect(email)
	refresh, err := w.Vault.RefreshToken(ctx, u.Key)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := w.Mailboxes().ForUser(ctx, u.Key)
	if err != nil {
		t.Fatal(err)
	}
	h, exp, err := watch.Watch(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Store.Update(ctx, u.Key, func(u *store.User) error {
		u.Cursor, u.WatchExpiration, u.RenewAt = h, exp, watch.NextRenewal(exp, time.Now())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return refresh
}
