package consent

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/store"
)

// stateTTL is how long a started flow may take to come back.
const stateTTL = 10 * time.Minute

// minKeyBytes is the shortest state-signing key accepted.
const minKeyBytes = 32

// The flows a state belongs to.
const (
	flowConnect    = "connect"
	flowDisconnect = "disconnect"
)

// flowState is what the state cookie carries. Only Nonce leaves the browser
// (as the state parameter); the PKCE verifier never appears in a URL.
type flowState struct {
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Flow     string `json:"f"`
	Expires  int64  `json:"e"`           // unix seconds
	Link     string `json:"l,omitempty"` // the connect link's token, if the flow has one
}

// Reasons a callback's state is refused.
var (
	errNoState      = errors.New("state missing")
	errBadSignature = errors.New("state cookie signature invalid")
	errExpired      = errors.New("state expired")
	errMismatch     = errors.New("state does not match the cookie")
	errTwoCookies   = errors.New("more than one state cookie")
)

func newNonce() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// seal returns s signed with key as a cookie value: payload "." HMAC-SHA256.
func seal(key []byte, s flowState) string {
	body, _ := json.Marshal(s)
	payload := base64.RawURLEncoding.EncodeToString(body)
	return payload + "." + base64.RawURLEncoding.EncodeToString(stateMAC(key, payload))
}

// unseal checks a cookie value's signature, by any of keys, and expiry and
// returns its state.
func unseal(keys [][]byte, value string, now time.Time) (flowState, error) {
	payload, sig, ok := strings.Cut(value, ".")
	// Strict: a signature that differs only in the unused bits of its last
	// character is another cookie, and must not verify.
	mac, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if !ok || err != nil || !signedBy(keys, mac, stateMAC, payload) {
		return flowState{}, errBadSignature
	}
	var s flowState
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(body, &s) != nil || s.Nonce == "" || s.Verifier == "" {
		return flowState{}, errBadSignature // signed by us, so never expected
	}
	if !now.Before(time.Unix(s.Expires, 0)) {
		return flowState{}, errExpired
	}
	return s, nil
}

func stateMAC(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("gmailwatch consent state\x00" + payload))
	return m.Sum(nil)
}

// checkState verifies the callback's state against the cookie and that it
// was not used before; the caller records its use (states.use) once the
// code exchange succeeded, so it is accepted at most once, by any instance.
// A browser holds one state cookie; a second one was planted (from a sibling
// domain or another path), so the request is refused rather than a cookie
// chosen.
func (h *Handler) checkState(ctx context.Context, r *http.Request) (flowState, error) {
	param := r.URL.Query().Get("state")
	cookies := r.CookiesNamed(h.cookie.Name)
	if len(cookies) > 1 {
		return flowState{}, errTwoCookies
	}
	if param == "" || len(cookies) == 0 || cookies[0].Value == "" {
		return flowState{}, errNoState
	}
	c := cookies[0]
	keys, err := h.stateKeys.Get(ctx)
	if err != nil {
		return flowState{}, err
	}
	s, err := unseal(keys, c.Value, h.now())
	if err != nil {
		return flowState{}, err
	}
	if !hmac.Equal([]byte(param), []byte(s.Nonce)) {
		return flowState{}, errMismatch
	}
	if err := h.users.StateUnused(ctx, s.Nonce); err != nil {
		return flowState{}, err
	}
	return s, nil
}

// keyer returns the user-key hash, over every key of the secret.
func (h *Handler) keyer(ctx context.Context) (store.Keyer, error) {
	keys, err := h.userKeys.Get(ctx)
	if err != nil {
		return store.Keyer{}, err
	}
	return store.NewKeyer(keys...)
}

// signedBy reports whether sig is the MAC of payload under any of keys.
func signedBy(keys [][]byte, sig []byte, mac func(key []byte, payload string) []byte, payload string) bool {
	for _, k := range keys {
		if hmac.Equal(sig, mac(k, payload)) {
			return true
		}
	}
	return false
}
