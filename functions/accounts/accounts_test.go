package accounts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/functions/accounts"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/connectlink"
	"github.com/gmailwatch/gmailwatch/shared/endpointhealth"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

const (
	consentURL  = "https://consent.example.com"
	appOrigin   = "https://app.example.com"
	accountsURL = "https://accounts.example.com" // the API's audience
	backend     = "backend@app-project.iam.gserviceaccount.com"
)

// world is the accounts function on a loopback server, over a testenv world:
// the Firestore and Pub/Sub emulators and the sandbox's OAuth, Gmail and
// Secret Manager.
type world struct {
	*testenv.World
	url   string
	token string // the backend's ID token for the API
	users *store.Store
	vault *vault.Vault
	sb    *sandbox.Sandbox
}

func newWorld(t *testing.T) *world { return newWorldEnv(t, nil) }

// newWorldEnv is newWorld with more settings.
func newWorldEnv(t *testing.T, extra map[string]string) *world {
	t.Helper()
	var o testenv.Options
	if extra["CONNECT_MODE"] != "" { // delegation or both: a Workspace domain to delegate in
		o.Sandbox.Domain = "example.com"
	}
	w := &world{World: testenv.NewWorld(t, o)}
	w.users, w.vault, w.sb = w.Store, w.Vault, w.Sandbox
	env := map[string]string{"CONSENT_URL": consentURL + "/", "RETURN_ORIGINS": appOrigin,
		"ACCOUNTS_URL": accountsURL, "ACCOUNTS_INVOKERS": backend}
	for k, v := range extra {
		env[k] = v
	}
	cfg, err := accounts.ReadConfig(config.FromMap(w.Env(env)))
	if err != nil {
		t.Fatalf("ReadConfig: %v", err)
	}
	srv := httptest.NewServer(accounts.New(cfg, accounts.Deps{Users: w.Store, Vault: w.Vault, Events: w.Publisher, Endpoints: endpointhealth.New(w.Firestore, nil)}, w.Log))
	t.Cleanup(srv.Close)
	w.url, w.token = srv.URL, w.sb.Auth.IDToken(backend, accountsURL)
	return w
}

// connect makes email a connected user, as the consent function leaves it.
func (w *world) connect(t *testing.T, email, ref string) store.User {
	t.Helper()
	ctx := context.Background()
	rt, err := w.sb.Connect(email, gmailclient.ScopeMetadata)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.vault.PutRefreshToken(ctx, store.Key(email), rt); err != nil {
		t.Fatal(err)
	}
	h, _ := w.sb.Gmail.HistoryID(email)
	u, _, err := w.users.Connect(ctx, store.Connection{Email: email, AppRef: ref, Labels: []string{"INBOX"}, LabelFilter: "include",
		HistoryID: int64(h), WatchExpiration: time.Now().Add(7 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// call sends a request and decodes the JSON answer into out (when not nil).
func (w *world) call(t *testing.T, method, path, body string, out any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, w.url+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+w.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: Content-Type %q, want JSON", method, path, ct)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, raw)
		}
	}
	return resp.StatusCode, string(raw)
}

func (w *world) links(t *testing.T) []store.Link {
	t.Helper()
	docs, err := w.Firestore.Collection("connectLinks").Documents(context.Background()).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []store.Link
	for _, d := range docs {
		var l store.Link
		d.DataTo(&l)
		l.ID = d.Ref.ID
		out = append(out, l)
	}
	return out
}

type link struct {
	URL       string `json:"url"`
	ExpiresAt string `json:"expiresAt"`
}

func TestConnectLinks(t *testing.T) {
	w := newWorld(t)
	var got link
	start := time.Now()
	status, body := w.call(t, "POST", "/connect-links", `{"appRef":"crm:42","expectedAddress":"Alice@Example.com",
		"successUrl":"https://app.example.com/ok?s=1","errorUrl":"https://app.example.com/err"}`, &got)
	if status != http.StatusCreated {
		t.Fatalf("status %d: %s", status, body)
	}
	u, err := url.Parse(got.URL)
	if err != nil || !strings.HasPrefix(got.URL, consentURL+"/connect?link=") {
		t.Fatalf("url %q, want %s/connect?link=…", got.URL, consentURL)
	}
	token := u.Query().Get("link")
	links := w.links(t)
	if len(links) != 1 || links[0].ID != connectlink.TokenID(token) || links[0].AppRef != "crm:42" || links[0].Address != "alice@example.com" ||
		links[0].Expires.Sub(start) < 14*time.Minute || links[0].Expires.Sub(start) > 16*time.Minute || strings.Contains(body, links[0].ID) {
		t.Errorf("stored links = %+v, want one for crm:42 expiring in 15 min under the token's hash", links)
	}
	if exp, _ := time.Parse(time.RFC3339, got.ExpiresAt); exp.Sub(links[0].Expires).Abs() > time.Second {
		t.Errorf("expiresAt %s, stored %v", got.ExpiresAt, links[0].Expires)
	}

	for _, tc := range []struct {
		name, contentType, body string
		status                  int
		says                    string
	}{
		{"not JSON", "text/plain", `{"appRef":"a"}`, 415, "JSON"},
		{"broken JSON", "application/json", `{"appRef":`, 400, "expected JSON"},
		{"unknown field", "application/json", `{"appRef":"a","redirect":"https://evil.example"}`, 400, "unknown field"},
		{"two values", "application/json", `{"appRef":"a"}{"appRef":"b"}`, 400, "more than one"},
		{"oversize", "application/json", `{"appRef":"` + strings.Repeat("a", 20000) + `"}`, 413, "over"},
		{"no reference", "application/json", `{}`, 400, "appRef is required"},
		{"reference too long", "application/json", `{"appRef":"` + strings.Repeat("r", 257) + `"}`, 400, "longer than 256"},
		{"return URL elsewhere", "application/json", `{"appRef":"a","successUrl":"https://evil.example/","errorUrl":"https://app.example.com/e"}`, 400, "successUrl: origin"},
		{"open redirect", "application/json", `{"appRef":"a","successUrl":"https://app.example.com@evil.example/","errorUrl":"https://app.example.com/e"}`, 400, "successUrl"},
		{"expiry too short", "application/json", `{"appRef":"a","expiresInSeconds":5}`, 400, "expiresInSeconds"},
		{"expiry too long", "application/json", `{"appRef":"a","expiresInSeconds":99999999}`, 400, "expiresInSeconds"},
		{"expiry over a day", "application/json", `{"appRef":"a","successUrl":"https://app.example.com/ok","errorUrl":"https://app.example.com/err","expiresInSeconds":86401}`, 400, "..86400"},
		{"no return URLs", "application/json", `{"appRef":"a"}`, 400, "successUrl and errorUrl are required"},
		{"every problem at once", "application/json", `{"appRef":"","expectedAddress":"nope","successUrl":"x"}`, 400, "appRef is required; expectedAddress"},
	} {
		req, _ := http.NewRequest("POST", w.url+"/connect-links", bytes.NewBufferString(tc.body))
		req.Header.Set("Content-Type", tc.contentType)
		req.Header.Set("Authorization", "Bearer "+w.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error struct {
				Code    int
				Message string
			}
		}
		json.Unmarshal(raw, &e)
		if resp.StatusCode != tc.status || e.Error.Code != tc.status || !strings.Contains(e.Error.Message, tc.says) {
			t.Errorf("%s: status %d %s, want %d saying %q", tc.name, resp.StatusCode, raw, tc.status, tc.says)
		}
	}
	if n := len(w.links(t)); n != 1 {
		t.Errorf("%d links stored after bad requests, want the one good link", n)
	}
}

type accountJSON struct {
	User           string `json:"user"`
	AppRef         string `json:"appRef"`
	Email          string `json:"emailAddress"`
	Status         string `json:"status"`
	Watch          string `json:"watchExpiration"`
	HistoryLag     int64  `json:"historyLag"`
	LastErrorClass string `json:"lastErrorClass"`
}

type page struct {
	Accounts []accountJSON `json:"accounts"`
	Next     string        `json:"nextPageToken"`
}

func TestGetAndList(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	a := w.connect(t, "a@example.com", "app-1")
	b := w.connect(t, "b@example.com", "app-1")
	c := w.connect(t, "c@example.com", "app-2")
	if _, err := w.users.Update(ctx, c.Key, func(u *store.User) error {
		u.Status, u.PendingHistoryID = store.ReauthRequired, u.Cursor+7
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	var one accountJSON
	if status, body := w.call(t, "GET", "/accounts/"+c.Key, "", &one); status != 200 {
		t.Fatalf("get: %d %s", status, body)
	}
	if one.User != c.Key || one.AppRef != "app-2" || one.Email != "c@example.com" || one.Status != store.ReauthRequired ||
		one.HistoryLag != 7 || one.LastErrorClass != "invalid_grant" || one.Watch == "" {
		t.Errorf("account = %+v", one)
	}
	var byRef page
	w.call(t, "GET", "/accounts?appRef=app-1", "", &byRef)
	if len(byRef.Accounts) != 2 || byRef.Accounts[0].AppRef != "app-1" || byRef.Accounts[1].AppRef != "app-1" {
		t.Errorf("by appRef = %+v, want a and b", byRef)
	}
	var active page
	w.call(t, "GET", "/accounts?status=active", "", &active)
	if len(active.Accounts) != 2 {
		t.Errorf("active = %+v, want a and b", active)
	}
	seen := map[string]bool{}
	for token, n := "", 0; n < 5; n++ {
		var p page
		w.call(t, "GET", "/accounts?pageSize=1&pageToken="+token, "", &p)
		for _, acc := range p.Accounts {
			seen[acc.User] = true
		}
		if token = p.Next; token == "" {
			break
		}
	}
	if !seen[a.Key] || !seen[b.Key] || !seen[c.Key] || len(seen) != 3 {
		t.Errorf("paging saw %v, want every account once", seen)
	}

	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/accounts/" + strings.Repeat("0", 32), 404},
		{"/accounts/NOT-A-KEY", 400},
		{"/accounts/" + strings.ToUpper(a.Key), 400},
		{"/accounts?status=gone", 400},
		{"/accounts?pageSize=0", 400},
		{"/accounts?pageSize=many", 400},
		{"/accounts?pageToken=../users", 400},
		{"/accounts?appRef=x&status=active", 400},
		{"/accounts?email=a@example.com", 400},
		{"/nowhere", 404},
	} {
		if status, body := w.call(t, "GET", tc.path, "", nil); status != tc.status || !strings.Contains(body, `"message"`) {
			t.Errorf("GET %s: %d %s, want %d with a message", tc.path, status, body, tc.status)
		}
	}
	if status, _ := w.call(t, "DELETE", "/accounts/"+a.Key, "", nil); status != http.StatusNotFound {
		t.Errorf("DELETE: status %d, want 404 (no such route)", status)
	}
	if _, err := w.users.Get(context.Background(), a.Key); err != nil {
		t.Errorf("the account is gone after a refused DELETE: %v", err)
	}
}

func TestReconnectLinkOnlyForReauth(t *testing.T) {
	w := newWorld(t)
	u := w.connect(t, "r@example.com", "app-r")
	body := `{"successUrl":"https://app.example.com/back","errorUrl":"https://app.example.com/oops"}`
	if status, resp := w.call(t, "POST", "/accounts/"+u.Key+"/reconnect-link", body, nil); status != http.StatusConflict {
		t.Errorf("reconnect link for an active account: %d %s, want 409", status, resp)
	}
	if _, err := w.users.Update(context.Background(), u.Key, func(u *store.User) error { u.Status = store.ReauthRequired; return nil }); err != nil {
		t.Fatal(err)
	}
	var got link
	if status, resp := w.call(t, "POST", "/accounts/"+u.Key+"/reconnect-link", body, &got); status != http.StatusCreated {
		t.Fatalf("reconnect link: %d %s", status, resp)
	}
	links := w.links(t)
	if len(links) != 1 || links[0].Reconnect != u.Key || links[0].Address != "r@example.com" || links[0].AppRef != "app-r" {
		t.Errorf("links = %+v, want one reconnecting %s under app-r", links, u.Key)
	}
	if status, _ := w.call(t, "POST", "/accounts/"+u.Key+"/reconnect-link", `{"successUrl":"https://evil.example/","errorUrl":"https://evil.example/"}`, nil); status != 400 {
		t.Errorf("reconnect link to a foreign origin: status %d, want 400", status)
	}
	if status, _ := w.call(t, "POST", "/accounts/"+strings.Repeat("1", 32)+"/reconnect-link", body, nil); status != 404 {
		t.Errorf("reconnect link for nobody: status %d, want 404", status)
	}
	if n := len(w.links(t)); n != 1 {
		t.Errorf("%d links after refused requests, want 1", n)
	}
}

// TestDelegationOnlyMakesNoLinks: with CONNECT_MODE=delegation no account
// connects by consent, so both link routes answer 409 with a reason, store
// no link and change no account, whatever the request; the other routes
// still work. With both modes on, links are made as ever.
func TestDelegationOnlyMakesNoLinks(t *testing.T) {
	w := newWorldEnv(t, map[string]string{"CONNECT_MODE": "delegation"})
	ctx := context.Background()
	u := w.connect(t, "d@example.com", "app-d")
	if _, err := w.users.Update(ctx, u.Key, func(u *store.User) error { u.Status = store.ReauthRequired; return nil }); err != nil {
		t.Fatal(err)
	}
	before, _ := w.users.Get(ctx, u.Key)
	good := `{"successUrl":"https://app.example.com/back","errorUrl":"https://app.example.com/oops"}`
	for _, tc := range []struct{ name, path, body string }{
		{"connect link", "/connect-links", `{"appRef":"crm:1","successUrl":"https://app.example.com/ok"}`},
		{"connect link, bad body", "/connect-links", `{"appRef":`},
		{"reconnect link", "/accounts/" + u.Key + "/reconnect-link", good},
		{"reconnect link for nobody", "/accounts/" + strings.Repeat("3", 32) + "/reconnect-link", good},
		{"reconnect link, bad key", "/accounts/NOT-A-KEY/reconnect-link", good},
	} {
		status, raw := w.call(t, "POST", tc.path, tc.body, nil)
		var e struct {
			Error struct {
				Code    int
				Status  string
				Message string
				Reason  string
			}
		}
		json.Unmarshal([]byte(raw), &e)
		if status != http.StatusConflict || e.Error.Code != 409 || e.Error.Status != "CONFLICT" || e.Error.Reason != accounts.DomainOnlyReason ||
			!strings.Contains(e.Error.Message, "CONNECT_MODE=delegation") {
			t.Errorf("%s: %d %s, want 409 with reason %s naming the mode", tc.name, status, raw, accounts.DomainOnlyReason)
		}
	}
	if links := w.links(t); len(links) != 0 {
		t.Errorf("links stored in delegation-only mode: %+v", links)
	}
	if after, _ := w.users.Get(ctx, u.Key); !after.UpdatedAt.Equal(before.UpdatedAt) || after.Status != store.ReauthRequired {
		t.Errorf("the account changed: %+v, was %+v", after, before)
	}
	var one accountJSON
	if status, body := w.call(t, "GET", "/accounts/"+u.Key, "", &one); status != 200 || one.Status != store.ReauthRequired {
		t.Errorf("GET the account in delegation-only mode: %d %s", status, body)
	}
	if status, body := w.call(t, "POST", "/accounts/"+u.Key+"/disconnect", "", &one); status != 200 || one.Status != store.Disconnected {
		t.Errorf("disconnect in delegation-only mode: %d %s", status, body)
	}

	both := newWorldEnv(t, map[string]string{"CONNECT_MODE": "both"})
	r := both.connect(t, "b@example.com", "app-b")
	if _, err := both.users.Update(ctx, r.Key, func(u *store.User) error { u.Status = store.ReauthRequired; return nil }); err != nil {
		t.Fatal(err)
	}
	if status, body := both.call(t, "POST", "/connect-links", `{"appRef":"crm:2","successUrl":"`+appOrigin+`/ok","errorUrl":"`+appOrigin+`/err"}`, nil); status != http.StatusCreated {
		t.Errorf("connect link with both modes: %d %s, want 201", status, body)
	}
	if status, body := both.call(t, "POST", "/accounts/"+r.Key+"/reconnect-link", good, nil); status != http.StatusCreated {
		t.Errorf("reconnect link with both modes: %d %s, want 201", status, body)
	}
	if n := len(both.links(t)); n != 2 {
		t.Errorf("%d links with both modes, want 2", n)
	}
}

func TestResyncAndDisconnect(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	const email = "s@example.com"
	u := w.connect(t, email, "app-s")
	if _, err := w.sb.Gmail.Deliver(gmailapi.Delivery{To: email, Subject: "missed push"}); err != nil {
		t.Fatal(err)
	}
	var res struct {
		Outcome   string `json:"outcome"`
		Announced int    `json:"announced"`
	}
	if status, body := w.call(t, "POST", "/accounts/"+u.Key+"/resync", "", &res); status != 200 || res.Announced != 1 {
		t.Errorf("resync: %d %s, want one message announced", status, body)
	}
	var acc accountJSON
	if status, body := w.call(t, "POST", "/accounts/"+u.Key+"/disconnect", "", &acc); status != 200 || acc.Status != store.Disconnected {
		t.Fatalf("disconnect: %d %s", status, body)
	}
	if _, err := w.vault.RefreshToken(ctx, u.Key); err == nil {
		t.Error("the refresh token survived the disconnect")
	}
	if status, _ := w.call(t, "POST", "/accounts/"+u.Key+"/resync", "", nil); status != http.StatusConflict {
		t.Errorf("resync of a disconnected account: status %d, want 409", status)
	}
	if status, _ := w.call(t, "POST", "/accounts/"+strings.Repeat("2", 32)+"/disconnect", "", nil); status != 404 {
		t.Errorf("disconnect of nobody: status %d, want 404", status)
	}
}

func TestReadConfig(t *testing.T) {
	_, err := accounts.ReadConfig(config.FromMap(map[string]string{"CONSENT_URL": "http://consent.example.com", "RETURN_ORIGINS": "ftp://x", "CONNECT_LINK_TTL": "720h"}))
	for _, want := range []string{"PROJECT_ID", "EVENTS_TOPIC", "CONSENT_URL", "RETURN_ORIGINS", "CONNECT_LINK_TTL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadConfig error %v does not name %s", err, want)
		}
	}
}

// TestRegisteredFunctionFromTheEnvironment serves the function that init
// registered, as deployed: its production handler is built from the process
// environment and makes a link on the configured consent URL.
func TestRegisteredFunctionFromTheEnvironment(t *testing.T) {
	w := newWorld(t)
	for k, v := range w.Env(map[string]string{"CONSENT_URL": consentURL, "RETURN_ORIGINS": appOrigin, "ACCOUNTS_URL": accountsURL, "ACCOUNTS_INVOKERS": backend}) {
		t.Setenv(k, v)
	}
	base := testenv.ServeRegistered(t, "Accounts")
	req, _ := http.NewRequest("POST", base+"/connect-links", strings.NewReader(`{"appRef":"registered","successUrl":"`+appOrigin+`/ok","errorUrl":"`+appOrigin+`/err"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+w.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got link
	json.NewDecoder(resp.Body).Decode(&got)
	if resp.StatusCode != http.StatusCreated || !strings.HasPrefix(got.URL, consentURL+"/connect?link=") {
		t.Errorf("POST /connect-links: status %d, url %q", resp.StatusCode, got.URL)
	}
	if links := w.links(t); len(links) != 1 || links[0].AppRef != "registered" {
		t.Errorf("stored links = %+v, want the one made", links)
	}
}
