package googleauth

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
	IDToken      string `json:"id_token,omitempty"`
}

// oauthError is an RFC 6749 error response.
type oauthError struct {
	status int
	Code   string `json:"error"`
	Desc   string `json:"error_description,omitempty"`
}

func invalidGrant(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_grant", desc}
}

func invalidRequest(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_request", desc}
}

// token handles POST /token for the authorization_code and refresh_token grants.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, invalidRequest("The request body could not be read as a form."))
		return
	}
	form := r.PostForm // never the query: secrets do not belong in URLs
	for k, v := range form {
		if len(v) > 1 {
			writeJSON(w, invalidRequest("Parameter given more than once: "+k))
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep()
	if isJWTBearer(form) { // the signed assertion is the client's authentication
		resp, oerr := s.jwtBearer(form)
		if oerr != nil {
			writeJSON(w, oerr)
			return
		}
		writeJSON(w, resp)
		return
	}
	clientID, oerr := s.authenticate(r, form)
	if oerr != nil {
		if _, _, basic := r.BasicAuth(); basic && oerr.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		}
		writeJSON(w, oerr)
		return
	}
	var resp *tokenResponse
	switch gt := form.Get("grant_type"); gt {
	case "authorization_code":
		resp, oerr = s.exchange(clientID, form)
	case "refresh_token":
		resp, oerr = s.refreshAccess(clientID, form)
	case "":
		oerr = invalidRequest("Missing required parameter: grant_type")
	default:
		oerr = &oauthError{http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: " + gt}
	}
	if oerr != nil {
		writeJSON(w, oerr)
		return
	}
	writeJSON(w, resp)
}

// authenticate identifies the client by client_secret_basic or
// client_secret_post; s.mu must be held.
func (s *Server) authenticate(r *http.Request, form url.Values) (string, *oauthError) {
	id, secret := form.Get("client_id"), form.Get("client_secret")
	if user, pass, ok := r.BasicAuth(); ok {
		if secret != "" {
			return "", invalidRequest("Client authentication given both in the header and the body.")
		}
		u, err1 := url.QueryUnescape(user) // RFC 6749 2.3.1: form-encoded first
		p, err2 := url.QueryUnescape(pass)
		if err1 != nil || err2 != nil || (id != "" && id != u) {
			return "", invalidRequest("Malformed client credentials.")
		}
		id, secret = u, p
	}
	if id == "" {
		return "", invalidRequest("Could not determine client ID from request.")
	}
	c, ok := s.clients[id]
	if !ok {
		return "", &oauthError{http.StatusUnauthorized, "invalid_client", "The OAuth client was not found."}
	}
	if secret == "" {
		return "", invalidRequest("client_secret is missing.")
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		return "", &oauthError{http.StatusUnauthorized, "invalid_client", "Unauthorized"}
	}
	return id, nil
}

// exchange redeems an authorization code once. A failed attempt leaves the
// code usable; redeeming it again revokes what the first redemption issued.
func (s *Server) exchange(clientID string, form url.Values) (*tokenResponse, *oauthError) {
	code := form.Get("code")
	if code == "" {
		return nil, invalidRequest("Missing required parameter: code")
	}
	c, ok := s.codes[code]
	switch {
	case !ok:
		return nil, invalidGrant("Malformed auth code.")
	case c.req.clientID != clientID:
		return nil, invalidGrant("The authorization code was issued to another client.")
	case c.used != nil:
		s.revokeGrant(c.used)
		return nil, invalidGrant("The authorization code was already used; tokens issued with it are revoked.")
	case !s.now().Before(c.expiry):
		return nil, invalidGrant("The authorization code has expired.")
	case form.Get("redirect_uri") != c.req.redirectURI:
		return nil, invalidGrant("redirect_uri does not match the one of the authorization request.")
	}
	if oerr := verifyPKCE(c.req, form.Get("code_verifier")); oerr != nil {
		return nil, oerr
	}
	g := &grant{clientID: clientID, email: c.email, scopes: c.scopes}
	if c.req.offline && !s.behavior.OmitRefreshToken && (c.req.forceConsent || !s.hasOfflineGrant(clientID, c.email)) {
		g.refreshToken = newToken("1//0")
		s.refresh[g.refreshToken] = g
	}
	c.used = g
	resp := s.issue(g, g.scopes, c.req.nonce)
	resp.RefreshToken = g.refreshToken
	return resp, nil
}

func verifyPKCE(req *authRequest, verifier string) *oauthError {
	switch {
	case req.challenge == "" && verifier == "":
		return nil
	case req.challenge == "":
		return invalidGrant("code_verifier given, but the authorization request had no code_challenge.")
	case verifier == "":
		return invalidGrant("Missing code verifier.")
	case !pkceValue.MatchString(verifier):
		return invalidGrant("Invalid code verifier.")
	}
	want := verifier
	if req.method == "S256" {
		sum := sha256.Sum256([]byte(verifier))
		want = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(req.challenge)) != 1 {
		return invalidGrant("Invalid code verifier.")
	}
	return nil
}

// refreshAccess issues a new access token for a live refresh token, with the
// same scopes or the subset asked for, and no new refresh token.
func (s *Server) refreshAccess(clientID string, form url.Values) (*tokenResponse, *oauthError) {
	rt := form.Get("refresh_token")
	if rt == "" {
		return nil, invalidRequest("Missing required parameter: refresh_token")
	}
	g, ok := s.refresh[rt]
	if !ok || g.revoked {
		return nil, invalidGrant("Token has been expired or revoked.")
	}
	if g.clientID != clientID {
		return nil, &oauthError{http.StatusBadRequest, "unauthorized_client", "The refresh token was issued to another client."}
	}
	scopes := g.scopes
	if asked := strings.Fields(form.Get("scope")); len(asked) > 0 {
		scopes = canonicalScopes(asked)
		for _, sc := range scopes {
			if !slices.Contains(g.scopes, sc) {
				return nil, &oauthError{http.StatusBadRequest, "invalid_scope", "The requested scope exceeds the granted scope: " + sc}
			}
		}
	}
	if s.refreshes == nil {
		s.refreshes = map[string]int{}
	}
	s.refreshes[g.email]++
	return s.issue(g, scopes, ""), nil
}

// issue mints an access token (and an ID token when openid is granted) for
// g; s.mu must be held.
func (s *Server) issue(g *grant, scopes []string, nonce string) *tokenResponse {
	tok := newToken("ya29.a0")
	s.access[tok] = &accessToken{grant: g, scopes: scopes, expiry: s.now().Add(s.ttl)}
	resp := &tokenResponse{AccessToken: tok, ExpiresIn: int(s.ttl.Seconds()), Scope: strings.Join(scopes, " "), TokenType: "Bearer"}
	if slices.Contains(scopes, "openid") {
		now := s.now().Unix()
		claims := map[string]any{
			"iss": issuer, "aud": g.clientID, "azp": g.clientID, "sub": s.subjectOf(g.email),
			"iat": now, "exp": now + 3600,
		}
		if slices.Contains(scopes, scopePage+"userinfo.email") {
			claims["email"], claims["email_verified"] = g.email, true
		}
		if hd := s.hosted[g.email]; hd != "" {
			claims["hd"] = hd
		}
		if nonce != "" {
			claims["nonce"] = nonce
		}
		resp.IDToken = s.sign(claims)
	}
	return resp
}

// revoke handles POST /revoke: a refresh or access token ends its whole
// grant, as Google's revoke endpoint does.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, invalidRequest("The request body could not be read as a form."))
		return
	}
	token := r.Form.Get("token")
	if token == "" {
		writeJSON(w, invalidRequest("Missing required parameter: token"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.refresh[token]
	if a, isAccess := s.access[token]; !ok && isAccess && s.now().Before(a.expiry) {
		g, ok = a.grant, true
	}
	if !ok || g.revoked {
		writeJSON(w, &oauthError{http.StatusBadRequest, "invalid_token", "Token expired or revoked"})
		return
	}
	s.revokeGrant(g)
	writeJSON(w, struct{}{})
}

// tokenInfo handles Google's tokeninfo endpoint for an access token
// (oauth2.googleapis.com/tokeninfo?access_token=…): the grant's client,
// the account's stable id (sub), the scopes and the expiry, and the address
// only with the email scope; an unknown, expired or revoked token gets 400
// invalid_token, as Google answers.
func (s *Server) tokenInfo(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, invalidRequest("The request could not be read."))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.access[r.Form.Get("access_token")]
	if !ok || a.grant.revoked || !s.now().Before(a.expiry) {
		writeJSON(w, &oauthError{http.StatusBadRequest, "invalid_token", "Invalid Value"})
		return
	}
	info := map[string]any{
		"azp": a.grant.clientID, "aud": a.grant.clientID, "sub": s.subjectOf(a.grant.email),
		"scope": strings.Join(a.scopes, " "), "exp": strconv.FormatInt(a.expiry.Unix(), 10),
		"expires_in": strconv.Itoa(int(a.expiry.Sub(s.now()).Seconds())), "access_type": "offline",
	}
	if slices.Contains(a.scopes, scopePage+"userinfo.email") {
		info["email"], info["email_verified"] = a.grant.email, "true"
	}
	writeJSON(w, info)
}

// certs serves the ID token signing key as a JWK set.
func (s *Server) certs(w http.ResponseWriter, _ *http.Request) {
	key, kid := s.signingKey()
	writeJSON(w, map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}}})
}

// signingKey returns the RSA key made on first use, and its key id.
func (s *Server) signingKey() (*rsa.PrivateKey, string) {
	s.keyOnce.Do(func() {
		s.key, _ = rsa.GenerateKey(rand.Reader, 2048)
		sum := sha256.Sum256(s.key.N.Bytes())
		s.keyID = hex.EncodeToString(sum[:20])
	})
	return s.key, s.keyID
}

// sign returns claims as an RS256 JWT.
func (s *Server) sign(claims map[string]any) string {
	key, kid := s.signingKey()
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": kid, "typ": "JWT"})
	body, _ := json.Marshal(claims)
	signed := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(body)
	sum := sha256.Sum256([]byte(signed))
	sig, _ := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func writeJSON(w http.ResponseWriter, v any) {
	status := http.StatusOK
	if e, ok := v.(*oauthError); ok {
		status = e.status
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// IDToken returns the ID token Google issues an account (a service account
// on Cloud Run, from the metadata server's identity endpoint, or a person,
// from `gcloud auth print-identity-token --audiences`) for calling the
// service at audience: signed with the key at /oauth2/v3/certs, valid for
// an hour from the provider's clock.
func (s *Server) IDToken(email, audience string) string {
	email = strings.ToLower(strings.TrimSpace(email))
	now := s.now().Unix()
	return s.sign(map[string]any{
		"iss": issuer, "aud": audience, "azp": subject(email), "sub": subject(email),
		"email": email, "email_verified": true, "iat": now, "exp": now + 3600,
	})
}
