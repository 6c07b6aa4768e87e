package consent

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUnseal(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	now := time.Unix(1_800_000_000, 0)
	good := flowState{Nonce: "n0nce", Verifier: "v3rifier", Flow: flowConnect, Expires: now.Add(time.Minute).Unix()}
	sealed := seal(key, good)
	payload, sig, _ := strings.Cut(sealed, ".")
	signedJunk := func(body string) string {
		p := base64.RawURLEncoding.EncodeToString([]byte(body))
		return p + "." + base64.RawURLEncoding.EncodeToString(stateMAC(key, p))
	}
	tests := []struct {
		name    string
		value   string
		key     []byte
		want    flowState
		wantErr error
	}{
		{"valid", sealed, key, good, nil},
		{"other key", sealed, []byte(strings.Repeat("x", 32)), flowState{}, errBadSignature},
		{"no signature", payload, key, flowState{}, errBadSignature},
		{"empty", "", key, flowState{}, errBadSignature},
		{"signature not base64", payload + ".!!", key, flowState{}, errBadSignature},
		{"signature of other payload", base64.RawURLEncoding.EncodeToString([]byte(`{"n":"x"}`)) + "." + sig, key, flowState{}, errBadSignature},
		{"signed but not JSON", signedJunk("nope"), key, flowState{}, errBadSignature},
		{"signed but no verifier", signedJunk(`{"n":"a","f":"connect","e":9999999999}`), key, flowState{}, errBadSignature},
		{"expired", seal(key, flowState{Nonce: "n", Verifier: "v", Expires: now.Unix()}), key, flowState{}, errExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := unseal([][]byte{tc.key}, tc.value, now)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("unseal(%q) = %+v, %v; want %+v, %v", tc.value, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestVerifiedIdentity(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	token := func(claims map[string]any) string {
		body, _ := json.Marshal(claims)
		return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(body) + ".c2ln"
	}
	valid := func() map[string]any {
		return map[string]any{"iss": "https://accounts.google.com", "aud": "client", "exp": now.Unix() + 60,
			"sub": "110248495921238986420", "email": "Alice@Example.com", "email_verified": true}
	}
	with := func(k string, v any) string {
		c := valid()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return token(c)
	}
	tests := []struct {
		name, token, want string
		wantErr           string
	}{
		{"valid", token(valid()), "alice@example.com", ""},
		{"issuer without scheme", with("iss", "accounts.google.com"), "alice@example.com", ""},
		{"verified as string", with("email_verified", "true"), "alice@example.com", ""},
		{"missing", "", "", "malformed"},
		{"two parts", "a.b", "", "malformed"},
		{"claims not JSON", "a.bm9wZQ.c", "", "unreadable"},
		{"other issuer", with("iss", "https://evil.example"), "", "issuer"},
		{"other audience", with("aud", "someone-else"), "", "another client"},
		{"audience list", with("aud", []string{"client"}), "", "unreadable"},
		{"expired", with("exp", now.Unix()), "", "expired"},
		{"no email", with("email", nil), "", "no email"},
		{"unverified", with("email_verified", false), "", "not verified"},
		{"no subject", with("sub", nil), "", "no subject"},
		{"hosted domain lower-cased", with("hd", "Example.COM"), "alice@example.com|example.com", ""},
		{"verification missing", with("email_verified", nil), "", "not verified"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := verifiedIdentity(tc.token, "client", now)
			got := id.Email
			if id.HD != "" {
				got += "|" + id.HD
			}
			if err == nil && id.Sub != "110248495921238986420" {
				t.Errorf("sub = %q", id.Sub)
			}
			if got != tc.want || (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("verifiedIdentity = %q, %v; want %q, error containing %q", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
