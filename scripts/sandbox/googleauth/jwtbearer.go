package googleauth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Grant types of the JWT-bearer assertion flow (RFC 7523): the registered
// URN, and the older pair Google still accepts (grant_type=assertion with an
// assertion_type), which google.golang.org/api/impersonate sends.
const (
	jwtBearerGrant     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	legacyAssertion    = "assertion"
	legacyJWTAssertion = "http://oauth.net/grant_type/jwt/1.0/bearer"
	tokenAudience      = "https://oauth2.googleapis.com/token"
	maxAssertionLife   = time.Hour
	clockSkew          = 5 * time.Minute
)

// Delegation is what the JWT-bearer grant asks of the rest of the sandbox.
type Delegation struct {
	// Verify checks a JWT's signature and returns the signing service
	// account's email, its client id and the JWT's claims.
	Verify func(jwt string) (serviceAccount, clientID string, payload []byte, err error)
	// Authorize returns "" when clientID may act for subject with scopes,
	// else the OAuth error code and description to answer with.
	Authorize func(clientID, subject string, scopes []string) (code, description string)
}

// SetDelegation enables the JWT-bearer grant.
func (s *Server) SetDelegation(d Delegation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delegation = &d
}

func isJWTBearer(form url.Values) bool {
	gt := form.Get("grant_type")
	return gt == jwtBearerGrant || (gt == legacyAssertion && form.Get("assertion_type") == legacyJWTAssertion)
}

// jwtBearer issues an access token (never a refresh token) for a service
// account's signed assertion: for the account itself, or with a sub claim
// for a user of a Workspace domain that delegated the scopes to the
// account's client id. It checks what Google's token endpoint does: the
// signature, iss is the signer, aud is the token endpoint, a lifetime of
// at most an hour that has not ended, and a scope; s.mu must be held.
func (s *Server) jwtBearer(form url.Values) (*tokenResponse, *oauthError) {
	if s.delegation == nil {
		return nil, &oauthError{http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: " + form.Get("grant_type")}
	}
	assertion := form.Get("assertion")
	if assertion == "" {
		return nil, invalidRequest("Missing required parameter: assertion")
	}
	sa, clientID, payload, err := s.delegation.Verify(assertion)
	if err != nil {
		return nil, invalidGrant("Invalid JWT Signature.")
	}
	var c struct {
		Iss, Sub, Scope string
		Aud             json.RawMessage
		Iat, Exp        int64
	}
	if json.Unmarshal(payload, &c) != nil {
		return nil, invalidGrant("Invalid JWT: the claims are not a JSON object.")
	}
	var aud string
	_ = json.Unmarshal(c.Aud, &aud)
	now := s.now()
	iat, exp := time.Unix(c.Iat, 0), time.Unix(c.Exp, 0)
	switch {
	case !strings.EqualFold(c.Iss, sa):
		return nil, invalidGrant("Invalid JWT: iss is not the signing service account.")
	case aud != tokenAudience:
		return nil, invalidGrant("Invalid JWT: audience must be " + tokenAudience + ".")
	case c.Iat == 0 || c.Exp == 0 || exp.Sub(iat) > maxAssertionLife || !now.Before(exp) || iat.After(now.Add(clockSkew)):
		return nil, invalidGrant("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
	case strings.TrimSpace(c.Scope) == "":
		return nil, &oauthError{http.StatusBadRequest, "invalid_scope", "Empty or missing scope not allowed."}
	}
	scopes := canonicalScopes(strings.Fields(c.Scope))
	for _, sc := range scopes {
		if !knownScope(sc) {
			return nil, &oauthError{http.StatusBadRequest, "invalid_scope", "Invalid OAuth scope or ID token audience provided."}
		}
	}
	email := strings.ToLower(sa)
	if c.Sub != "" {
		if code, desc := s.delegation.Authorize(clientID, c.Sub, scopes); code != "" {
			status := http.StatusBadRequest
			if code == "unauthorized_client" {
				status = http.StatusUnauthorized
			}
			return nil, &oauthError{status, code, desc}
		}
		email = strings.ToLower(c.Sub)
	}
	g := &grant{clientID: clientID, email: email, scopes: scopes}
	return s.issue(g, scopes, ""), nil
}

// RevokeClient ends every access token issued to clientID, as when the
// tokens of a withdrawn delegation have run out.
func (s *Server) RevokeClient(clientID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.access {
		if a.grant.clientID == clientID {
			a.grant.revoked = true
		}
	}
}
