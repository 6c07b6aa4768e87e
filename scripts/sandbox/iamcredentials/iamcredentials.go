// Package iamcredentials is the sandbox's IAM Service Account Credentials
// API and the metadata server's token endpoint: service accounts with a
// Google-managed key each, the roles/iam.serviceAccountTokenCreator bindings
// on them, and projects.serviceAccounts.signJwt with Google's checks and
// error shapes. The functions' runtime identity gets its access token from
// the metadata endpoint, as on Cloud Run (GCE_METADATA_HOST points
// cloud.google.com/go/compute/metadata at it), and presents it to signJwt,
// which signs only for a caller holding the token creator role on the
// account. The sandbox's token endpoint verifies the signatures with Verify.
package iamcredentials

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// MaxJWTLifetime is how far in the future signJwt accepts an exp claim.
const MaxJWTLifetime = 12 * time.Hour

// Server holds the service accounts. Its methods are safe for concurrent use.
type Server struct {
	now func() time.Time

	mu       sync.Mutex
	accounts map[string]*account // by email
	runtime  string              // the account the metadata server hands tokens for
	tokens   map[string]callerToken
}

type account struct {
	email, uniqueID string
	key             *rsa.PrivateKey
	keyID           string
	tokenCreators   map[string]bool // principals with roles/iam.serviceAccountTokenCreator on it
}

type callerToken struct {
	email  string
	expiry time.Time
}

// New returns a Server with no accounts; now is its clock (nil: time.Now).
func New(now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	return &Server{now: now, accounts: map[string]*account{}, tokens: map[string]callerToken{}}
}

// AddServiceAccount creates email (if new) with a key of its own and returns
// its unique id, which is also its OAuth client id: the number a Workspace
// admin enters for domain-wide delegation.
func (s *Server) AddServiceAccount(email string) string {
	email = strings.ToLower(strings.TrimSpace(email))
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.accounts[email]; ok {
		return a.uniqueID
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	sum := sha256.Sum256(key.N.Bytes())
	h := sha256.Sum256([]byte("sa:" + email))
	a := &account{
		email: email, key: key, keyID: hex.EncodeToString(sum[:20]),
		uniqueID:      fmt.Sprintf("1%020d", binary.BigEndian.Uint64(h[:8])),
		tokenCreators: map[string]bool{},
	}
	s.accounts[email] = a
	return a.uniqueID
}

// SetRuntime makes email (created if needed) the identity the metadata
// server issues tokens for: the functions' service account.
func (s *Server) SetRuntime(email string) string {
	id := s.AddServiceAccount(email)
	s.mu.Lock()
	s.runtime = strings.ToLower(strings.TrimSpace(email))
	s.mu.Unlock()
	return id
}

// Runtime returns the runtime identity, "" if none.
func (s *Server) Runtime() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runtime
}

// SetTokenCreator grants (or, with grant false, removes) member's
// roles/iam.serviceAccountTokenCreator on the account email.
func (s *Server) SetTokenCreator(email, member string, grant bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[strings.ToLower(email)]
	if !ok {
		return fmt.Errorf("no service account %s", email)
	}
	member = strings.ToLower(strings.TrimSpace(member))
	if grant {
		a.tokenCreators[member] = true
	} else {
		delete(a.tokenCreators, member)
	}
	return nil
}

// Register serves signJwt and the metadata server's token and email.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/projects/{project}/serviceAccounts/{call}", s.signJWT)
	mux.HandleFunc("GET /computeMetadata/v1/instance/service-accounts/{account}/{what}", s.metadata)
}

// Verified is what Verify learned from a JWT signed by signJwt.
type Verified struct {
	ServiceAccount string // the signer's email
	ClientID       string // the signer's unique id
	Payload        []byte // the JSON claims, as signed
}

// Verify checks that jwt is an RS256 JWT signed with a service account's
// key, and returns the signer and the payload. Claims are the caller's to check.
func (s *Server) Verify(jwt string) (Verified, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return Verified{}, errors.New("not a JWT")
	}
	rawHeader, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	payload, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	var header struct{ Alg, Kid string }
	if err := errors.Join(err1, err2, err3); err != nil || json.Unmarshal(rawHeader, &header) != nil {
		return Verified{}, errors.New("malformed JWT")
	}
	if header.Alg != "RS256" {
		return Verified{}, fmt.Errorf("JWT algorithm %q is not RS256", header.Alg)
	}
	s.mu.Lock()
	var signer *account
	for _, a := range s.accounts {
		if a.keyID == header.Kid {
			signer = a
		}
	}
	s.mu.Unlock()
	if signer == nil {
		return Verified{}, errors.New("JWT signed with an unknown key")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(&signer.key.PublicKey, crypto.SHA256, sum[:], sig) != nil {
		return Verified{}, errors.New("invalid JWT signature")
	}
	return Verified{ServiceAccount: signer.email, ClientID: signer.uniqueID, Payload: payload}, nil
}

// signJWT handles POST /v1/projects/-/serviceAccounts/{account}:signJwt.
func (s *Server) signJWT(w http.ResponseWriter, r *http.Request) {
	name, method, _ := strings.Cut(r.PathValue("call"), ":")
	if method != "signJwt" {
		respond(w, apiError(http.StatusNotFound, "NOT_FOUND", "Method not found."))
		return
	}
	if p := r.PathValue("project"); p != "-" {
		respond(w, apiError(http.StatusBadRequest, "INVALID_ARGUMENT", "The project of the service account must be the - wildcard, got "+p+"."))
		return
	}
	caller, err := s.caller(r)
	if err != nil {
		respond(w, err)
		return
	}
	var req struct {
		Payload   string   `json:"payload"`
		Delegates []string `json:"delegates"`
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		respond(w, apiError(http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid JSON payload received. "+err.Error()))
		return
	}
	if len(req.Delegates) > 0 {
		respond(w, apiError(http.StatusBadRequest, "INVALID_ARGUMENT", "The sandbox serves no delegation chains: delegates must be empty."))
		return
	}
	s.mu.Lock()
	a := s.accounts[strings.ToLower(name)]
	if a == nil {
		for _, c := range s.accounts {
			if c.uniqueID == name {
				a = c
			}
		}
	}
	allowed := a != nil && a.tokenCreators[caller]
	s.mu.Unlock()
	if !allowed { // Google answers 403 for a missing account too, under the - wildcard
		respond(w, &Error{Code: http.StatusForbidden, Status: "PERMISSION_DENIED", Permission: "iam.serviceAccounts.signJwt",
			Message: "Permission 'iam.serviceAccounts.signJwt' denied on resource (or it may not exist)."})
		return
	}
	var claims map[string]any
	if req.Payload == "" || json.Unmarshal([]byte(req.Payload), &claims) != nil {
		respond(w, apiError(http.StatusBadRequest, "INVALID_ARGUMENT", "The payload must be a serialized JSON object containing a JWT Claims Set."))
		return
	}
	if exp, ok := claims["exp"]; ok {
		n, isNum := exp.(float64)
		now := s.now()
		if !isNum || n != float64(int64(n)) || time.Unix(int64(n), 0).Before(now) || time.Unix(int64(n), 0).After(now.Add(MaxJWTLifetime)) {
			respond(w, apiError(http.StatusBadRequest, "INVALID_ARGUMENT", "The exp claim must be an integer timestamp, not in the past and no more than 12 hours in the future."))
			return
		}
	}
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": a.keyID, "typ": "JWT"})
	signed := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString([]byte(req.Payload))
	sum := sha256.Sum256([]byte(signed))
	sig, _ := rsa.SignPKCS1v15(nil, a.key, crypto.SHA256, sum[:])
	writeJSON(w, http.StatusOK, map[string]string{"keyId": a.keyID, "signedJwt": signed + "." + base64.RawURLEncoding.EncodeToString(sig)})
}

// caller returns the identity of the request's bearer token.
func (s *Server) caller(r *http.Request) (string, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return "", &Error{Code: http.StatusUnauthorized, Status: "UNAUTHENTICATED",
			Message: "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential."}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[strings.TrimSpace(token)]
	if !ok || !s.now().Before(t.expiry) {
		return "", &Error{Code: http.StatusUnauthorized, Status: "UNAUTHENTICATED",
			Message: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."}
	}
	return t.email, nil
}

// metadata serves the runtime identity's access token and email, with the
// Metadata-Flavor header the metadata server requires.
func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Metadata-Flavor") != "Google" {
		http.Error(w, "Missing Metadata-Flavor:Google header.", http.StatusForbidden)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	acct := r.PathValue("account")
	if s.runtime == "" || (acct != "default" && strings.ToLower(acct) != s.runtime) {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	switch r.PathValue("what") {
	case "email":
		w.Header().Set("Content-Type", "application/text")
		_, _ = io.WriteString(w, s.runtime)
	case "token":
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		tok := "ya29.c." + base64.RawURLEncoding.EncodeToString(b)
		s.tokens[tok] = callerToken{email: s.runtime, expiry: s.now().Add(time.Hour)}
		for k, t := range s.tokens {
			if !s.now().Before(t.expiry) {
				delete(s.tokens, k)
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "expires_in": 3599, "token_type": "Bearer"})
	default:
		http.Error(w, "Not Found", http.StatusNotFound)
	}
}

// Error is a Google API error; Permission, when set, adds the ErrorInfo
// detail IAM answers with.
type Error struct {
	Code       int
	Status     string
	Message    string
	Permission string
}

func (e *Error) Error() string {
	return fmt.Sprintf("iamcredentials %d %s: %s", e.Code, e.Status, e.Message)
}

func apiError(code int, status, message string) *Error {
	return &Error{Code: code, Status: status, Message: message}
}

func respond(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = apiError(http.StatusInternalServerError, "INTERNAL", err.Error())
	}
	body := map[string]any{"code": e.Code, "message": e.Message, "status": e.Status}
	if e.Permission != "" {
		body["details"] = []map[string]any{{
			"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED",
			"domain": "iam.googleapis.com", "metadata": map[string]string{"permission": e.Permission},
		}}
	}
	if e.Code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/"`)
	}
	writeJSON(w, e.Code, map[string]any{"error": body})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
