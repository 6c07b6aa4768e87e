package consent_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/functions/consent"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/connectlink"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// app is the application's web server: the browser lands on its success or
// error page, which it records.
type app struct {
	*httptest.Server
	mu      sync.Mutex
	arrived []*url.URL
}

func newApp(t *testing.T) *app {
	a := &app{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.arrived = append(a.arrived, r.URL)
		a.mu.Unlock()
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, `<!doctype html><main id="app-`+strings.Trim(r.URL.Path, "/")+`">`+r.URL.Query().Get("outcome")+`</main>`)
	}))
	t.Cleanup(a.Close)
	return a
}

// request is a link request with the app's return URLs.
func (s *stack) request(ref string) connectlink.Request {
	return connectlink.Request{AppRef: ref, SuccessURL: s.app.URL + "/done?session=7", ErrorURL: s.app.URL + "/failed"}
}

// storedLink makes a link as the accounts API does, valid for ttl.
func (s *stack) storedLink(t *testing.T, r connectlink.Request, ttl time.Duration) string {
	t.Helper()
	l, err := s.cfg.Links.Check(r, s.clock.Now().Add(ttl))
	if err != nil {
		t.Fatal(err)
	}
	token, id := connectlink.NewToken()
	l.ID = id
	if err := s.users.CreateLink(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	s.seen.add(token)
	return token
}

// signedLink makes a link as an application's backend does with the shared key.
func (s *stack) signedLink(r connectlink.Request, ttl time.Duration, key string) string {
	token := connectlink.Sign([]byte(key), r, s.clock.Now().Add(ttl), "nonce-"+strings.Repeat("x", 10)+time.Now().Format("150405.000000000"))
	s.seen.add(token)
	return token
}

// followLink opens a link as hint would, with an approving sandbox, and
// returns the state cookie and callback, or the refusal when /connect refuses.
func (s *stack) followLink(t *testing.T, token, hint string) (*http.Cookie, *url.URL, *http.Response) {
	t.Helper()
	s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
	resp := s.get(t, s.url+"/connect?"+url.Values{"link": {token}, "login_hint": {hint}}.Encode(), nil)
	if resp.StatusCode != http.StatusFound {
		return nil, nil, resp
	}
	c, cb := s.begin(t, "/connect?"+url.Values{"link": {token}, "login_hint": {hint}}.Encode())
	return c, cb, nil
}

// back calls the callback and returns where the browser is sent back to: a
// 303 to the app carrying no secret, code or token.
func (s *stack) back(t *testing.T, cb *url.URL, cookie *http.Cookie) *url.URL {
	t.Helper()
	return s.wentBack(t, s.get(t, cb.String(), cookie))
}

func (s *stack) wentBack(t *testing.T, resp *http.Response) *url.URL {
	t.Helper()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, s.app.URL+"/") {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d to %q, want 303 to the app:\n%s", resp.StatusCode, loc, body)
	}
	if leak := s.seen.foundIn(loc); leak != "" || strings.Contains(loc, "code=") || strings.Contains(loc, "token") {
		t.Errorf("return URL %s carries a secret or code (%s)", loc, leak)
	}
	u, _ := url.Parse(loc)
	return u
}

func TestLinkConnectsUnderTheReferenceAndGoesBack(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	r := s.request("crm/user-42")
	r.ExpectedAddress = alice
	token := s.storedLink(t, r, 30*time.Minute)
	cookie, cb, refused := s.followLink(t, token, alice)
	if refused != nil {
		t.Fatalf("/connect with a fresh link: status %d", refused.StatusCode)
	}
	back := s.back(t, cb, cookie)
	key := s.key(alice)
	if back.Path != "/done" || back.Query().Get("outcome") != "connected" || back.Query().Get("result") == "" || back.Query().Has("user") || back.Query().Get("session") != "7" {
		t.Errorf("back to %s, want /done?outcome=connected&result=<code> keeping session=7, no user key", back)
	}
	if acc := s.redeemed(t, back); acc.User != key {
		t.Errorf("redeemed %+v, want %s", acc, key)
	}
	u, err := s.users.Get(ctx, key)
	if err != nil || u.AppRef != "crm/user-42" || u.Status != store.Active {
		t.Fatalf("user = %+v, %v; want active under crm/user-42", u, err)
	}
	got := s.awaitEvents(t, 1)
	if got[0].Type != events.UserConnected || got[0].AppRef != "crm/user-42" {
		t.Errorf("event = %+v, want connected with appRef crm/user-42", got[0])
	}

	// The link is spent: opening it again goes back with link_used, and
	// nothing changes; so does the replayed callback.
	before := s.snapshot(t)
	_, _, refused = s.followLink(t, token, alice)
	if back := s.wentBack(t, refused); back.Path != "/failed" || back.Query().Get("reason") != "link_used" {
		t.Errorf("reused link went back to %s, want /failed?reason=link_used", back)
	}
	if status, _ := s.finish(t, cb, cookie); status != http.StatusBadRequest {
		t.Errorf("replayed callback: status %d, want 400", status)
	}
	s.unchanged(t, before)
}

func TestSignedLinkConnectsOnce(t *testing.T) {
	s := newStack(t)
	token := s.signedLink(s.request("signed-7"), 10*time.Minute, linkKey)
	c1, cb1, _ := s.followLink(t, token, alice)
	c2, cb2, _ := s.followLink(t, token, alice) // the same link opened twice
	if back := s.back(t, cb1, c1); back.Query().Get("outcome") != "connected" {
		t.Fatalf("signed link: back to %s", back)
	} else {
		s.redeemed(t, back)
	}
	if u, _ := s.users.Get(context.Background(), s.key(alice)); u.AppRef != "signed-7" {
		t.Errorf("appRef = %q, want signed-7", u.AppRef)
	}
	before := s.snapshot(t)
	if back := s.back(t, cb2, c2); back.Query().Get("reason") != "link_used" {
		t.Errorf("second flow of one signed link went back to %s, want reason=link_used", back)
	}
	s.unchanged(t, before)
}

// Every attack ends refused, with nothing stored in Firestore or Secret
// Manager, no Gmail watch, no event, and no grant left at Google.
func TestLinkAttacksStoreNothing(t *testing.T) {
	type outcome struct {
		status int    // a page, or 303 back to the app
		reason string // the error URL's reason, or the page's id
	}
	tests := []struct {
		name string
		// attack returns the response the browser ends on.
		attack  func(t *testing.T, s *stack) *http.Response
		want    outcome
		revoked bool // a grant was obtained and must be withdrawn
	}{
		{"no link, account on no allowlist", func(t *testing.T, s *stack) *http.Response {
			s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
			c, cb := s.begin(t, "/connect?login_hint="+carol)
			return s.get(t, cb.String(), c)
		}, outcome{403, "denied"}, true},
		{"no link, address in an allowed domain but no Workspace account", func(t *testing.T, s *stack) *http.Response {
			s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
			c, cb := s.begin(t, "/connect?login_hint="+mallory)
			return s.get(t, cb.String(), c)
		}, outcome{403, "denied"}, true},
		{"expired link", func(t *testing.T, s *stack) *http.Response {
			token := s.storedLink(t, s.request("r"), time.Minute)
			s.clock.Advance(time.Minute)
			_, _, refused := s.followLink(t, token, alice)
			return refused
		}, outcome{303, "link_expired"}, false},
		{"expired signed link", func(t *testing.T, s *stack) *http.Response {
			token := s.signedLink(s.request("r"), time.Minute, linkKey)
			s.clock.Advance(time.Minute)
			_, _, refused := s.followLink(t, token, alice)
			return refused
		}, outcome{303, "link_expired"}, false},
		{"tampered link", func(t *testing.T, s *stack) *http.Response {
			token := s.storedLink(t, s.request("r"), time.Minute)
			_, _, refused := s.followLink(t, flip(token), alice)
			return refused
		}, outcome{400, "error"}, false},
		{"tampered signed link", func(t *testing.T, s *stack) *http.Response {
			token := s.signedLink(s.request("r"), time.Minute, linkKey)
			other := s.signedLink(s.request("someone-else"), time.Minute, linkKey)
			payload, _, _ := strings.Cut(other, ".")
			_, sig, _ := strings.Cut(token, ".")
			_, _, refused := s.followLink(t, payload+"."+sig, alice)
			return refused
		}, outcome{400, "error"}, false},
		{"link signed with another key", func(t *testing.T, s *stack) *http.Response {
			_, _, refused := s.followLink(t, s.signedLink(s.request("r"), time.Minute, strings.Repeat("k", 40)), alice)
			return refused
		}, outcome{400, "error"}, false},
		{"signed link with a return URL not allowed", func(t *testing.T, s *stack) *http.Response {
			r := s.request("r")
			r.ErrorURL = "https://evil.example/steal"
			_, _, refused := s.followLink(t, s.signedLink(r, time.Minute, linkKey), alice)
			return refused
		}, outcome{400, "error"}, false},
		{"signed link with an open redirect through the allowed origin", func(t *testing.T, s *stack) *http.Response {
			r := s.request("r")
			r.SuccessURL = s.app.URL + "@evil.example/"
			_, _, refused := s.followLink(t, s.signedLink(r, time.Minute, linkKey), alice)
			return refused
		}, outcome{400, "error"}, false},
		{"link for alice completed as carol", func(t *testing.T, s *stack) *http.Response {
			r := s.request("r")
			r.ExpectedAddress = alice
			c, cb, _ := s.followLink(t, s.storedLink(t, r, time.Minute), carol)
			return s.get(t, cb.String(), c)
		}, outcome{303, "account_not_allowed"}, true},
		{"link for a Workspace domain completed by an address in it without Workspace", func(t *testing.T, s *stack) *http.Response {
			r := s.request("r")
			r.ExpectedDomain = "corp.example"
			c, cb, _ := s.followLink(t, s.storedLink(t, r, time.Minute), mallory)
			return s.get(t, cb.String(), c)
		}, outcome{303, "account_not_allowed"}, true},
		{"stranger's callbacks with made-up codes", func(t *testing.T, s *stack) *http.Response {
			var last *http.Response
			for range 5 {
				c, cb := s.begin(t, "/connect?login_hint="+alice)
				last = s.get(t, withQuery(cb, "code", "4/0Amadeup"+newNonceForTest()).String(), c)
			}
			if n := s.snapshot(t).States; n != 0 {
				t.Errorf("a stranger's callbacks left %d oauthStates documents", n)
			}
			return last
		}, outcome{400, "error"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t)
			s.addPeople(t)
			s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
			before := s.snapshot(t)
			revokes := s.revokes()
			resp := tc.attack(t, s)
			// A link made for the attack is the test's own write.
			before.Links = s.snapshot(t).Links
			if tc.want.status == http.StatusSeeOther {
				if back := s.wentBack(t, resp); back.Path != "/failed" || back.Query().Get("reason") != tc.want.reason || back.Query().Get("user") != "" {
					t.Errorf("back to %s, want /failed?outcome=error&reason=%s", back, tc.want.reason)
				}
			} else {
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != tc.want.status || !strings.Contains(string(body), `id="`+tc.want.reason+`"`) || resp.Header.Get("Location") != "" {
					t.Errorf("status %d, want %d with the %s page:\n%s", resp.StatusCode, tc.want.status, tc.want.reason, body)
				}
				if leak := s.seen.foundIn(string(body)); leak != "" {
					t.Errorf("page contains a secret (%s)", leak)
				}
			}
			for i := range before.Links {
				before.Links[i].UsedAt = time.Time{}
			}
			after := s.snapshot(t)
			after.States = before.States
			for _, l := range after.Links {
				if !l.UsedAt.IsZero() {
					t.Errorf("a refused flow used its link: %+v", l)
				}
			}
			after.Links = before.Links
			if !equalState(after, before) {
				t.Errorf("the attack changed the state:\n got %+v\nwant %+v", after, before)
			}
			if got := s.revokes() - revokes; tc.revoked != (got > 0) {
				t.Errorf("%d revocations, want revoked=%v", got, tc.revoked)
			}
		})
	}
}

func TestNoLinkConnectsOnlyWhatTheAllowlistsAdmit(t *testing.T) {
	s := newStack(t)
	s.addPeople(t)
	ctx := context.Background()
	// dana's Workspace domain is allowed: the hd claim admits her.
	s.handler = consent.New(s.withEnv(t, map[string]string{"ALLOWED_ADDRESSES": "", "ALLOWED_DOMAINS": "corp.example"}), s.deps(), s.log)
	s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
	c, cb := s.begin(t, "/connect?login_hint="+dana)
	if status, body := s.finish(t, cb, c); status != http.StatusOK || !strings.Contains(body, `id="connected"`) {
		t.Fatalf("dana of an allowed Workspace domain: status %d:\n%s", status, body)
	}
	if u, err := s.users.Get(ctx, s.key(dana)); err != nil || u.AppRef != "" {
		t.Errorf("dana = %+v, %v; want connected without a reference", u, err)
	}

	// With no allowlist and no open enrollment, /connect refuses to start.
	s.handler = consent.New(s.withEnv(t, map[string]string{"ALLOWED_ADDRESSES": ""}), s.deps(), s.log)
	before := s.snapshot(t)
	resp := s.get(t, s.url+"/connect", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "needs a link") || len(resp.Cookies()) != 0 {
		t.Errorf("/connect with no allowlist: status %d, cookies %v:\n%s", resp.StatusCode, resp.Cookies(), body)
	}
	s.unchanged(t, before)

	// Open enrollment is the explicit switch that admits anyone.
	s.handler = consent.New(s.withEnv(t, map[string]string{"ALLOWED_ADDRESSES": "", "OPEN_ENROLLMENT": "true"}), s.deps(), s.log)
	c, cb = s.begin(t, "/connect?login_hint="+carol)
	if status, _ := s.finish(t, cb, c); status != http.StatusOK {
		t.Errorf("carol with open enrollment: status %d, want 200", status)
	}
}

func TestSameMailboxUnderAnotherReference(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	key := s.key(alice)
	connect := func(r connectlink.Request) *url.URL {
		c, cb, _ := s.followLink(t, s.storedLink(t, r, time.Minute), alice)
		return s.back(t, cb, c)
	}
	if back := connect(s.request("first")); back.Query().Get("outcome") != "connected" {
		t.Fatalf("first connect: %s", back)
	} else {
		s.redeemed(t, back)
	}
	before := s.snapshot(t)
	if back := connect(s.request("second")); back.Query().Get("reason") != "connected_elsewhere" {
		t.Errorf("another reference: back to %s, want reason=connected_elsewhere", back)
	}
	before.Links = s.snapshot(t).Links
	s.unchanged(t, before)

	move := s.request("second")
	move.Move = true
	back := connect(move)
	if back.Query().Get("outcome") != "connected" {
		t.Fatalf("move: back to %s, want connected", back)
	}
	if u, _ := s.users.Get(ctx, key); u.AppRef != "first" {
		t.Errorf("appRef before the move is redeemed = %q, want first", u.AppRef)
	}
	s.redeemed(t, back)
	if u, _ := s.users.Get(ctx, key); u.AppRef != "second" {
		t.Errorf("appRef after the move = %q, want second", u.AppRef)
	}
}

func TestReturnURLChecks(t *testing.T) {
	p := connectlink.ReadPolicy(config.NewReader(config.FromMap(map[string]string{"RETURN_ORIGINS": "https://app.example.com, http://127.0.0.1:9000"})))
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://app.example.com/connected?x=1", true},
		{"https://APP.example.com/done", true},
		{"http://127.0.0.1:9000/done", true},
		{"http://app.example.com/done", false},
		{"https://app.example.com.evil.example/", false},
		{"https://app.example.com@evil.example/", false},
		{"https://evil.example/?https://app.example.com/", false},
		{"//evil.example/", false},
		{"/relative", false},
		{"javascript:alert(1)", false},
		{"https://app.example.com\\@evil.example/", false},
		{"https://app.example.com:444/", false},
		{"https://user:pw@app.example.com/", false},
		{"https://app.example.com/\nSet-Cookie:x", false},
		{"https://app.example.com/" + strings.Repeat("a", 1100), false},
	} {
		if err := p.CheckReturnURL(tc.url); (err == nil) != tc.ok {
			t.Errorf("CheckReturnURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}

func equalState(a, b state) bool { return reflect.DeepEqual(a, b) }

func newNonceForTest() string { return strings.Repeat("z", 20) + time.Now().Format("150405.000000000") }

// confirmPage signs in as email on /disconnect and returns the confirmation
// page's one-time token; nothing may have changed yet.
func (s *stack) confirmPage(t *testing.T, email string) string {
	t.Helper()
	s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
	before := s.snapshot(t)
	cookie, cb := s.begin(t, "/disconnect?login_hint="+email)
	status, body := s.finish(t, cb, cookie)
	if status != http.StatusOK || !strings.Contains(body, `id="confirm"`) || !strings.Contains(body, email) {
		t.Fatalf("disconnect sign-in: status %d, want 200 and the confirmation page:\n%s", status, body)
	}
	after := s.snapshot(t)
	before.States = after.States // the sign-in's state is used up
	if !equalState(after, before) {
		t.Errorf("the confirmation page changed something:\n got %+v\nwant %+v", after, before)
	}
	_, rest, _ := strings.Cut(body, `name="token" value="`)
	token, _, _ := strings.Cut(rest, `"`)
	if token == "" {
		t.Fatalf("no token on the confirmation page:\n%s", body)
	}
	return token
}

// confirm posts the confirmation form with headers as a browser sends them.
func (s *stack) confirm(t *testing.T, token string, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.url+consent.ConfirmPath, strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := s.browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// disconnectAs runs the user's whole disconnect: sign in, confirm.
func (s *stack) disconnectAs(t *testing.T, email string) (int, string) {
	t.Helper()
	return s.confirm(t, s.confirmPage(t, email), map[string]string{"Origin": s.url, "Sec-Fetch-Site": "same-origin"})
}

func TestDisconnectNeedsASameSiteConfirmation(t *testing.T) {
	s := newStack(t)
	s.addPeople(t)
	s.connect(t)
	token := s.confirmPage(t, alice)
	forged := s.confirmPage(t, bob) // bob's own token, which must not reach alice
	payload, sig, _ := strings.Cut(forged, ".")
	alicePayload, _, _ := strings.Cut(token, ".")
	before := s.snapshot(t)
	for _, tc := range []struct {
		name   string
		token  string
		header map[string]string
		status int
	}{
		{"cross-site form post", token, map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, 403},
		{"cross-site without fetch metadata", token, map[string]string{"Origin": "https://evil.example"}, 403},
		{"same-site subdomain", token, map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"no token", "", nil, 400},
		{"another address's signature", alicePayload + "." + sig, nil, 400},
		{"tampered payload", payload[1:] + "." + sig, nil, 400},
	} {
		if status, body := s.confirm(t, tc.token, tc.header); status != tc.status || !strings.Contains(body, `id="error"`) {
			t.Errorf("%s: status %d, want %d and the error page", tc.name, status, tc.status)
		}
	}
	if resp := s.get(t, s.url+consent.ConfirmPath+"?token="+url.QueryEscape(token), nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: status %d, want 405", consent.ConfirmPath, resp.StatusCode)
	}
	s.unchanged(t, before)

	if status, body := s.confirm(t, token, map[string]string{"Origin": s.url, "Sec-Fetch-Site": "same-origin"}); status != http.StatusOK || !strings.Contains(body, `id="disconnected"`) {
		t.Fatalf("confirmed disconnect: status %d:\n%s", status, body)
	}
	before = s.snapshot(t)
	if status, _ := s.confirm(t, token, nil); status != http.StatusBadRequest {
		t.Errorf("replayed confirmation: status %d, want 400", status)
	}
	s.unchanged(t, before)
}

// On its own https origin the state cookie is __Host- (Secure, Path=/, no
// Domain), so no sibling domain can plant one; under a path behind a proxy
// it stays __Secure- and scoped to the callback.
func TestStateCookiePrefix(t *testing.T) {
	s := newStack(t)
	for _, tc := range []struct{ publicURL, name, path string }{
		{"https://consent.example.com", "__Host-consent-state", "/"},
		{"https://example.com/gmail", "__Secure-consent-state", "/gmail" + consent.CallbackPath},
	} {
		h := consent.New(s.withEnv(t, map[string]string{"PUBLIC_URL": tc.publicURL}), s.deps(), s.log)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/connect?login_hint="+alice, nil))
		cookies := rec.Result().Cookies()
		if rec.Code != http.StatusFound || len(cookies) != 1 {
			t.Fatalf("%s: status %d, cookies %v", tc.publicURL, rec.Code, cookies)
		}
		if c := cookies[0]; c.Name != tc.name || c.Path != tc.path || !c.Secure || c.Domain != "" || !c.HttpOnly {
			t.Errorf("%s: cookie %s Path %q Secure %v Domain %q; want %s on %s, Secure, no Domain", tc.publicURL, c.Name, c.Path, c.Secure, c.Domain, tc.name, tc.path)
		}
	}
}

// Revoking ends the whole grant of a Google account, so a refused flow by an
// account that is connected already must leave that connection working.
func TestRefusalKeepsAnExistingConnection(t *testing.T) {
	s := newStack(t)
	s.addPeople(t)
	c, cb, _ := s.followLink(t, s.storedLink(t, s.request("carol-ref"), time.Minute), carol)
	if back := s.back(t, cb, c); back.Query().Get("outcome") != "connected" {
		t.Fatalf("carol's own connect: back to %s", back)
	}
	before := s.snapshot(t)
	revokes := s.revokes()
	r := s.request("alice-ref")
	r.ExpectedAddress = alice
	c, cb, _ = s.followLink(t, s.storedLink(t, r, time.Minute), carol)
	if back := s.back(t, cb, c); back.Query().Get("reason") != "account_not_allowed" {
		t.Errorf("alice's link completed by carol: back to %s", back)
	}
	before.Links = s.snapshot(t).Links
	s.unchanged(t, before)
	if n := s.revokes() - revokes; n != 0 {
		t.Errorf("%d revocations: the refusal withdrew carol's live grant", n)
	}
	versions := s.tokenVersions(carol)
	if len(versions) != 1 {
		t.Fatalf("carol's token versions = %d", len(versions))
	}
	if _, err := s.oauthConfig().TokenSource(context.Background(), &oauth2.Token{RefreshToken: string(versions[0].Data)}).Token(); err != nil {
		t.Errorf("carol's stored token no longer works: %v", err)
	}
}

// TestRefusalKeepsALegacyConnection: an account connected before keys came
// from Google's account id, and not yet moved by scripts/migrate-keys, is
// keyed by its address; a refused flow of that account does not revoke
// the grant its live connection runs on.
func TestRefusalKeepsALegacyConnection(t *testing.T) {
	s := newStack(t)
	s.addPeople(t)
	ctx := context.Background()
	refresh, err := s.sandbox.Connect(carol, s.cfg.OAuth.Scope)
	if err != nil {
		t.Fatal(err)
	}
	s.seen.add(refresh)
	legacyKey := store.Key(carol)
	if err := s.vault.PutRefreshToken(ctx, legacyKey, refresh); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.users.Connect(ctx, store.Connection{Email: carol, AppRef: "carol-ref", HistoryID: 9}); err != nil {
		t.Fatal(err)
	}
	if u, err := s.users.Get(ctx, legacyKey); err != nil || u.Sub != "" {
		t.Fatalf("legacy record = %+v, %v; want one without an account id", u, err)
	}
	if _, err := s.users.Get(ctx, s.key(carol)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("carol has a record under her account id's key (%v): not a legacy account", err)
	}
	before := s.snapshot(t)
	revokes := s.revokes()
	r := s.request("alice-ref")
	r.ExpectedAddress = alice
	c, cb, _ := s.followLink(t, s.storedLink(t, r, time.Minute), carol)
	if back := s.back(t, cb, c); back.Query().Get("reason") != "account_not_allowed" {
		t.Errorf("alice's link completed by carol: back to %s", back)
	}
	before.Links = s.snapshot(t).Links
	s.unchanged(t, before)
	if n := s.revokes() - revokes; n != 0 {
		t.Errorf("%d revocations: the refusal withdrew the legacy connection's live grant", n)
	}
	if _, err := s.oauthConfig().TokenSource(ctx, &oauth2.Token{RefreshToken: refresh}).Token(); err != nil {
		t.Errorf("the legacy connection's token no longer works: %v", err)
	}
}
