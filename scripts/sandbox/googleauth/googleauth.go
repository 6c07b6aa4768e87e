// Package googleauth is the sandbox's Google OAuth 2.0 and OpenID Connect
// provider: the authorization endpoint with a real consent page, the token
// endpoint (authorization_code with PKCE, refresh_token) and the revoke
// endpoint, with Google's parameters, token shapes and errors, so
// golang.org/x/oauth2 talks to it unchanged. The Gmail fake asks Check whether
// a request's access token is live.
package googleauth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrInvalidToken reports an access token that is unknown, expired or revoked.
var ErrInvalidToken = errors.New("invalid access token")

const (
	codeTTL    = 10 * time.Minute
	consentTTL = time.Hour
	issuer     = "https://accounts.google.com"
	scopePage  = "https://www.googleapis.com/auth/"
)

// Client is a registered OAuth client.
type Client struct {
	Secret       string
	RedirectURIs []string
}

// Options configures a Server.
type Options struct {
	Clients        map[string]Client // client_id -> registered client
	AccessTokenTTL time.Duration     // default 1h
	Now            func() time.Time  // default time.Now
}

// Behavior decides what the consent step does; settable at run time.
type Behavior struct {
	AutoApprove      bool     // GET authorize redirects at once, approving, without showing the page
	Deny             bool     // with AutoApprove: redirect with error=access_denied instead
	GrantScopes      []string // nil: grant every requested scope; else grant only these (granular consent)
	OmitRefreshToken bool     // token endpoint returns no refresh_token
}

// Server is the OAuth provider. Its methods are safe for concurrent use.
type Server struct {
	ttl time.Duration
	now func() time.Time

	keyOnce sync.Once
	key     *rsa.PrivateKey
	keyID   string

	mu        sync.Mutex
	clients   map[string]Client
	accounts  map[string]bool
	hosted    map[string]string // account -> its Workspace domain, the ID token's hd claim
	subjects  map[string]string // renamed account -> the sub it kept (RenameAccount); others derive it from the address
	behavior  Behavior
	pending   map[string]*authRequest // consent pages shown, by form id
	codes     map[string]*authCode
	refresh   map[string]*grant
	access    map[string]*accessToken
	consented map[[2]string][]string // {client, email} -> scopes granted so far
	refreshes map[string]int         // refresh-token grants answered, by account
	swept     time.Time

	delegation *Delegation // the JWT-bearer grant's checks; nil: the grant is refused
}

// authRequest is a validated authorization request.
type authRequest struct {
	clientID, redirectURI, state string
	scopes                       []string // canonical, as requested
	challenge, method            string
	nonce, loginHint             string
	offline, forceConsent        bool
	includeGranted               bool
	expiry                       time.Time
}

type authCode struct {
	req    *authRequest
	email  string
	scopes []string // granted
	expiry time.Time
	used   *grant // the grant issued when the code was exchanged
}

// grant is one authorization: a refresh token (if offline) and its access tokens.
type grant struct {
	clientID, email string
	scopes          []string
	refreshToken    string
	revoked         bool
}

type accessToken struct {
	grant  *grant
	scopes []string
	expiry time.Time
}

// New returns a provider with opts' clients and no accounts.
func New(opts Options) *Server {
	s := &Server{
		ttl:       opts.AccessTokenTTL,
		now:       opts.Now,
		clients:   map[string]Client{},
		accounts:  map[string]bool{},
		hosted:    map[string]string{},
		subjects:  map[string]string{},
		pending:   map[string]*authRequest{},
		codes:     map[string]*authCode{},
		refresh:   map[string]*grant{},
		access:    map[string]*accessToken{},
		consented: map[[2]string][]string{},
	}
	if s.ttl <= 0 {
		s.ttl = time.Hour
	}
	if s.now == nil {
		s.now = time.Now
	}
	for id, c := range opts.Clients {
		s.AddClient(id, c)
	}
	return s
}

// Register serves the provider's endpoints on mux: the authorization
// endpoint at /o/oauth2/v2/auth (and Google's older /o/oauth2/auth) with its
// consent form's target, /token, /revoke, and the signing keys at
// /oauth2/v3/certs, and /tokeninfo.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /o/oauth2/v2/auth", s.authorize)
	mux.HandleFunc("GET /o/oauth2/auth", s.authorize)
	mux.HandleFunc("POST "+consentPath, s.consent)
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /revoke", s.revoke)
	mux.HandleFunc("GET /oauth2/v3/certs", s.certs)
	mux.HandleFunc("GET /tokeninfo", s.tokenInfo)
	mux.HandleFunc("POST /tokeninfo", s.tokenInfo)
}

// AddClient registers or replaces an OAuth client.
func (s *Server) AddClient(id string, c Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.RedirectURIs = slices.Clone(c.RedirectURIs)
	s.clients[id] = c
}

// Refreshes returns how many access tokens email's refresh tokens were
// exchanged for.
func (s *Server) Refreshes(email string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes[strings.ToLower(email)]
}

// AddAccount lets email sign in. Addresses are compared case-insensitively.
func (s *Server) AddAccount(email string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts[strings.ToLower(email)] = true
}

// AddWorkspaceAccount lets email sign in as a user of the Google Workspace
// domain hd: its ID tokens carry the hd claim, as Google's do for Workspace
// accounts (and only for them: an account with a custom address outside
// Workspace has none).
func (s *Server) AddWorkspaceAccount(email, hd string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts[strings.ToLower(email)] = true
	s.hosted[strings.ToLower(email)] = strings.ToLower(hd)
}

// Subject returns the stable account id (the ID token's sub) of email.
func Subject(email string) string { return subject(strings.ToLower(email)) }

// SetBehavior changes what the consent step does from now on.
func (s *Server) SetBehavior(b Behavior) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.GrantScopes = canonicalScopes(b.GrantScopes)
	s.behavior = b
}

// Check returns the account and scopes of a live access token, or
// ErrInvalidToken if it is unknown, expired or revoked.
func (s *Server) Check(token string) (email string, scopes []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.access[token]
	if !ok || a.grant.revoked || !s.now().Before(a.expiry) {
		return "", nil, ErrInvalidToken
	}
	return a.grant.email, slices.Clone(a.scopes), nil
}

// RevokeAccount revokes every token and outstanding code of the account, as
// when its owner removes the app's access or Google expires the grant.
func (s *Server) RevokeAccount(email string) {
	email = strings.ToLower(email)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.refresh {
		if g.email == email {
			s.revokeGrant(g)
		}
	}
	for _, a := range s.access {
		if a.grant.email == email {
			s.revokeGrant(a.grant)
		}
	}
	for id, c := range s.codes {
		if c.email == email {
			delete(s.codes, id)
		}
	}
}

// IssueRefreshToken grants scopes of email to clientID without the browser
// flow and returns the refresh token.
func (s *Server) IssueRefreshToken(clientID, email string, scopes []string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := &grant{clientID: clientID, email: strings.ToLower(email), scopes: canonicalScopes(scopes), refreshToken: newToken("1//0")}
	s.refresh[g.refreshToken] = g
	key := [2]string{g.clientID, g.email}
	s.consented[key] = union(s.consented[key], g.scopes)
	return g.refreshToken
}

// revokeGrant kills a grant's refresh and access tokens; s.mu must be held.
func (s *Server) revokeGrant(g *grant) {
	g.revoked = true
	delete(s.refresh, g.refreshToken)
	delete(s.consented, [2]string{g.clientID, g.email})
}

// hasOfflineGrant reports whether email already gave clientID a live refresh
// token; s.mu must be held.
func (s *Server) hasOfflineGrant(clientID, email string) bool {
	for _, g := range s.refresh {
		if g.clientID == clientID && g.email == email {
			return true
		}
	}
	return false
}

// sweep drops expired codes, consent requests and access tokens at most once
// a minute, so a long-running sandbox does not grow; s.mu must be held.
func (s *Server) sweep() {
	now := s.now()
	if now.Sub(s.swept) < time.Minute {
		return
	}
	s.swept = now
	for id, r := range s.pending {
		if now.After(r.expiry) {
			delete(s.pending, id)
		}
	}
	for id, c := range s.codes {
		if now.After(c.expiry) {
			delete(s.codes, id)
		}
	}
	for id, a := range s.access {
		if now.After(a.expiry) || a.grant.revoked {
			delete(s.access, id)
		}
	}
}

// newToken returns prefix followed by 32 random bytes, base64url encoded, so
// tokens look like Google's ("ya29.", "1//", "4/") to log redaction.
func newToken(prefix string) string {
	b := make([]byte, 32)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// subject returns a stable, Google-like numeric subject id for an account.
func subject(email string) string {
	h := sha256.Sum256([]byte(email))
	return fmt.Sprintf("1%020d", binary.BigEndian.Uint64(h[:8]))
}

// canonicalScopes spells scopes as Google reports them granted ("email" is
// userinfo.email), without duplicates, sorted.
func canonicalScopes(scopes []string) []string {
	if scopes == nil {
		return nil
	}
	out := []string{}
	for _, sc := range scopes {
		switch sc {
		case "email", "profile":
			sc = scopePage + "userinfo." + sc
		}
		if sc != "" && !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	slices.Sort(out)
	return out
}

// knownScope reports whether Google would recognise sc.
func knownScope(sc string) bool {
	switch sc {
	case "openid", "email", "profile", "https://mail.google.com/":
		return true
	}
	return strings.HasPrefix(sc, scopePage) && len(sc) > len(scopePage)
}

// basicScope reports whether sc is granted without a checkbox, as Google's
// granular consent does for sign-in scopes.
func basicScope(sc string) bool {
	return sc == "openid" || sc == scopePage+"userinfo.email" || sc == scopePage+"userinfo.profile"
}

func union(a, b []string) []string {
	return canonicalScopes(append(slices.Clone(a), b...))
}
