package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/functions/accounts"
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
	if _, err := users.Update(ctx, store.Key(alice), func(u *store.User) error { u.AppRef = "crm-7"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := users.Connect(ctx, store.Connection{Email: carol, HistoryID: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Update(ctx, store.Key(carol), func(u *store.User) error { u.Status = store.ReauthRequired; return nil }); err != nil {
		t.Fatal(err)
	}

	var authMu sync.Mutex
	var auth []string
	var api http.Handler
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authMu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		authMu.Unlock()
		api.ServeHTTP(w, r)
	}))
	apiURL := "http://" + srv.Listener.Addr().String()
	const backend = "backend@local-app.iam.gserviceaccount.com"
	cfgEnv := map[string]string{"CONSENT_URL": "https://consent.example.com", "RETURN_ORIGINS": "https://app.example.com",
		"ACCOUNTS_URL": apiURL, "ACCOUNTS_INVOKERS": backend}
	for k, v := range env {
		cfgEnv[k] = v
	}
	cfg, err := accounts.ReadConfig(config.FromMap(cfgEnv))
	if err != nil {
		t.Fatal(err)
	}
	api = accounts.New(cfg, accounts.Deps{Users: w.Store, Vault: w.Vault, Events: w.Publisher}, log)
	srv.Start()
	t.Cleanup(srv.Close)
	// As .local/env has it: the tool asks the sandbox for the backend's token.
	adminEnv := map[string]string{"ACCOUNTS_URL": apiURL, "SANDBOX_URL": sb.URL, "ACCOUNTS_INVOKERS": backend}
	forged := map[string]string{"ACCOUNTS_URL": apiURL, "ACCOUNTS_ID_TOKEN": "test-identity-token"}
	aliceKey, carolKey := store.Key(alice), store.Key(carol)

	refused := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"no command", nil, adminEnv, usage},
		{"unknown command", []string{"remove", aliceKey}, adminEnv, usage},
		{"show without key", []string{"show"}, adminEnv, usage},
		{"list with an argument", []string{"list", aliceKey}, adminEnv, usage},
		{"list with a bad flag", []string{"list", "-all"}, adminEnv, usage},
		{"disconnect two", []string{"disconnect", aliceKey, carolKey}, adminEnv, usage},
		{"an address, not a key", []string{"disconnect", alice}, adminEnv, "not a user key"},
		{"no API URL", []string{"list"}, map[string]string{}, "ACCOUNTS_URL: missing"},
		{"plain http elsewhere", []string{"list"}, map[string]string{"ACCOUNTS_URL": "http://accounts.example.com"}, "must use https"},
		{"show unknown", []string{"show", strings.Repeat("0", 32)}, adminEnv, "no such account"},
		{"bad status", []string{"list", "-status", "gone"}, adminEnv, "status must be one of"},
		{"reconnect an active account", []string{"reconnect-link", aliceKey}, adminEnv, "only a reauth_required account"},
		{"a token that is not Google's", []string{"disconnect", aliceKey}, forged, "403 Forbidden"},
		{"no token", []string{"disconnect", aliceKey}, map[string]string{"ACCOUNTS_URL": apiURL}, "401 Unauthorized"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(ctx, tc.args, config.FromMap(tc.env), &out)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.wantErr)
			}
			if tc.wantErr == usage && !errors.Is(err, errUsage) {
				t.Errorf("run(%q) = %v, want the usage error", tc.args, err)
			}
			if u, _ := users.Get(ctx, aliceKey); u.Status != store.Active {
				t.Errorf("a refused command changed %s to %s", alice, u.Status)
			}
		})
	}

	steps := []struct {
		args []string
		want []string // lines or fragments of the output
	}{
		{[]string{"list"}, []string{alice, carol, "active", "reauth_required", "2 accounts: 1 active, 1 reauth_required, 0 disconnected"}},
		{[]string{"list", "-status", "reauth_required"}, []string{carol, "invalid_grant", "1 accounts: 0 active, 1 reauth_required"}},
		{[]string{"show", aliceKey}, []string{"status:", "active", "user:", aliceKey, "watchExpiration:", "historyLag:"}},
		{[]string{"find", "crm-7"}, []string{aliceKey, "crm-7"}},
		{[]string{"resync", aliceKey}, []string{"resynced " + aliceKey, "0 announced"}},
		{[]string{"reconnect-link", "-success-url", "https://app.example.com/back", "-error-url", "https://app.example.com/oops", carolKey}, []string{"https://consent.example.com/connect?link="}},
		{[]string{"disconnect", aliceKey}, []string{"disconnected " + aliceKey}},
		{[]string{"list"}, []string{"2 accounts: 0 active, 1 reauth_required, 1 disconnected"}},
	}
	for _, st := range steps {
		var out bytes.Buffer
		if err := run(ctx, st.args, config.FromMap(adminEnv), &out); err != nil {
			t.Fatalf("run(%q): %v", st.args, err)
		}
		for _, w := range st.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("run(%q) printed\n%s\nwant it to contain %q", st.args, out.String(), w)
			}
		}
	}
	authMu.Lock()
	for _, a := range auth {
		if a != "Bearer test-identity-token" && a != "" && !strings.HasPrefix(a, "Bearer ey") {
			t.Errorf("a request carried Authorization %q, want an ID token", a)
		}
	}
	authMu.Unlock()

	// The disconnect went all the way, as the user's own does.
	if u, _ := users.Get(ctx, aliceKey); u.Status != store.Disconnected {
		t.Errorf("status %q, want disconnected", u.Status)
	}
	if _, ok := sb.Secrets.Secret("projects/" + project + "/secrets/" + vault.RefreshPrefix + aliceKey); ok {
		t.Error("the refresh token secret still exists")
	}
	if w, _ := sb.Gmail.Watch(alice); w.Active {
		t.Error("the Gmail watch is still active")
	}
	conf := oauth2.Config{ClientID: testenv.ClientID, ClientSecret: testenv.ClientSecret, Endpoint: oauth2.Endpoint{TokenURL: sb.URL + "/token"}}
	if _, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: refresh}).Token(); !gmailclient.IsInvalidGrant(err) {
		t.Errorf("refreshing the old token: %v, want invalid_grant", err)
	}
	if logs.Contains(refresh) || !logs.Contains("user disconnected") {
		t.Errorf("the log holds the refresh token, or not the disconnect:\n%s", logs)
	}
	got := w.Events.Await(1)
	if got[0].Type != events.UserDisconnect || got[0].EmailAddress != alice || got[0].AppRef != "crm-7" {
		t.Errorf("event = %+v, want %s for %s under crm-7", got[0], events.UserDisconnect, alice)
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
	svc, err := w.Mailboxes().ForUser(ctx, u)
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

// TestReconnectLinkRefusedInDelegationOnlyMode: against an accounts API that
// makes no links (CONNECT_MODE=delegation), reconnect-link fails with the
// API's reason and message, prints nothing and stores no link.
func TestReconnectLinkRefusedInDelegationOnlyMode(t *testing.T) {
	ctx := context.Background()
	w := testenv.NewWorld(t, testenv.Options{})
	if _, _, err := w.Store.Connect(ctx, store.Connection{Email: carol, HistoryID: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Store.Update(ctx, store.Key(carol), func(u *store.User) error { u.Status = store.ReauthRequired; return nil }); err != nil {
		t.Fatal(err)
	}
	const audience, backend = "https://accounts.example.com", "backend@app.iam.gserviceaccount.com"
	cfg, err := accounts.ReadConfig(config.FromMap(w.Env(map[string]string{
		"CONSENT_URL": "https://consent.example.com", "RETURN_ORIGINS": "https://app.example.com", "CONNECT_MODE": "delegation",
		"DELEGATION_SERVICE_ACCOUNT": "mailboxes@app.iam.gserviceaccount.com",
		"ACCOUNTS_URL":               audience, "ACCOUNTS_INVOKERS": backend})))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(accounts.New(cfg, accounts.Deps{Users: w.Store, Vault: w.Vault, Events: w.Publisher}, w.Log))
	t.Cleanup(srv.Close)
	var out bytes.Buffer
	err = run(ctx, []string{"reconnect-link", store.Key(carol)}, config.FromMap(map[string]string{"ACCOUNTS_URL": srv.URL,
		"ACCOUNTS_ID_TOKEN": w.Sandbox.Auth.IDToken(backend, audience)}), &out)
	if err == nil || !strings.Contains(err.Error(), "409 Conflict ("+accounts.DomainOnlyReason+")") ||
		!strings.Contains(err.Error(), "makes no connect or reconnect links") || out.Len() != 0 {
		t.Errorf("reconnect-link = %v, printed %q; want the 409, its reason and message, and nothing printed", err, out.String())
	}
	if docs, err := w.Firestore.Collection("connectLinks").Documents(ctx).GetAll(); err != nil || len(docs) != 0 {
		t.Errorf("%d links stored (%v), want none", len(docs), err)
	}
}
