package consent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/functions/consent"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/secrets"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

const (
	clientID      = testenv.ClientID
	clientSecret  = testenv.ClientSecret
	stateKey      = "state-signing-key-for-tests-0123456789abcdef"
	linkKey       = "connect-link-key-for-tests-0123456789abcdef"
	userKeySecret = "user-key-secret-for-tests-0123456789abcdef"
	alice         = "alice@example.com"
	bob           = "bob@example.com"      // may sign in, has no mailbox connected
	carol         = "carol@example.com"    // has a mailbox, on no allowlist
	dana          = "dana@corp.example"    // a Workspace account of corp.example
	mallory       = "mallory@corp.example" // an address in corp.example, but no Workspace account
	eventsTopic   = "events"
)

var people = []string{alice, bob, carol, dana, mallory}

// stack is the consent function on a loopback server, wired to one test's
// testenv.World (the emulators and the sandbox's OAuth provider, Gmail and
// Secret Manager), with a settable clock. Everything secret that crosses
// the wire is remembered, and when the test ends its logs are checked for it.
type stack struct {
	*testenv.World
	project    string
	cfg        consent.Config
	url        string // the function's PUBLIC_URL
	sandbox    *sandbox.Sandbox
	auth       *googleauth.Server
	gmail      *gmailapi.Server
	secrets    *secrets.Server
	users      *store.Store
	vault      *vault.Vault
	publisher  *events.Publisher
	httpClient *http.Client
	clock      *clock
	log        *slog.Logger
	logs       *testenv.LogBuffer
	handler    *consent.Handler
	seen       *secretsSeen
	browser    *http.Client // does not follow redirects; cookies are handled by the tests
	app        *app         // the application the browser returns to
	keys       store.Keyer  // the function's user keys
	api        backendAPI   // the accounts API beside the function, once a test started it
	binding    *http.Cookie // the browser's link-binding cookie, sent to /connect like a browser would; nil: a new browser
}

func newStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{clock: &clock{}, seen: &secretsSeen{}}
	s.seen.add(clientSecret, stateKey, linkKey, userKeySecret)

	// The function's server comes first: its URL is the registered redirect URI.
	fn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }))
	t.Cleanup(fn.Close)
	s.url = fn.URL
	s.app = newApp(t)

	s.World = testenv.NewWorld(t, testenv.Options{Now: s.clock.Now,
		Sandbox: sandbox.Options{RedirectURIs: []string{s.url + consent.CallbackPath}}})
	s.project, s.users, s.vault, s.publisher = s.Project, s.Store, s.Vault, s.Publisher
	s.sandbox, s.auth, s.gmail, s.secrets = s.Sandbox, s.Sandbox.Auth, s.Sandbox.Gmail, s.Sandbox.Secrets
	if err := s.sandbox.AddMailbox(alice); err != nil {
		t.Fatal(err)
	}
	s.PutSecret("consent-state-key", stateKey)
	s.PutSecret("connect-link-key", linkKey)
	s.PutSecret("user-key-secret", userKeySecret)
	s.keys, _ = store.NewKeyer([]byte(userKeySecret))

	var err error
	s.cfg, err = consent.ReadConfig(config.FromMap(s.env()))
	if err != nil {
		t.Fatalf("ReadConfig: %v", err)
	}
	s.httpClient = &http.Client{Transport: &recorder{seen: s.seen}, Timeout: 20 * time.Second}
	s.handler = consent.New(s.cfg, s.deps(), testenvLogger(t, s))
	s.browser = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return s
}

func (s *stack) deps() consent.Deps {
	return consent.Deps{Users: s.users, Vault: s.vault, Events: s.publisher, HTTP: s.httpClient}
}

// withEnv returns the function's settings with some changed ("" unsets).
func (s *stack) withEnv(t *testing.T, changes map[string]string) consent.Config {
	t.Helper()
	env := s.env()
	for k, v := range changes {
		env[k] = v
	}
	cfg, err := consent.ReadConfig(config.FromMap(env))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// revokes counts the function's calls to Google's revoke endpoint.
func (s *stack) revokes() int { return int(s.seen.revokes.Load()) }

// env is the function's environment as Terraform and local runs set it,
// with the sandbox's endpoints.
func (s *stack) env() map[string]string {
	// RECONCILE_AFTER other than its default, to tell it from a fixed delay.
	return s.Env(map[string]string{"PUBLIC_URL": s.url, "ALLOWED_ADDRESSES": alice, "RETURN_ORIGINS": s.app.URL, "RECONCILE_AFTER": "37m"})
}

// testenvLogger returns the function's logger; when the test ends, nothing
// secret seen on the wire may be in what it logged.
func testenvLogger(t *testing.T, s *stack) *slog.Logger {
	log, buf := s.Log, s.Logs
	s.log, s.logs = log, buf
	t.Cleanup(func() {
		if leak := s.seen.foundIn(buf.String()); leak != "" {
			t.Errorf("the logs contain a secret (%s)", leak)
		}
	})
	return log
}

// putVersion adds value as the latest version of secret id.
func (s *stack) putVersion(t *testing.T, id, value string) {
	t.Helper()
	s.PutSecret(id, value)
}

// oauthConfig is the OAuth client as a test holding its secret sees it.
func (s *stack) oauthConfig() *oauth2.Config {
	return &oauth2.Config{ClientID: clientID, ClientSecret: clientSecret,
		Endpoint: oauth2.Endpoint{TokenURL: s.sandbox.URL + "/token", AuthStyle: oauth2.AuthStyleInParams}}
}

// tokenVersions returns the versions of a user's refresh-token secret.
func (s *stack) tokenVersions(email string) []secrets.Version {
	v, _ := s.secrets.Secret("projects/" + s.project + "/secrets/" + vault.RefreshPrefix + s.key(email))
	return v
}

// published returns the events received, once none arrived for wait.
func (s *stack) published(wait time.Duration) []events.Event { return s.Events.Quiet(wait) }

// awaitEvents waits until n events arrived and returns them.
func (s *stack) awaitEvents(t *testing.T, n int) []events.Event {
	t.Helper()
	got := s.Events.Await(n)
	if len(got) != n {
		t.Fatalf("got %d events, want %d: %+v", len(got), n, got)
	}
	return got
}

// begin opens path on the function (a browser following the redirect) and
// lets the sandbox answer with its current behavior, up to the redirect to
// the callback. It returns the state cookie and the callback URL, uncalled.
func (s *stack) begin(t *testing.T, path string) (*http.Cookie, *url.URL) {
	t.Helper()
	resp := s.get(t, s.url+path, nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET %s: status %d, want 302", path, resp.StatusCode)
	}
	var cookies []*http.Cookie
	for _, c := range resp.Cookies() {
		if !strings.HasSuffix(c.Name, "consent-browser") {
			cookies = append(cookies, c)
		}
	}
	if len(cookies) != 1 {
		t.Fatalf("GET %s set %d cookies, want 1", path, len(cookies))
	}
	s.seen.add(cookies[0].Value)
	auth := s.get(t, resp.Header.Get("Location"), nil)
	if auth.StatusCode != http.StatusSeeOther {
		body, _ := io.ReadAll(auth.Body)
		t.Fatalf("authorize: status %d, want 303 (is the sandbox set to AutoApprove?): %s", auth.StatusCode, body)
	}
	cb, err := url.Parse(auth.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(cb.String(), s.url+consent.CallbackPath) {
		t.Fatalf("authorize redirected to %q, not the callback", auth.Header.Get("Location"))
	}
	s.seen.add(cb.Query().Get("code"), cb.Query().Get("state"))
	return cookies[0], cb
}

// finish calls the callback with cookie (nil: none) and returns the status
// and page. No page may contain anything secret, and the cookie is cleared.
func (s *stack) finish(t *testing.T, cb *url.URL, cookie *http.Cookie) (int, string) {
	t.Helper()
	resp := s.get(t, cb.String(), cookie)
	body, _ := io.ReadAll(resp.Body)
	if leak := s.seen.foundIn(string(body)); leak != "" {
		t.Errorf("callback page contains a secret (%s)", leak)
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		t.Errorf("callback redirects to %q; it must only render a page", loc)
	}
	cleared := false
	for _, c := range resp.Cookies() {
		cleared = cleared || (c.MaxAge < 0 && c.Value == "")
	}
	if !cleared {
		t.Errorf("callback did not clear the state cookie: %v", resp.Header["Set-Cookie"])
	}
	return resp.StatusCode, string(body)
}

func (s *stack) get(t *testing.T, u string, cookie *http.Cookie) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	if s.binding != nil && strings.HasPrefix(u, s.url+"/connect") {
		req.AddCookie(s.binding)
	}
	resp, err := s.browser.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	for _, c := range resp.Cookies() {
		if strings.HasSuffix(c.Name, "consent-browser") {
			s.binding = c
			s.seen.add(c.Value)
		}
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// connect runs the whole connect flow for alice with an approving sandbox.
func (s *stack) connect(t *testing.T) string {
	t.Helper()
	s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
	c, cb := s.begin(t, "/connect?login_hint="+alice)
	status, body := s.finish(t, cb, c)
	if status != http.StatusOK || !strings.Contains(body, `id="connected"`) {
		t.Fatalf("connect: status %d, want 200 and the connected page:\n%s", status, body)
	}
	versions := s.tokenVersions(alice)
	if len(versions) > 0 {
		s.seen.add(string(versions[len(versions)-1].Data))
	}
	return body
}

// key is the user key the function gives email's Google account.
func (s *stack) key(email string) string { return s.keys.Key(googleauth.Subject(email)) }

// addPeople adds the accounts beyond alice: bob without a mailbox, carol
// and mallory with one, dana of a Workspace domain.
func (s *stack) addPeople(t *testing.T) {
	t.Helper()
	for _, who := range []string{carol, mallory} {
		if err := s.sandbox.AddMailbox(who); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.gmail.AddMailbox(dana); err != nil {
		t.Fatal(err)
	}
	s.auth.AddWorkspaceAccount(dana, "corp.example")
	s.auth.AddAccount(bob)
}

// state is what a refused callback must leave as it was.
type state struct {
	Users   []store.User
	Tokens  map[string][]secrets.Version
	Watches map[string]gmailapi.WatchState
	Events  int
	States  int // oauthStates documents
	Links   []store.Link
}

func (s *stack) snapshot(t *testing.T) state {
	t.Helper()
	ctx := context.Background()
	users, err := s.users.List(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	st := state{Users: users, Tokens: map[string][]secrets.Version{}, Watches: map[string]gmailapi.WatchState{}}
	for _, who := range people {
		st.Tokens[who] = s.tokenVersions(who)
	}
	for _, mb := range s.gmail.Mailboxes() {
		w, err := s.gmail.Watch(mb)
		if err != nil {
			t.Fatal(err)
		}
		w.Notifications = gmailapi.PushStats{}
		st.Watches[mb] = w
	}
	states, err := s.Firestore.Collection("oauthStates").Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	st.States = len(states)
	links, err := s.Firestore.Collection("connectLinks").Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		var v store.Link
		l.DataTo(&v)
		v.Browser = "" // opening a link binds it, whatever follows: links_test checks the binding itself
		st.Links = append(st.Links, v)
	}
	st.Events = len(s.published(time.Second))
	return st
}

// unchanged checks that nothing changed, apart from used states: a flow
// whose code exchange succeeded uses up its state, whatever follows.
func (s *stack) unchanged(t *testing.T, before state) {
	t.Helper()
	after := s.snapshot(t)
	after.States = before.States
	if !reflect.DeepEqual(after, before) {
		t.Errorf("a refused request changed the state:\n got %+v\nwant %+v", after, before)
	}
}

// secretsSeen is every secret value observed: tokens, codes, verifiers,
// states and cookies.
type secretsSeen struct {
	mu      sync.Mutex
	values  []string
	revokes atomic.Int32
}

func (s *secretsSeen) add(vs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vs {
		if len(v) >= 8 {
			s.values = append(s.values, v)
		}
	}
}

func (s *secretsSeen) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.values)
}

// foundIn returns a description of the first secret in text, or "".
func (s *secretsSeen) foundIn(text string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.values {
		if strings.Contains(text, v) {
			return v[:4] + "…"
		}
	}
	return ""
}

// recorder is the function's transport: it remembers the secrets the
// function sends to and receives from Google.
type recorder struct{ seen *secretsSeen }

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/revoke") {
		r.seen.revokes.Add(1)
	}
	if tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
		r.seen.add(tok)
	}
	if req.Body != nil {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		if form, err := url.ParseQuery(string(body)); err == nil {
			for _, k := range []string{"code", "code_verifier", "refresh_token", "token", "client_secret"} {
				r.seen.add(form.Get(k))
			}
		}
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return resp, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	var tok struct {
		Access  string `json:"access_token"`
		Refresh string `json:"refresh_token"`
		ID      string `json:"id_token"`
	}
	if json.Unmarshal(body, &tok) == nil {
		r.seen.add(tok.Access, tok.Refresh, tok.ID)
	}
	return resp, nil
}

// clock is the real time moved forward by Advance.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}
