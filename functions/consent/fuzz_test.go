package consent

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gmailwatch/gmailwatch/scripts/testenv"
	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/logging"
)

// fuzzNow is the fuzz targets' clock: fixed, so seeds stay valid.
var fuzzNow = time.Unix(1_800_000_000, 0)

var fuzzKey = []byte("state-signing-key-for-fuzzing-0123456789")

// fuzzStates are signed by the fuzz targets' seeds: the only states a
// fuzzed cookie may ever carry.
var fuzzStates = []flowState{
	{Nonce: "connect-nonce-0123456789abcdefghijklmnopq", Verifier: "connect-verifier-0123456789abcdefghijklmnopqrstuvw", Flow: flowConnect, Expires: fuzzNow.Add(stateTTL).Unix()},
	{Nonce: "disconnect-nonce-0123456789abcdefghijklmn", Verifier: "disconnect-verifier-0123456789abcdefghijklmnopqrs", Flow: flowDisconnect, Expires: fuzzNow.Add(stateTTL).Unix()},
	{Nonce: "expired-nonce-0123456789abcdefghijklmnopq", Verifier: "expired-verifier-0123456789abcdefghijklmnopqrstuvw", Flow: flowConnect, Expires: fuzzNow.Unix()},
}

// changeUnusedBits returns a base64url value whose last character differs
// from v's only in bits that carry no data (v encodes a 32-byte MAC: its
// last character holds 2 data bits and 4 unused ones).
func changeUnusedBits(v string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, v[len(v)-1])
	return v[:len(v)-1] + string(alphabet[i^1])
}

// FuzzUnseal checks the state cookie's decoder: a value verifies only if it
// is exactly what seal produced for the key, never panics, and is refused
// with one of the fixed errors, which quote nothing of the value.
func FuzzUnseal(f *testing.F) {
	for _, s := range fuzzStates {
		v := seal(fuzzKey, s)
		payload, sig, _ := strings.Cut(v, ".")
		f.Add(v)
		f.Add(payload + "." + changeUnusedBits(sig)) // verified before the decoder was made strict
		f.Add(payload)
		f.Add(payload + "." + sig + "." + sig)
		f.Add(payload + "." + sig + "=")
		f.Add(payload + "=." + sig)
		f.Add(strings.ToUpper(v))
	}
	for _, v := range []string{"", ".", "..", "a.b", "e30.", ".e30", "\x00.\xff", strings.Repeat("A", 4096) + "." + strings.Repeat("A", 43)} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, value string) {
		s, err := unseal([][]byte{fuzzKey}, value, fuzzNow)
		if err != nil {
			if s != (flowState{}) || (err != errBadSignature && err != errExpired) {
				t.Fatalf("unseal(%q) = %+v, %v; want an empty state and a fixed error", value, s, err)
			}
			return
		}
		if seal(fuzzKey, s) != value {
			t.Fatalf("unseal(%q) verified a cookie that seal never produced (state %+v)", value, s)
		}
		if s.Nonce == "" || s.Verifier == "" || !fuzzNow.Before(time.Unix(s.Expires, 0)) {
			t.Fatalf("unseal(%q) accepted an unusable state %+v", value, s)
		}
	})
}

// FuzzSeal checks that any state survives a round trip through the cookie,
// that the cookie is a valid cookie value, and that neither another key nor
// any change of a single character makes it verify.
func FuzzSeal(f *testing.F) {
	for _, s := range fuzzStates {
		f.Add(s.Nonce, s.Verifier, s.Flow, s.Expires)
	}
	f.Add("n", "v", "", int64(-1))
	f.Add(`"}`, "\u2028<script>", "disconnect", int64(1<<62))
	otherKey := []byte("another-deployment's-state-signing-key-000")
	f.Fuzz(func(t *testing.T, nonce, verifier, flow string, expires int64) {
		if nonce == "" || verifier == "" || !utf8.ValidString(nonce) || !utf8.ValidString(verifier) || !utf8.ValidString(flow) {
			t.Skip("seal is only given states of generated ASCII values")
		}
		s := flowState{Nonce: nonce, Verifier: verifier, Flow: flow, Expires: expires}
		v := seal(fuzzKey, s)
		got, err := unseal([][]byte{fuzzKey}, v, fuzzNow)
		switch {
		case fuzzNow.Before(time.Unix(expires, 0)) && (err != nil || got != s):
			t.Fatalf("round trip of %+v: got %+v, %v", s, got, err)
		case !fuzzNow.Before(time.Unix(expires, 0)) && err != errExpired:
			t.Fatalf("expired %+v: got %+v, %v; want %v", s, got, err, errExpired)
		}
		if c := (&http.Cookie{Name: "consent-state", Value: v}).String(); c != "consent-state="+v {
			t.Fatalf("sealed value %q is not a valid cookie value: %q", v, c)
		}
		if _, err := unseal([][]byte{otherKey}, v, fuzzNow); err != errBadSignature {
			t.Fatalf("another key verified %q: %v", v, err)
		}
		for i := range len(v) {
			for _, c := range []byte{'A', 'B', '_', '.'} {
				if v[i] == c {
					continue
				}
				mutated := v[:i] + string(c) + v[i+1:]
				if _, err := unseal([][]byte{fuzzKey}, mutated, fuzzNow); err == nil {
					t.Fatalf("cookie changed at byte %d (%q) still verifies", i, mutated)
				}
			}
		}
	})
}

// tokenCalls records the code verifiers the function sent to the token endpoint.
type tokenCalls struct {
	mu        sync.Mutex
	verifiers map[string]int
}

func (c *tokenCalls) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/token") && req.Body != nil {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		c.mu.Lock()
		c.verifiers[form.Get("code_verifier")]++
		c.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// logTail is the log of one fuzzed request.
type logTail struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logTail) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.buf.String()
	l.buf.Reset()
	return s
}

// FuzzCallback sends fuzzed queries and Cookie headers to the callback of a
// function wired to the Firestore emulator and the sandbox's OAuth provider
// and Secret Manager. Properties: the callback only ever renders a refusal
// (no code can be valid: the sandbox issued none), never redirects, always
// clears the cookie, reflects none of the request's state, code or cookie in
// its page or log, and reaches the token endpoint only with the verifier of
// a state it signed itself, once per state.
func FuzzCallback(f *testing.F) {
	ctx := context.Background()
	w := testenv.NewWorld(f, testenv.Options{Now: func() time.Time { return fuzzNow }})
	w.PutSecret("consent-state-key", string(fuzzKey))
	cfg, err := ReadConfig(config.FromMap(w.Env(map[string]string{"PUBLIC_URL": "http://127.0.0.1:1"})))
	if err != nil {
		f.Fatal(err)
	}
	calls := &tokenCalls{verifiers: map[string]int{}}
	logs := &logTail{}
	h := New(cfg, Deps{Users: w.Store, Vault: w.Vault, Events: w.Publisher, HTTP: &http.Client{Transport: calls, Timeout: 10 * time.Second}},
		logging.New(logs, slog.LevelDebug))

	serve := func(query, cookie string) *httptest.ResponseRecorder {
		r := (&http.Request{Method: http.MethodGet, URL: &url.URL{Path: CallbackPath, RawQuery: query},
			Header: http.Header{"Cookie": {cookie}}}).WithContext(ctx)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	// What the refusal pages say whatever the request (no state; denied;
	// Google's error; a code refused): a value found in them is not a reflection.
	sealed := map[string]bool{}
	static := serve("", "").Body.String()
	for i, q := range []string{"error=access_denied", "error=server_error", "code=4/x"} {
		s := flowState{Nonce: fmt.Sprint("static-nonce-", i), Verifier: fmt.Sprint("static-verifier-", i), Flow: flowConnect, Expires: fuzzNow.Add(stateTTL).Unix()}
		sealed[s.Verifier] = true
		static += serve("state="+s.Nonce+"&"+q, "consent-state="+seal(fuzzKey, s)).Body.String()
	}
	reflected := func(text, value string) bool {
		if len(value) < 16 || strings.Contains(static, value) {
			return false
		}
		return strings.Contains(text, value) || strings.Contains(text, html.EscapeString(value))
	}
	for _, s := range fuzzStates {
		sealed[s.Verifier] = true
		c := seal(fuzzKey, s)
		f.Add("state="+s.Nonce+"&code=4/not-issued", "consent-state="+c)
		f.Add("state="+s.Nonce+"&error=access_denied", "consent-state="+c)
		f.Add("code=4/x&state="+s.Nonce+"&state=other", "consent-state="+c+"; consent-state="+c)
		f.Add("state="+s.Nonce, "consent-state=junk; consent-state="+c)
		f.Add("state="+url.QueryEscape(s.Nonce+" ")+"&code=4/x", "consent-state="+c)
		f.Add("state="+s.Nonce+"&code=4/x", "__Secure-consent-state="+c)
	}
	f.Add("", "")
	f.Add("state=&code=", "consent-state=")
	f.Add("%zz&state=%00&code=\x00", "consent-state=\"quoted\"; =; ;;")
	f.Add("error=server_error&error_description=<script>", "")

	f.Fuzz(func(t *testing.T, query, cookie string) {
		w := serve(query, cookie)
		body, log := w.Body.String(), logs.take()
		switch w.Code {
		case http.StatusBadRequest, http.StatusForbidden, http.StatusBadGateway:
		default:
			t.Fatalf("query %q cookie %q: status %d, want a refusal (400, 403 or 502)\n%s\n%s", query, cookie, w.Code, body, log)
		}
		if loc := w.Header().Get("Location"); loc != "" {
			t.Fatalf("query %q cookie %q: redirect to %q; the callback only renders pages", query, cookie, loc)
		}
		if c := w.Result().Cookies(); len(c) != 1 || c[0].MaxAge >= 0 || c[0].Value != "" {
			t.Fatalf("query %q cookie %q: Set-Cookie %v, want the state cookie cleared", query, cookie, w.Header()["Set-Cookie"])
		}
		q, _ := url.ParseQuery(query)
		values := append(q["state"], q["code"]...)
		for _, c := range (&http.Request{Header: http.Header{"Cookie": {cookie}}}).Cookies() {
			values = append(values, c.Value)
		}
		for _, v := range values {
			if reflected(body, v) || reflected(log, v) {
				t.Fatalf("query %q cookie %q: %q is in the page or log\n%s\n%s", query, cookie, v, body, log)
			}
		}
		calls.mu.Lock()
		defer calls.mu.Unlock()
		for verifier, n := range calls.verifiers {
			if !sealed[verifier] || n > 1 {
				t.Fatalf("query %q cookie %q: the token endpoint got verifier %q %d times; only a signed state's, once", query, cookie, verifier, n)
			}
		}
	})
}

// TestSignatureWithChangedUnusedBitsIsRefused: a lenient base64 decoder
// reads such a signature as the very MAC, so the changed cookie verified.
func TestSignatureWithChangedUnusedBitsIsRefused(t *testing.T) {
	payload, sig, _ := strings.Cut(seal(fuzzKey, fuzzStates[0]), ".")
	changed := changeUnusedBits(sig)
	mac, _ := base64.RawURLEncoding.DecodeString(sig)
	same, err := base64.RawURLEncoding.DecodeString(changed)
	if changed == sig || err != nil || !bytes.Equal(mac, same) {
		t.Fatalf("changeUnusedBits(%q) = %q: want another spelling of the same MAC", sig, changed)
	}
	if s, err := unseal([][]byte{fuzzKey}, payload+"."+changed, fuzzNow); err != errBadSignature {
		t.Errorf("unseal with the signature respelled = %+v, %v; want %v", s, err, errBadSignature)
	}
}
