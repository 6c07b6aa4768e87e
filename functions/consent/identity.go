package consent

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// identity is who signed in, from the ID token: Google's stable account id,
// the verified address, and the Workspace domain (hd), empty for accounts
// outside Workspace.
type identity struct {
	Sub   string
	Email string
	HD    string
}

// verifiedIdentity returns the identity in an ID token that came straight
// from Google's token endpoint over TLS, which OpenID Connect Core 3.1.3.7
// accepts in place of checking the signature; the claims are checked.
func verifiedIdentity(idToken, clientID string, now time.Time) (identity, error) {
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		return identity{}, errors.New("id token missing or malformed")
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		Iss           string          `json:"iss"`
		Aud           string          `json:"aud"`
		Exp           int64           `json:"exp"`
		Sub           string          `json:"sub"`
		Email         string          `json:"email"`
		EmailVerified json.RawMessage `json:"email_verified"`
		HD            string          `json:"hd"`
	}
	if err != nil || json.Unmarshal(body, &c) != nil {
		return identity{}, errors.New("id token claims unreadable")
	}
	switch {
	case c.Iss != "https://accounts.google.com" && c.Iss != "accounts.google.com":
		return identity{}, fmt.Errorf("id token issuer %q is not Google", clip(c.Iss))
	case c.Aud != clientID:
		return identity{}, errors.New("id token is for another client")
	case !now.Before(time.Unix(c.Exp, 0)):
		return identity{}, errors.New("id token expired")
	case c.Sub == "" || len(c.Sub) > 255:
		return identity{}, errors.New("id token has no subject")
	case c.Email == "":
		return identity{}, errors.New("id token has no email")
	case string(c.EmailVerified) != "true" && string(c.EmailVerified) != `"true"`:
		return identity{}, errors.New("id token email not verified")
	}
	return identity{Sub: c.Sub, Email: strings.ToLower(c.Email), HD: strings.ToLower(c.HD)}, nil
}
