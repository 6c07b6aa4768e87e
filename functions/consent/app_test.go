package consent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gmailwatch/gmailwatch/functions/accounts"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// backendAPI is the accounts API as the application's backend calls it:
// its URL, and a client sending the backend's ID token for it.
type backendAPI struct {
	url    string
	client *http.Client
}

// accountsAPI starts the accounts function beside the consent function,
// on the same project, callable by the application's backend.
func (s *stack) accountsAPI(t *testing.T) backendAPI {
	t.Helper()
	const audience, caller = accountsAudience, "backend@app-project.iam.gserviceaccount.com"
	env := s.env()
	env["CONSENT_URL"], env["ACCOUNTS_URL"], env["ACCOUNTS_INVOKERS"] = s.url, audience, caller+","+otherBackend
	cfg, err := accounts.ReadConfig(config.FromMap(env))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(accounts.New(cfg, accounts.Deps{Users: s.users, Vault: s.vault, Events: s.publisher, HTTP: s.httpClient}, s.log))
	t.Cleanup(srv.Close)
	return backendAPI{srv.URL, &http.Client{Transport: bearer(s.Sandbox.Auth.IDToken(caller, audience))}}
}

// accountsAudience is the accounts API's URL as its callers know it;
// otherBackend is a second caller it admits, another application's backend.
const accountsAudience, otherBackend = "https://accounts.example.com", "other-backend@other-project.iam.gserviceaccount.com"

// as returns api called by another caller.
func (s *stack) as(api backendAPI, caller string) backendAPI {
	return backendAPI{api.url, &http.Client{Transport: bearer(s.Sandbox.Auth.IDToken(caller, accountsAudience))}}
}

// bearer sends its ID token with every request.
type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}

// redeem is the application's backend calling POST /connect-results with
// the result code its success page received; it returns the status and the
// answer (the account, or the error).
func redeem(t *testing.T, api backendAPI, code string) (int, redeemAnswer) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"result": code})
	resp, err := api.client.Post(api.url+"/connect-results", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got redeemAnswer
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatalf("POST /connect-results: status %d, %v", resp.StatusCode, err)
	}
	return resp.StatusCode, got
}

type redeemAnswer struct {
	User   string `json:"user"`
	AppRef string `json:"appRef"`
	Email  string `json:"emailAddress"`
	Status string `json:"status"`
	Error  struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	} `json:"error"`
}

// redeemed redeems the result the browser brought back to the app, through
// the accounts API (started on first use), and returns the account.
func (s *stack) redeemed(t *testing.T, back *url.URL) redeemAnswer {
	t.Helper()
	if s.api.url == "" {
		s.api = s.accountsAPI(t)
	}
	status, got := redeem(t, s.api, back.Query().Get("result"))
	if status != http.StatusOK {
		t.Fatalf("redeem of %s: status %d %+v", back, status, got.Error)
	}
	return got
}

// askForLink is the application's backend calling POST /connect-links.
func askForLink(t *testing.T, api backendAPI, path string, body map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := api.client.Post(api.url+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		URL string `json:"url"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: status %d, %v", path, resp.StatusCode, err)
	}
	return got.URL
}

// TestAppConnectsAUserInABrowser is the whole embedding: the application's
// backend asks the accounts API for a link for its user, the browser (Debian's
// chromium) follows it, consents on the sandbox's page and lands on the
// application's success page; the events carry the application's reference.
func TestAppConnectsAUserInABrowser(t *testing.T) {
	s := newStack(t)
	api := s.accountsAPI(t)
	ctx := newBrowser(t)
	link := askForLink(t, api, "/connect-links", map[string]any{"appRef": "crm-user-1138", "expectedAddress": alice,
		"successUrl": s.app.URL + "/done", "errorUrl": s.app.URL + "/failed"})
	s.seen.add(link)

	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("browser: %s: %v\nfunction log:\n%s", what, err, s.logs)
		}
	}
	step("follow the link", chromedp.Do(ctx, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("allow"))))
	step("click Allow", chromedp.Do(ctx, chromedp.Click(chromedp.ID("allow")), chromedp.WaitVisible(chromedp.ID("app-done"))))
	landed, err := chromedp.Run(ctx, chromedp.Location())
	step("read the app's page", err)
	u, _ := url.Parse(landed)
	key := s.key(alice)
	if u.Path != "/done" || u.Query().Get("outcome") != "connected" || u.Query().Get("result") == "" || u.Query().Has("user") {
		t.Errorf("landed on %s, want the app's /done?outcome=connected&result=<code>, no user key", landed)
	}
	if leak := s.seen.foundIn(landed); leak != "" {
		t.Errorf("the app's URL carries a secret (%s)", leak)
	}
	// Until the backend redeems the result, nothing is published.
	if got := s.published(time.Second); len(got) != 0 {
		t.Errorf("events before the redeem: %+v", got)
	}
	s.api = api
	if acc := s.redeemed(t, u); acc.User != key || acc.AppRef != "crm-user-1138" || acc.Status != store.Active || acc.Email != alice {
		t.Errorf("redeemed account = %+v, want alice active under crm-user-1138", acc)
	}

	// The application reads the account back by its own reference.
	resp, err := api.client.Get(api.url + "/accounts?appRef=crm-user-1138")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Accounts []struct{ User, Status string } `json:"accounts"`
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Accounts) != 1 || list.Accounts[0].User != key || list.Accounts[0].Status != store.Active {
		t.Errorf("accounts under crm-user-1138 = %+v, want alice active", list.Accounts)
	}

	// A message arrives; its event carries the reference, as the connected one does.
	syncer := gmailsync.New(gmailsync.Deps{Users: s.users, Gmail: gmailclient.NewFactory(s.cfg.OAuth, s.vault), Events: s.publisher}, gmailsync.Settings{})
	d, err := s.gmail.Deliver(gmailapi.Delivery{To: alice, Subject: "for the CRM"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := syncer.OnPush(context.Background(), alice, int64(d.HistoryID)); err != nil {
		t.Fatal(err)
	}
	// The event sink checks that the appRef attribute matches the JSON field.
	got := s.awaitEvents(t, 2)
	for _, e := range got {
		if e.AppRef != "crm-user-1138" {
			t.Errorf("%s event: appRef %q, want crm-user-1138", e.Type, e.AppRef)
		}
	}
	if got[0].Type != events.UserConnected || got[1].Type != events.MessageReceived || got[1].MessageID != d.ID {
		t.Errorf("events = %+v, want connected then the message", got)
	}
}

// A reauth_required account gets a reconnect link from the API; completed
// by the same Google account it is active again, under the same reference.
func TestReconnectLinkReactivates(t *testing.T) {
	s := newStack(t)
	s.addPeople(t)
	api := s.accountsAPI(t)
	key := s.key(alice)
	c, cb, _ := s.followLink(t, s.storedLink(t, s.request("app-7"), time.Minute), alice)
	s.api = api
	s.redeemed(t, s.back(t, cb, c))
	if _, err := s.users.Update(context.Background(), key, func(u *store.User) error { u.Status = store.ReauthRequired; return nil }); err != nil {
		t.Fatal(err)
	}
	link := askForLink(t, api, "/accounts/"+key+"/reconnect-link", map[string]any{"successUrl": s.app.URL + "/done", "errorUrl": s.app.URL + "/failed"})
	token, _ := url.Parse(link)
	s.seen.add(token.Query().Get("link"))

	// carol cannot complete alice's reconnect link.
	s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
	before := s.snapshot(t)
	c, cb, _ = s.followLink(t, token.Query().Get("link"), carol)
	if back := s.back(t, cb, c); back.Query().Get("reason") != "account_not_allowed" {
		t.Errorf("reconnect link completed as carol: back to %s", back)
	}
	s.unchanged(t, before)

	c, cb, _ = s.followLink(t, token.Query().Get("link"), alice)
	back := s.back(t, cb, c)
	if back.Query().Get("outcome") != "connected" {
		t.Fatalf("reconnect: back to %s", back)
	}
	if u, _ := s.users.Get(context.Background(), key); u.Status != store.ReauthRequired {
		t.Errorf("reconnected before the redeem: %+v, want still reauth_required", u)
	}
	if acc := s.redeemed(t, back); acc.User != key {
		t.Errorf("redeemed %+v, want %s", acc, key)
	}
	if u, _ := s.users.Get(context.Background(), key); u.Status != store.Active || u.AppRef != "app-7" {
		t.Errorf("after reconnecting: %+v, want active under app-7", u)
	}
}

// TestReconnectLinkForAUserConnectedWithoutALink: an account connected on
// the plain consent URL has no reference; its reconnect link completes (not
// connected_elsewhere) and leaves it active with still no reference.
func TestReconnectLinkForAUserConnectedWithoutALink(t *testing.T) {
	s := newStack(t)
	s.addPeople(t)
	api := s.accountsAPI(t)
	key := s.key(alice)
	s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
	c, cb := s.begin(t, "/connect?login_hint="+alice) // alice is on ALLOWED_ADDRESSES
	if status, body := s.finish(t, cb, c); status != http.StatusOK {
		t.Fatalf("connect without a link: %d %s", status, body)
	}
	if _, err := s.users.Update(context.Background(), key, func(u *store.User) error { u.Status = store.ReauthRequired; return nil }); err != nil {
		t.Fatal(err)
	}
	link := askForLink(t, api, "/accounts/"+key+"/reconnect-link", map[string]any{"successUrl": s.app.URL + "/done", "errorUrl": s.app.URL + "/failed"})
	token, _ := url.Parse(link)
	s.seen.add(token.Query().Get("link"))
	c, cb, _ = s.followLink(t, token.Query().Get("link"), alice)
	if back := s.back(t, cb, c); back.Query().Get("outcome") != "connected" {
		t.Errorf("reconnect of an account without a reference: back to %s, want connected", back)
	} else if acc := s.redeemed(t, back); acc.User != key {
		t.Errorf("reconnect of an account without a reference: redeemed %+v, want %s", acc, key)
	}
	if u, _ := s.users.Get(context.Background(), key); u.Status != store.Active || u.AppRef != "" {
		t.Errorf("after reconnecting: status %s, appRef %q; want active with no reference", u.Status, u.AppRef)
	}
}
