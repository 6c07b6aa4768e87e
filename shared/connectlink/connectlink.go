// Package connectlink checks and makes connect links: what an application's
// backend asks for when it sends one of its users to connect a mailbox. A
// link is either made by the accounts API (a random token, stored under its
// hash) or signed by the backend itself with a key shared through Secret
// Manager; both carry the same fields and pass the same checks, here:
// the reference is opaque and short, the expected address or Workspace
// domain well formed, and the return URLs on an allowed origin.
package connectlink

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// Limits on what a link may carry.
const (
	MaxAppRef     = 256
	MaxURL        = 1024
	DefaultTTL    = 15 * time.Minute
	MaxTTL        = 24 * time.Hour
	MaxSignedTTL  = 24 * time.Hour
	MinKeyBytes   = 32
	signedContext = "gmailwatch connect link\x00"
)

// Policy is what the deployment allows in a link.
type Policy struct {
	ReturnOrigins []string // scheme://host[:port] the browser may be sent back to
	// Confirm (CONNECT_CONFIRM, default true): a link's connection waits for
	// the application's backend to redeem the one-time result code the
	// browser brings back to successUrl, which every link therefore needs.
	// false restores connections that complete for whoever opens the link.
	Confirm bool
}

// ReadPolicy reads RETURN_ORIGINS (comma-separated origins; https, or http
// on loopback), reporting bad ones to r, and CONNECT_CONFIRM.
func ReadPolicy(r *config.Reader) Policy {
	p := Policy{Confirm: r.Bool("CONNECT_CONFIRM", true)}
	for _, o := range r.List("RETURN_ORIGINS", nil) {
		u, err := url.Parse(o)
		if err != nil || config.CheckURL(o) != nil || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			r.Problem("RETURN_ORIGINS", "%q is not an origin like https://app.example.com", o)
			continue
		}
		p.ReturnOrigins = append(p.ReturnOrigins, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	return p
}

// Request is a link as the application asks for it.
type Request struct {
	AppRef          string `json:"appRef"`
	ExpectedAddress string `json:"expectedAddress,omitempty"`
	ExpectedDomain  string `json:"expectedDomain,omitempty"`
	SuccessURL      string `json:"successUrl,omitempty"`
	ErrorURL        string `json:"errorUrl,omitempty"`
	Move            bool   `json:"move,omitempty"`
}

// Problems lists what is wrong with a request, field by field.
type Problems []string

func (p Problems) Error() string { return "invalid connect link: " + strings.Join(p, "; ") }

// Check validates r against the policy and returns the link it asks for,
// expiring at expires. Every problem is reported at once.
func (p Policy) Check(r Request, expires time.Time) (store.Link, error) {
	var probs Problems
	bad := func(f string, a ...any) { probs = append(probs, fmt.Sprintf(f, a...)) }
	switch {
	case r.AppRef == "":
		bad("appRef is required")
	case len(r.AppRef) > MaxAppRef:
		bad("appRef is longer than %d bytes", MaxAppRef)
	case strings.IndexFunc(r.AppRef, func(c rune) bool { return unicode.IsControl(c) || c == unicode.ReplacementChar }) >= 0:
		bad("appRef must be printable UTF-8")
	}
	addr := strings.ToLower(strings.TrimSpace(r.ExpectedAddress))
	if addr != "" {
		if a, err := mail.ParseAddress(addr); err != nil || a.Address != addr || len(addr) > 254 {
			bad("expectedAddress is not a plain email address")
		}
	}
	domain := strings.ToLower(strings.TrimSpace(r.ExpectedDomain))
	if domain != "" && !domainName.MatchString(domain) {
		bad("expectedDomain is not a domain name like example.com")
	}
	if addr != "" && domain != "" {
		bad("give expectedAddress or expectedDomain, not both")
	}
	if (r.SuccessURL == "") != (r.ErrorURL == "") {
		bad("give both successUrl and errorUrl, or neither")
	}
	if p.Confirm && r.SuccessURL == "" {
		bad("successUrl and errorUrl are required: the browser brings the connection's result code back to successUrl, for the backend to redeem (CONNECT_CONFIRM)")
	}
	for _, f := range []struct{ name, v string }{{"successUrl", r.SuccessURL}, {"errorUrl", r.ErrorURL}} {
		if f.v != "" {
			if err := p.CheckReturnURL(f.v); err != nil {
				bad("%s: %v", f.name, err)
			}
		}
	}
	if len(probs) > 0 {
		return store.Link{}, probs
	}
	return store.Link{AppRef: r.AppRef, Address: addr, Domain: domain, SuccessURL: r.SuccessURL,
		ErrorURL: r.ErrorURL, Move: r.Move, Expires: expires}, nil
}

var domainName = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)

// CheckReturnURL accepts an absolute URL on one of the allowed origins, with
// no credentials, and nothing a browser might read differently from Go
// (backslashes, spaces, control characters).
func (p Policy) CheckReturnURL(raw string) error {
	if len(raw) > MaxURL {
		return fmt.Errorf("longer than %d bytes", MaxURL)
	}
	if strings.ContainsAny(raw, "\\ \t\r\n") || strings.IndexFunc(raw, unicode.IsControl) >= 0 {
		return errors.New("contains a backslash, a space or a control character")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return errors.New("not an absolute URL")
	}
	if u.User != nil {
		return errors.New("must not carry a user name or password")
	}
	origin := strings.ToLower(u.Scheme + "://" + u.Host)
	if !slices.Contains(p.ReturnOrigins, origin) {
		return fmt.Errorf("origin %s is not in RETURN_ORIGINS", clip(origin))
	}
	return nil
}

// Return adds the outcome to a return URL's query, keeping the
// application's own parameters.
func Return(raw string, params url.Values) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw // checked when the link was made; never expected
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// NewToken returns a fresh random link token and its id (a hash, so a stored
// id cannot be turned back into a link).
func NewToken() (token, id string) {
	b := make([]byte, 32)
	rand.Read(b)
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, TokenID(token)
}

// TokenID is the stored id of a link token.
func TokenID(token string) string {
	sum := sha256.Sum256([]byte("token\x00" + token))
	return hex.EncodeToString(sum[:])
}

// signed is the payload of a signed link.
type signed struct {
	Request
	Expires int64  `json:"exp"`   // unix seconds
	Nonce   string `json:"nonce"` // unique per link: what makes it single-use
}

// Sign returns a signed link token for r, valid until expires; the
// application's backend does the same with the shared key (README).
func Sign(key []byte, r Request, expires time.Time, nonce string) string {
	body, _ := json.Marshal(signed{Request: r, Expires: expires.Unix(), Nonce: nonce})
	payload := base64.RawURLEncoding.EncodeToString(body)
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac(key, payload))
}

// Signed errors.
var (
	ErrForged  = errors.New("connect link signature invalid")
	ErrExpired = errors.New("connect link expired")
)

// IsSigned tells a signed link token from a stored one.
func IsSigned(token string) bool { return strings.Contains(token, ".") }

// Verify checks a signed link's signature, by any of keys (the current key
// and, across a rotation, the previous one), and its expiry at now, and
// returns the link it carries, after the same checks as an API request. An
// expired link is returned with ErrExpired.
func (p Policy) Verify(keys [][]byte, token string, now time.Time) (store.Link, error) {
	payload, sig, ok := strings.Cut(token, ".")
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if !ok || err != nil || !signedByAny(keys, got, payload) {
		return store.Link{}, ErrForged
	}
	body, err := base64.RawURLEncoding.DecodeString(payload)
	var s signed
	if err != nil || json.Unmarshal(body, &s) != nil || len(s.Nonce) < 16 || len(s.Nonce) > 128 {
		return store.Link{}, fmt.Errorf("%w: payload unreadable or nonce missing", ErrForged)
	}
	if err := noDuplicateKeys(body); err != nil {
		return store.Link{}, fmt.Errorf("%w: %v", ErrForged, err)
	}
	exp := time.Unix(s.Expires, 0)
	if exp.Sub(now) > MaxSignedTTL {
		return store.Link{}, fmt.Errorf("%w: expiry more than %v ahead", ErrForged, MaxSignedTTL)
	}
	l, err := p.Check(s.Request, exp)
	if err != nil {
		return store.Link{}, err
	}
	sum := sha256.Sum256([]byte("signed\x00" + s.Nonce))
	l.ID, l.Signed = hex.EncodeToString(sum[:]), true
	if !now.Before(exp) {
		return l, ErrExpired // genuine, so its error URL may be used
	}
	return l, nil
}

// noDuplicateKeys refuses a JSON object that names a field twice, at any
// depth: Go keeps the last of them, another reader may keep the first, so
// the backend that signed it and this check could read two different links.
// Go also matches names without regard to case, so "appRef" and "APPREF" are
// the same field.
func noDuplicateKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	var walk func() error
	walk = func() error {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				name := strings.ToLower(k.(string))
				if seen[name] {
					return fmt.Errorf("payload names %q twice", clip(k.(string)))
				}
				seen[name] = true
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
		case json.Delim('['):
			for dec.More() {
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
		}
		return err
	}
	return walk()
}

func signedByAny(keys [][]byte, sig []byte, payload string) bool {
	for _, k := range keys {
		if len(k) >= MinKeyBytes && hmac.Equal(sig, mac(k, payload)) {
			return true
		}
	}
	return false
}

func mac(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signedContext + payload))
	return m.Sum(nil)
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
