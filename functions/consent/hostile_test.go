package consent_test

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gmailwatch/gmailwatch/functions/consent"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/scripts/testenv"
)

// sendRaw writes one request to addr exactly as given (request line, header
// lines, body) and returns the response and its body.
func sendRaw(t *testing.T, addr, method, target string, header []string, body string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	req := method + " " + target + " HTTP/1.1\r\n"
	if !hasHeader(header, "Host") {
		req += "Host: " + addr + "\r\n"
	}
	for _, h := range header {
		req += h + "\r\n"
	}
	if body != "" {
		req += fmt.Sprintf("Content-Length: %d\r\n", len(body))
	}
	go io.WriteString(c, req+"Connection: close\r\n\r\n"+body) // the server may answer before reading it all
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %.80s: %v", method, target, err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(got)
}

func hasHeader(header []string, name string) bool {
	for _, h := range header {
		if strings.HasPrefix(strings.ToLower(h), strings.ToLower(name)+":") {
			return true
		}
	}
	return false
}

// hugeBody streams n zero bytes and counts how many were taken from it.
type hugeBody struct {
	n, sent int64
}

func (b *hugeBody) Read(p []byte) (int, error) {
	left := b.n - atomic.LoadInt64(&b.sent)
	if left <= 0 {
		return 0, io.EOF
	}
	k := int(min(int64(len(p)), left))
	clear(p[:k])
	atomic.AddInt64(&b.sent, int64(k))
	return k, nil
}

// otherKeyCookie re-signs c's payload the way the function signs it, but
// with a key of another deployment.
func otherKeyCookie(c *http.Cookie, key string) *http.Cookie {
	payload, _, _ := strings.Cut(c.Value, ".")
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("gmailwatch consent state\x00" + payload))
	return &http.Cookie{Name: c.Name, Value: payload + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))}
}

// respelled returns c with its signature's last character changed only in
// bits that carry no data.
func respelled(c *http.Cookie) *http.Cookie {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	v := c.Value
	i := strings.IndexByte(alphabet, v[len(v)-1])
	return &http.Cookie{Name: c.Name, Value: v[:len(v)-1] + string(alphabet[i^1])}
}

func cookieHeader(cs ...*http.Cookie) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return "Cookie: " + strings.Join(parts, "; ")
}

// target is u's path and query, as a request line carries them.
func target(u *url.URL) string { return u.RequestURI() }

// Location policies of a hostile case.
const (
	noRedirect = ""
	toAuth     = "the authorization endpoint"
)

// TestHostileRequestsChangeNothing sends hostile requests to the function
// served as deployed, with alice connected: wrong methods and content types,
// path tricks, oversize requests, open-redirect attempts and forged or
// mixed-up state cookies. Each gets its status, redirects (if any) only to
// the configured authorization endpoint with PUBLIC_URL's callback or, from
// the framework's path cleaning, to a path on the same host, and nothing
// changes: Firestore users, Secret Manager tokens, the Gmail watch and the
// output topic are as before. The untouched state and code are then
// redeemed, so the forgeries were made of material that works.
func TestHostileRequestsChangeNothing(t *testing.T) {
	s := newStack(t)
	s.connect(t)
	addr := strings.TrimPrefix(testenv.ServeHTTP(t, s.handler.ServeHTTP), "http://")
	s.auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
	c1, cb1 := s.begin(t, "/connect")
	c2, _ := s.begin(t, "/connect")
	cd, cbd := s.begin(t, "/disconnect")
	if otherKeyCookie(c1, stateKey).Value != c1.Value {
		t.Fatal("otherKeyCookie does not sign as the function does: the other-key case would prove nothing")
	}
	junk := &http.Cookie{Name: c1.Name, Value: "eyJuIjoieCJ9.AAAA"}
	without := func(u *url.URL, k string) string { return target(withQuery(u, k, "")) }
	splice := func(payloadOf, sigOf *http.Cookie) *http.Cookie {
		p, _, _ := strings.Cut(payloadOf.Value, ".")
		_, sig, _ := strings.Cut(sigOf.Value, ".")
		return &http.Cookie{Name: c1.Name, Value: p + "." + sig}
	}
	evilHint := url.QueryEscape("a@evil.example\r\nLocation: https://evil.example/")
	before := s.snapshot(t)

	tests := []struct {
		name           string
		method, target string
		header         []string
		body           string
		want           int
		location       string // noRedirect, toAuth, or the exact same-host path
	}{
		// Methods and content types: only GET, whatever is sent.
		{"POST /connect", "POST", "/connect", []string{"Content-Type: application/x-www-form-urlencoded"}, "login_hint=a%40b.co", 405, noRedirect},
		{"PUT /disconnect", "PUT", "/disconnect", nil, "{}", 405, noRedirect},
		{"DELETE callback", "DELETE", consent.CallbackPath, nil, "", 405, noRedirect},
		{"PATCH callback with a valid state, code and cookie", "PATCH", target(cb1), []string{cookieHeader(c1)}, "", 405, noRedirect},
		{"form-posted callback with a valid cookie", "POST", consent.CallbackPath,
			[]string{cookieHeader(c1), "Content-Type: application/x-www-form-urlencoded"}, cb1.RawQuery, 405, noRedirect},
		{"OPTIONS", "OPTIONS", "/connect", []string{"Origin: https://evil.example", "Access-Control-Request-Method: GET"}, "", 405, noRedirect},
		{"HEAD callback", "HEAD", target(cb1), []string{cookieHeader(c1)}, "", 405, noRedirect},
		{"TRACE", "TRACE", "/connect", nil, "", 405, noRedirect},
		{"CONNECT", "CONNECT", "evil.example:443", []string{"Host: evil.example:443"}, "", 404, noRedirect},
		{"GET with a JSON body naming a login_hint", "GET", "/connect",
			[]string{"Content-Type: application/json"}, `{"login_hint":"https://evil.example/"}`, 302, toAuth},

		// Path tricks: the framework's ServeMux answers unclean paths with a
		// redirect to the clean path on the same host; anything else that is
		// not a route is 404.
		{"double slash", "GET", "//connect", nil, "", 307, "/connect"},
		{"dot segment", "GET", "/./connect", nil, "", 307, "/connect"},
		{"out of the callback", "GET", consent.CallbackPath + "/../connect", nil, "", 307, "/oauth2/connect"},
		{"above the root", "GET", "/oauth2/callback/../../../connect", nil, "", 307, "/connect"},
		{"encoded dots", "GET", "/%2e%2e/connect", nil, "", 404, noRedirect},
		{"protocol-relative", "GET", "///evil.example/connect", nil, "", 307, "/evil.example/connect"},
		{"backslash", "GET", `/\evil.example/connect`, nil, "", 404, noRedirect},
		{"encoded slash to the callback, no cookie", "GET", "/oauth2%2Fcallback?state=x&code=y", nil, "", 400, noRedirect},
		{"trailing slash", "GET", "/connect/", nil, "", 404, noRedirect},
		{"encoded NUL", "GET", "/connect%00", nil, "", 404, noRedirect},
		{"path parameter", "GET", "/connect;jsessionid=1", nil, "", 404, noRedirect},
		{"upper case", "GET", "/CONNECT", nil, "", 404, noRedirect},
		{"very long path", "GET", "/" + strings.Repeat("a", 100<<10), nil, "", 404, noRedirect},
		{"very long query", "GET", "/connect?pad=" + strings.Repeat("a", 500<<10), nil, "", 302, toAuth},
		{"request line over 1 MiB", "GET", "/connect?pad=" + strings.Repeat("a", 1<<20+8<<10), nil, "", 431, noRedirect},
		{"raw NUL in the path", "GET", "/connect\x00", nil, "", 400, noRedirect},
		{"space in the path", "GET", "/con nect", nil, "", 400, noRedirect},
		{"absolute form naming another host", "GET", "http://evil.example/connect", nil, "", 302, toAuth},

		// Open redirects: the Location is always the configured authorization
		// endpoint, asking for PUBLIC_URL's callback with the function's own
		// client, scope and state.
		{"next", "GET", "/connect?next=https://evil.example/", nil, "", 302, toAuth},
		{"OAuth parameters", "GET", "/connect?redirect_uri=https://evil.example/cb&client_id=evil&scope=https://mail.google.com/" +
			"&response_type=token&access_type=online&prompt=none&state=attacker-state&code_challenge=x", nil, "", 302, toAuth},
		{"disconnect with next", "GET", "/disconnect?next=//evil.example&redirect_uri=https://evil.example/", nil, "", 302, toAuth},
		{"login_hint URL", "GET", "/connect?login_hint=https://evil.example", nil, "", 400, noRedirect},
		{"login_hint with a header injection", "GET", "/connect?login_hint=" + evilHint, nil, "", 400, noRedirect},
		{"second login_hint", "GET", "/connect?login_hint=" + alice + "&login_hint=https://evil.example", nil, "", 302, toAuth},
		{"Host", "GET", "/connect", []string{"Host: evil.example"}, "", 302, toAuth},
		{"forwarding headers", "GET", "/disconnect", []string{"X-Forwarded-Host: evil.example", "X-Forwarded-Proto: http",
			"Forwarded: host=evil.example;proto=http", "X-Original-URL: https://evil.example/"}, "", 302, toAuth},
		{"callback with next", "GET", target(withQuery(cbd, "next", "https://evil.example/")), []string{cookieHeader(c1)}, "", 400, noRedirect},

		// State and cookie forgery on the callback.
		{"state without cookie", "GET", target(cb1), nil, "", 400, noRedirect},
		{"cookie without state", "GET", without(cb1, "state"), []string{cookieHeader(c1)}, "", 400, noRedirect},
		{"cookie of another nonce", "GET", target(cb1), []string{cookieHeader(c2)}, "", 400, noRedirect},
		{"cookie signed with another key", "GET", target(cb1), []string{cookieHeader(otherKeyCookie(c1, stateKey+"-other"))}, "", 400, noRedirect},
		{"signature respelled", "GET", target(cb1), []string{cookieHeader(respelled(c1))}, "", 400, noRedirect},
		{"payload of one cookie, signature of another", "GET", target(cbd), []string{cookieHeader(splice(cd, c1))}, "", 400, noRedirect},
		{"two cookies, the valid one first", "GET", target(cb1), []string{cookieHeader(c1, junk)}, "", 400, noRedirect},
		{"two cookies, the valid one second", "GET", target(cb1), []string{cookieHeader(junk, c1)}, "", 400, noRedirect},
		{"the valid cookie twice", "GET", target(cb1), []string{cookieHeader(c1, c1)}, "", 400, noRedirect},
		{"the valid cookie in two headers", "GET", target(cb1), []string{cookieHeader(c1), cookieHeader(c2)}, "", 400, noRedirect},
		{"disconnect cookie on a connect callback", "GET", target(cb1), []string{cookieHeader(cd)}, "", 400, noRedirect},
		{"connect cookie on a disconnect callback", "GET", target(cbd), []string{cookieHeader(c1)}, "", 400, noRedirect},
		{"cookie under the https name", "GET", target(cb1), []string{cookieHeader(&http.Cookie{Name: "__Secure-" + c1.Name, Value: c1.Value})}, "", 400, noRedirect},
		{"state with a trailing space", "GET", target(withQuery(cb1, "state", cb1.Query().Get("state")+" ")), []string{cookieHeader(c1)}, "", 400, noRedirect},
		{"another state first", "GET", consent.CallbackPath + "?state=other&" + cb1.RawQuery, []string{cookieHeader(c1)}, "", 400, noRedirect},
		{"cookie with a NUL", "GET", target(cb1), []string{"Cookie: " + c1.Name + "=" + c1.Value + "\x00"}, "", 400, noRedirect},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := sendRaw(t, addr, tc.method, tc.target, tc.header, tc.body)
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d\n%.300s", resp.StatusCode, tc.want, body)
			}
			s.checkRedirect(t, resp, tc.location)
			// The framework's redirect page names its clean path; the function's pages name nothing sent.
			if (strings.Contains(body, "evil") && resp.StatusCode != http.StatusTemporaryRedirect) || s.seen.foundIn(body) != "" {
				t.Errorf("the answer reflects the request or a secret:\n%.300s", body)
			}
		})
	}

	// Oversize bodies are not read: the answer comes before the client has
	// sent a third of them.
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"POST", "/connect", 405},
		{"GET", consent.CallbackPath + "?" + cb1.RawQuery, 400},
		{"PUT", consent.CallbackPath, 405},
	} {
		t.Run("100 MiB body "+tc.method+" "+strings.SplitN(tc.path, "?", 2)[0], func(t *testing.T) {
			body := &hugeBody{n: 100 << 20}
			req, _ := http.NewRequest(tc.method, "http://"+addr+tc.path, body)
			req.ContentLength = body.n
			req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
			resp, err := s.browser.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.path, err)
			}
			resp.Body.Close()
			if sent := atomic.LoadInt64(&body.sent); resp.StatusCode != tc.want || sent > body.n/3 {
				t.Errorf("status %d after %d MiB sent; want %d before a third of the body", resp.StatusCode, sent>>20, tc.want)
			}
		})
	}
	s.unchanged(t, before)

	// The material of the forgeries was good: the untouched state and code
	// connect alice again.
	resp, body := sendRaw(t, addr, "GET", target(cb1), []string{cookieHeader(c1)}, "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="connected"`) {
		t.Errorf("the genuine callback after the forgeries: status %d, want 200 and the connected page:\n%s", resp.StatusCode, body)
	}
}

// checkRedirect checks a hostile request's Location against the policy and
// that only a redirect to the authorization endpoint set a state cookie.
func (s *stack) checkRedirect(t *testing.T, resp *http.Response, policy string) {
	t.Helper()
	loc := resp.Header.Get("Location")
	var setState bool
	for _, c := range resp.Cookies() {
		setState = setState || c.MaxAge > 0
	}
	switch policy {
	case noRedirect:
		if loc != "" || setState {
			t.Errorf("Location %q, Set-Cookie %q; want no redirect and no state cookie", loc, resp.Header["Set-Cookie"])
		}
	case toAuth:
		u, err := url.Parse(loc)
		if err != nil || u.Scheme+"://"+u.Host+u.Path != s.cfg.OAuth.AuthURL || strings.Contains(loc, "evil") {
			t.Fatalf("Location %q, want the authorization endpoint %s and nothing of the request", loc, s.cfg.OAuth.AuthURL)
		}
		q := u.Query()
		want := map[string]string{"client_id": clientID, "redirect_uri": s.url + consent.CallbackPath, "response_type": "code", "code_challenge_method": "S256"}
		for k, v := range want {
			if q.Get(k) != v {
				t.Errorf("%s = %q, want %q", k, q.Get(k), v)
			}
		}
		if sc := q.Get("scope"); sc != s.cfg.OAuth.Scope+" openid email" && sc != "openid email" {
			t.Errorf("scope = %q, want the configured one", sc)
		}
		if q.Get("state") == "attacker-state" || len(q.Get("state")) < 43 || len(q.Get("code_challenge")) != 43 {
			t.Errorf("state %q, code_challenge %q: want the function's own", q.Get("state"), q.Get("code_challenge"))
		}
		if len(resp.Cookies()) != 1 || !setState {
			t.Errorf("Set-Cookie %q, want one state cookie", resp.Header["Set-Cookie"])
		}
	default:
		if loc != policy || setState {
			t.Errorf("Location %q, Set-Cookie %q; want a same-host redirect to %q and no state cookie", loc, resp.Header["Set-Cookie"], policy)
		}
	}
}
