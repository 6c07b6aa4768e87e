package googleauth_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
)

const (
	clientID     = "sandbox-client.apps.googleusercontent.com"
	clientSecret = "GOCSPX-sandbox/secret+1"
	otherClient  = "other-client.apps.googleusercontent.com"
	callback     = "http://127.0.0.1:9/oauth2/callback"
	gmailScope   = "https://www.googleapis.com/auth/gmail.metadata"
	emailScope   = "https://www.googleapis.com/auth/userinfo.email"
	alice        = "alice@example.com"
	bob          = "bob@example.com"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sandbox is a provider served on a loopback port, with a fake clock and a
// browser-like client that does not follow redirects (the callback is never
// contacted).
type sandbox struct {
	srv     *googleauth.Server
	url     string
	clock   *clock
	browser *http.Client
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	srv := googleauth.New(googleauth.Options{
		Clients: map[string]googleauth.Client{
			clientID:    {Secret: clientSecret, RedirectURIs: []string{callback}},
			otherClient: {Secret: "other-secret", RedirectURIs: []string{callback}},
		},
		Now: c.Now,
	})
	srv.AddAccount("Alice@Example.com")
	srv.AddAccount(bob)
	mux := http.NewServeMux()
	srv.Register(mux)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	browser := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &sandbox{srv: srv, url: ts.URL, clock: c, browser: browser}
}

func (sb *sandbox) config(style oauth2.AuthStyle, scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		Endpoint:     oauth2.Endpoint{AuthURL: sb.url + "/o/oauth2/v2/auth", TokenURL: sb.url + "/token", AuthStyle: style},
		RedirectURL:  callback,
		Scopes:       scopes,
	}
}

// do sends a request as a browser would and returns the response and body.
func (sb *sandbox) do(t *testing.T, method, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := sb.browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

var requestField = regexp.MustCompile(`name="request" value="([^"]+)"`)

// page opens the consent page for authURL and returns its form id.
func (sb *sandbox) page(t *testing.T, authURL string) (id, html string) {
	t.Helper()
	resp, body := sb.do(t, "GET", authURL, nil)
	m := requestField.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("GET consent page: %d, no form\n%s", resp.StatusCode, body)
	}
	return m[1], body
}

// submit posts the consent form and returns the status and redirect query.
func (sb *sandbox) submit(t *testing.T, form url.Values) (int, url.Values, string) {
	t.Helper()
	resp, body := sb.do(t, "POST", sb.url+"/o/oauth2/v2/auth/approve", form)
	return resp.StatusCode, callbackQuery(t, resp), body
}

// callbackQuery returns the query of a redirect to the callback, or nil when
// the response is no redirect.
func callbackQuery(t *testing.T, resp *http.Response) url.Values {
	t.Helper()
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil
	}
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, callback+"?") {
		t.Fatalf("redirect %d to %q, want 303 to %s", resp.StatusCode, loc, callback)
	}
	u, _ := url.Parse(loc)
	return u.Query()
}

// approve runs the consent page for authURL, allowing as account with the
// optional scopes checked, and returns the callback query.
func (sb *sandbox) approve(t *testing.T, authURL, account string, checked ...string) url.Values {
	t.Helper()
	id, _ := sb.page(t, authURL)
	status, q, body := sb.submit(t, url.Values{"request": {id}, "account": {account}, "scope": checked, "action": {"allow"}})
	if status != http.StatusSeeOther || q.Get("code") == "" {
		t.Fatalf("allow: %d %v\n%s", status, q, body)
	}
	return q
}

// autoCode returns a fresh code for alice through auto-approve.
func (sb *sandbox) autoCode(t *testing.T, cfg *oauth2.Config, opts ...oauth2.AuthCodeOption) string {
	t.Helper()
	sb.srv.SetBehavior(googleauth.Behavior{AutoApprove: true})
	defer sb.srv.SetBehavior(googleauth.Behavior{})
	opts = append(opts, oauth2.SetAuthURLParam("login_hint", alice))
	resp, body := sb.do(t, "GET", cfg.AuthCodeURL("st", opts...), nil)
	q := callbackQuery(t, resp)
	if q.Get("code") == "" {
		t.Fatalf("auto-approve: %d %v\n%s", resp.StatusCode, q, body)
	}
	return q.Get("code")
}

// postToken posts form to the token endpoint with the client secret in the
// body and returns the status and JSON answer.
func (sb *sandbox) postToken(t *testing.T, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, body := sb.do(t, "POST", sb.url+path, form)
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("POST %s: %d, body %q is not JSON", path, resp.StatusCode, body)
	}
	return resp.StatusCode, out
}

// retrieveError returns the status and OAuth error code of an x/oauth2 error.
func retrieveError(err error) (int, string) {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return 0, ""
	}
	return re.Response.StatusCode, re.ErrorCode
}

// verifyIDToken checks the JWT's RS256 signature against the served JWK
// set and returns its claims.
func (sb *sandbox) verifyIDToken(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token has %d parts", len(parts))
	}
	var header struct{ Alg, Kid string }
	var set struct{ Keys []struct{ Kid, N, E string } }
	var claims map[string]any
	decode := func(s string, v any) {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || json.Unmarshal(b, v) != nil {
			t.Fatalf("id_token part %q does not decode", s)
		}
	}
	decode(parts[0], &header)
	decode(parts[1], &claims)
	_, certs := sb.do(t, "GET", sb.url+"/oauth2/v3/certs", nil)
	if err := json.Unmarshal([]byte(certs), &set); err != nil || len(set.Keys) != 1 || set.Keys[0].Kid != header.Kid || header.Alg != "RS256" {
		t.Fatalf("header %+v, certs %s", header, certs)
	}
	n, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].N)
	e, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].E)
	key := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig); err != nil {
		t.Fatalf("id_token signature: %v", err)
	}
	return claims
}

func ctx() context.Context { return context.Background() }
