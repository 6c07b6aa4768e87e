package accounts_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/option"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

type tokenJSON struct {
	AccessToken string   `json:"accessToken"`
	TokenType   string   `json:"tokenType"`
	ExpiresAt   string   `json:"expiresAt"`
	Scopes      []string `json:"scopes"`
}

// gmailAs is the Gmail client the application's backend would build from
// an issued token: nothing of this system's, only the token and Gmail's URL.
func (w *world) gmailAs(t *testing.T, tok tokenJSON) *gmail.Service {
	t.Helper()
	ctx := context.Background()
	svc, err := gmail.NewService(ctx,
		option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok.AccessToken, TokenType: tok.TokenType})),
		option.WithEndpoint(w.sb.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// issue asks for an access token, answering the status, the token and the
// error reason.
func (w *world) issue(t *testing.T, key, body string) (int, tokenJSON, string) {
	t.Helper()
	var tok tokenJSON
	status, raw := w.call(t, "POST", "/accounts/"+key+"/access-token", body, &tok)
	var e apiErrorJSON
	json.Unmarshal([]byte(raw), &e)
	return status, tok, e.Error.Reason
}

type apiErrorJSON struct {
	Error struct {
		Code    int
		Message string
		Reason  string
	}
}

// TestAccessTokenReadsTheMail is the application acting on a message it was
// told about: the token the API hands out reads it through Gmail's own API,
// is the cached one on a second ask, carries the granted scope, and is in no
// log line.
func TestAccessTokenReadsTheMail(t *testing.T) {
	w := newWorld(t)
	const email = "t@example.com"
	u := w.connect(t, email, "app-t")
	msg, err := w.sb.Gmail.Deliver(gmailapi.Delivery{To: email, From: "bo@example.com", Subject: "Hi", Body: "see you at noon"})
	if err != nil {
		t.Fatal(err)
	}

	status, tok, _ := w.issue(t, u.Key, "")
	if status != http.StatusOK || tok.AccessToken == "" || tok.TokenType != "Bearer" {
		t.Fatalf("access token: %d %+v, want a bearer token", status, tok)
	}
	exp, err := time.Parse(time.RFC3339, tok.ExpiresAt)
	if err != nil || time.Until(exp) < gmailclient.MinTokenLife {
		t.Errorf("expiresAt %q (%v): want at least %v ahead", tok.ExpiresAt, err, gmailclient.MinTokenLife)
	}
	if len(tok.Scopes) != 1 || tok.Scopes[0] != gmailclient.ScopeMetadata {
		t.Errorf("scopes %v, want exactly the granted %s", tok.Scopes, gmailclient.ScopeMetadata)
	}
	got, err := w.gmailAs(t, tok).Users.Messages.Get("me", msg.ID).Format("metadata").MetadataHeaders("Subject").Do()
	if err != nil {
		t.Fatalf("messages.get with the issued token: %v", err)
	}
	if got.Id != msg.ID || len(got.Payload.Headers) != 1 || got.Payload.Headers[0].Value != "Hi" {
		t.Errorf("messages.get with the issued token: %+v, want message %s with subject Hi", got, msg.ID)
	}
	if owner, _, err := w.sb.Auth.Check(tok.AccessToken); err != nil || owner != email {
		t.Errorf("the token acts for %q (%v), want %s", owner, err, email)
	}

	_, again, _ := w.issue(t, u.Key, "")
	if again.AccessToken != tok.AccessToken {
		t.Error("a second ask refreshed the token, want the cached one while it has minutes left")
	}
	_, fresh, _ := w.issue(t, u.Key, `{"forceRefresh":true}`)
	if fresh.AccessToken == "" || fresh.AccessToken == tok.AccessToken {
		t.Error("forceRefresh returned the cached token, want a new one")
	}

	logs := w.Logs.String()
	if strings.Count(logs, `"message":"access token issued"`) != 3 || !strings.Contains(logs, u.Key) || !strings.Contains(logs, `"caller":"`+backend+`"`) {
		t.Errorf("want three issuance lines naming the user and the caller; logs:\n%s", logs)
	}
	for _, secret := range []string{tok.AccessToken, fresh.AccessToken} {
		if strings.Contains(logs, secret) {
			t.Fatal("an access token is in the logs")
		}
	}
}

// TestAccessTokenRefusals: a token is issued for active accounts only, with
// the reason; a grant Google no longer honours marks the account
// reauth_required, as a sync would; bad input changes nothing.
func TestAccessTokenRefusals(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()

	gone := w.connect(t, "gone@example.com", "app-g")
	if status, body := w.call(t, "POST", "/accounts/"+gone.Key+"/disconnect", "", nil); status != 200 {
		t.Fatalf("disconnect: %d %s", status, body)
	}
	if status, tok, reason := w.issue(t, gone.Key, ""); status != http.StatusConflict || reason != store.Disconnected || tok.AccessToken != "" {
		t.Errorf("token of a disconnected account: %d reason %q, want 409 disconnected", status, reason)
	}

	revoked := w.connect(t, "revoked@example.com", "app-r")
	w.sb.Revoke("revoked@example.com")
	if status, _, reason := w.issue(t, revoked.Key, ""); status != http.StatusConflict || reason != store.ReauthRequired {
		t.Errorf("token of a revoked grant: %d reason %q, want 409 reauth_required", status, reason)
	}
	if u, _ := w.users.Get(ctx, revoked.Key); u.Status != store.ReauthRequired {
		t.Errorf("after a refused refresh the account is %s, want reauth_required", u.Status)
	}
	var reauth []string
	for _, ev := range w.Events.Quiet(500 * time.Millisecond) {
		if ev.Type == "gmail.user.reauth_required" {
			reauth = append(reauth, ev.User)
		}
	}
	if len(reauth) != 1 || reauth[0] != revoked.Key {
		t.Errorf("reauth_required events for %v, want one for the revoked account", reauth)
	}
	if status, _, reason := w.issue(t, revoked.Key, ""); status != http.StatusConflict || reason != store.ReauthRequired {
		t.Errorf("token of a reauth_required account: %d reason %q, want 409 reauth_required", status, reason)
	}

	live := w.connect(t, "live@example.com", "app-l")
	before, _ := w.users.Get(ctx, live.Key)
	for _, tc := range []struct {
		name, key, body string
		status          int
	}{
		{"bad key", "NOT-A-KEY", "", 400},
		{"nobody", strings.Repeat("4", 32), "", 404},
		{"unknown field", live.Key, `{"scope":"https://mail.google.com/"}`, 400},
		{"broken body", live.Key, `{"forceRefresh":`, 400},
	} {
		if status, tok, _ := w.issue(t, tc.key, tc.body); status != tc.status || tok.AccessToken != "" {
			t.Errorf("%s: status %d, want %d and no token", tc.name, status, tc.status)
		}
	}
	if after, _ := w.users.Get(ctx, live.Key); !after.UpdatedAt.Equal(before.UpdatedAt) || after.Status != store.Active {
		t.Errorf("bad requests changed the account: %+v", after)
	}
}

// TestAccessTokenForDelegatedUser: a user watched through domain-wide
// delegation has no refresh token; the API's token comes from the
// delegation, for GMAIL_SCOPE, and reads the mail as well.
func TestAccessTokenForDelegatedUser(t *testing.T) {
	w := newWorldEnv(t, map[string]string{"CONNECT_MODE": "both"})
	t.Setenv("GCE_METADATA_HOST", w.Env(nil)["GCE_METADATA_HOST"]) // read by the metadata client: not in parallel
	ctx := context.Background()
	const email = "dee@example.com"
	if err := w.sb.AddDirectoryUser(email, "/", false); err != nil {
		t.Fatal(err)
	}
	if err := w.sb.GrantDelegation(gmailclient.ScopeMetadata); err != nil {
		t.Fatal(err)
	}
	h, _ := w.sb.Gmail.HistoryID(email)
	u, _, err := w.users.Connect(ctx, store.Connection{Email: email, Sub: googleauth.Subject(email), Delegated: true, HistoryID: int64(h),
		WatchExpiration: time.Now().Add(7 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := w.sb.Gmail.Deliver(gmailapi.Delivery{To: email, Subject: "delegated"})
	if err != nil {
		t.Fatal(err)
	}
	status, tok, reason := w.issue(t, u.Key, "")
	if status != http.StatusOK || len(tok.Scopes) != 1 || tok.Scopes[0] != gmailclient.ScopeMetadata {
		t.Fatalf("delegated access token: %d %+v (reason %q), want one for %s", status, tok, reason, gmailclient.ScopeMetadata)
	}
	if _, err := w.gmailAs(t, tok).Users.Messages.Get("me", msg.ID).Format("minimal").Do(); err != nil {
		t.Errorf("messages.get with the delegated token: %v", err)
	}
}
