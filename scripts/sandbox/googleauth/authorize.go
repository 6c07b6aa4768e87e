package googleauth

import (
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// consentPath is where the consent page's form posts.
const consentPath = "/o/oauth2/v2/auth/approve"

// pkceValue is RFC 7636's code_verifier and code_challenge syntax.
var pkceValue = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// authorize handles GET /o/oauth2/v2/auth: it validates the request and shows
// the consent page, or answers at once in AutoApprove mode. Errors before a
// redirect_uri is trusted, and request errors after it, are shown as pages,
// as Google does; only the user's decision travels back to the client.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	req, status, code, desc := s.parseAuthRequest(r.URL.Query())
	if req == nil {
		errorPage(w, status, code, desc)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep()
	b := s.behavior
	if !b.AutoApprove {
		id := newToken("")
		s.pending[id] = req
		account := req.loginHint
		if account == "" {
			account = s.onlyAccount()
		}
		s.consentPage(w, http.StatusOK, id, req, account, "")
		return
	}
	if b.Deny {
		redirect(w, r, req, url.Values{"error": {"access_denied"}})
		return
	}
	email := strings.ToLower(req.loginHint)
	if email == "" {
		email = s.onlyAccount()
	}
	if !s.accounts[email] {
		errorPage(w, http.StatusBadRequest, "invalid_request", "Auto-approve needs login_hint naming a sandbox account (or exactly one account).")
		return
	}
	granted := req.scopes
	if b.GrantScopes != nil {
		granted = slices.DeleteFunc(slices.Clone(req.scopes), func(sc string) bool {
			return !basicScope(sc) && !slices.Contains(b.GrantScopes, sc)
		})
	}
	s.approve(w, r, req, email, granted)
}

// consent handles the consent page's form: Allow or Deny.
func (s *Server) consent(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		errorPage(w, http.StatusBadRequest, "invalid_request", "The consent form could not be read.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := r.PostForm.Get("request")
	req, ok := s.pending[id]
	if !ok || s.now().After(req.expiry) {
		errorPage(w, http.StatusBadRequest, "invalid_request", "This consent request has expired or was already answered. Start again from the application.")
		return
	}
	switch r.PostForm.Get("action") {
	case "deny":
		delete(s.pending, id)
		redirect(w, r, req, url.Values{"error": {"access_denied"}})
	case "allow":
		email := strings.ToLower(strings.TrimSpace(r.PostForm.Get("account")))
		if !s.accounts[email] {
			s.consentPage(w, http.StatusBadRequest, id, req, r.PostForm.Get("account"), "Couldn't find your Google Account.")
			return
		}
		checked := canonicalScopes(r.PostForm["scope"])
		granted := slices.DeleteFunc(slices.Clone(req.scopes), func(sc string) bool {
			return !basicScope(sc) && !slices.Contains(checked, sc)
		})
		delete(s.pending, id)
		s.approve(w, r, req, email, granted)
	default:
		errorPage(w, http.StatusBadRequest, "invalid_request", "Choose Allow or Deny.")
	}
}

// approve records the consent, issues a code and redirects to the client;
// s.mu must be held.
func (s *Server) approve(w http.ResponseWriter, r *http.Request, req *authRequest, email string, granted []string) {
	key := [2]string{req.clientID, email}
	scopes := granted
	if req.includeGranted {
		scopes = union(s.consented[key], granted)
	}
	s.consented[key] = union(s.consented[key], granted)
	code := newToken("4/0A")
	s.codes[code] = &authCode{req: req, email: email, scopes: scopes, expiry: s.now().Add(codeTTL)}
	redirect(w, r, req, url.Values{"code": {code}, "scope": {strings.Join(scopes, " ")}})
}

// onlyAccount returns the single known account, or "" when there are
// none or several; s.mu must be held.
func (s *Server) onlyAccount() string {
	if len(s.accounts) != 1 {
		return ""
	}
	for a := range s.accounts {
		return a
	}
	return ""
}

// parseAuthRequest validates an authorization request in Google's order;
// on failure it returns nil and the error page's status, code and text.
func (s *Server) parseAuthRequest(q url.Values) (*authRequest, int, string, string) {
	bad := func(code, desc string) (*authRequest, int, string, string) {
		return nil, http.StatusBadRequest, code, desc
	}
	for k, v := range q {
		if len(v) > 1 {
			return bad("invalid_request", "Parameter given more than once: "+k)
		}
	}
	clientID := q.Get("client_id")
	if clientID == "" {
		return bad("invalid_request", "Missing required parameter: client_id")
	}
	s.mu.Lock()
	client, ok := s.clients[clientID]
	s.mu.Unlock()
	if !ok {
		return nil, http.StatusUnauthorized, "invalid_client", "The OAuth client was not found."
	}
	redirectURI := q.Get("redirect_uri")
	if redirectURI == "" {
		return bad("invalid_request", "Missing required parameter: redirect_uri")
	}
	if !slices.Contains(client.RedirectURIs, redirectURI) {
		return bad("redirect_uri_mismatch", "The redirect URI in the request, "+redirectURI+", does not match the ones authorized for the OAuth client.")
	}
	switch q.Get("response_type") {
	case "code":
	case "":
		return bad("invalid_request", "Missing required parameter: response_type")
	default:
		return bad("unsupported_response_type", "Only response_type=code is supported.")
	}
	requested := strings.Fields(q.Get("scope"))
	if len(requested) == 0 {
		return bad("invalid_request", "Missing required parameter: scope")
	}
	for _, sc := range requested {
		if !knownScope(sc) {
			return bad("invalid_scope", "Some requested scopes were invalid: "+sc)
		}
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	if challenge == "" && method != "" {
		return bad("invalid_request", "code_challenge_method given without code_challenge.")
	}
	if challenge != "" {
		switch method {
		case "":
			method = "plain"
		case "S256", "plain":
		default:
			return bad("invalid_request", "Invalid code_challenge_method: "+method)
		}
		if !pkceValue.MatchString(challenge) {
			return bad("invalid_request", "Invalid code_challenge.")
		}
	}
	access := q.Get("access_type")
	if access != "" && access != "online" && access != "offline" {
		return bad("invalid_request", "Invalid access_type: "+access)
	}
	prompts := strings.Fields(q.Get("prompt"))
	for _, p := range prompts {
		if !slices.Contains([]string{"none", "consent", "select_account"}, p) || (p == "none" && len(prompts) > 1) {
			return bad("invalid_request", "Invalid prompt: "+q.Get("prompt"))
		}
	}
	include := q.Get("include_granted_scopes")
	if include != "" && include != "true" && include != "false" {
		return bad("invalid_request", "Invalid include_granted_scopes: "+include)
	}
	return &authRequest{
		clientID:       clientID,
		redirectURI:    redirectURI,
		state:          q.Get("state"),
		scopes:         canonicalScopes(requested),
		challenge:      challenge,
		method:         method,
		nonce:          q.Get("nonce"),
		loginHint:      q.Get("login_hint"),
		offline:        access == "offline",
		forceConsent:   slices.Contains(prompts, "consent"),
		includeGranted: include == "true",
		expiry:         s.now().Add(consentTTL),
	}, 0, "", ""
}

// redirect sends the browser back to the client with params and the state.
func redirect(w http.ResponseWriter, r *http.Request, req *authRequest, params url.Values) {
	u, _ := url.Parse(req.redirectURI) // registered, so it parses
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if req.state != "" {
		q.Set("state", req.state)
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

type scopeChoice struct {
	Scope   string
	Checked bool
}

// consentPage shows the account field, one checkbox per optional scope, and
// Allow/Deny; s.mu must be held.
func (s *Server) consentPage(w http.ResponseWriter, status int, id string, req *authRequest, account, problem string) {
	var basic []string
	var optional []scopeChoice
	for _, sc := range req.scopes {
		if basicScope(sc) {
			basic = append(basic, sc)
			continue
		}
		optional = append(optional, scopeChoice{sc, s.behavior.GrantScopes == nil || slices.Contains(s.behavior.GrantScopes, sc)})
	}
	writePage(w, status, consentTemplate, map[string]any{
		"Action": consentPath, "Request": id, "Client": req.clientID, "Account": account,
		"Problem": problem, "Basic": basic, "Optional": optional,
	})
}

// errorPage shows an error the way Google's authorization server does,
// without redirecting.
func errorPage(w http.ResponseWriter, status int, code, desc string) {
	writePage(w, status, errorTemplate, map[string]any{"Status": status, "Code": code, "Description": desc})
}

func writePage(w http.ResponseWriter, status int, t *template.Template, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(status)
	t.Execute(w, data)
}

const pageStyle = `<style>
body{font-family:system-ui,sans-serif;background:#f1f3f4;margin:0}
main{max-width:28rem;margin:3rem auto;background:#fff;border:1px solid #dadce0;border-radius:8px;padding:2rem}
h1{font-size:1.4rem;font-weight:400}.error{color:#d93025}label{display:block;margin:.5rem 0}
input[type=email]{width:100%;padding:.5rem;box-sizing:border-box}fieldset{border:1px solid #dadce0;margin:1rem 0}
.buttons{display:flex;justify-content:space-between}button{padding:.5rem 1.5rem;border-radius:4px;border:1px solid #dadce0;background:#fff}
#allow{background:#1a73e8;color:#fff;border-color:#1a73e8}
</style>`

var consentTemplate = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in with Google (sandbox)</title>` + pageStyle + `</head>
<body><main>
<h1>Sign in with Google</h1>
<p><b id="client">{{.Client}}</b> wants to access your Google Account.</p>
{{with .Problem}}<p class="error" id="problem">{{.}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="request" value="{{.Request}}">
<label for="account">Account</label>
<input type="email" id="account" name="account" value="{{.Account}}" autocomplete="username" required>
<fieldset><legend>This will allow the app to</legend>
{{range .Basic}}<label><input type="checkbox" checked disabled> {{.}}</label>
{{end}}{{range .Optional}}<label><input type="checkbox" name="scope" value="{{.Scope}}"{{if .Checked}} checked{{end}}> {{.Scope}}</label>
{{end}}</fieldset>
<div class="buttons">
<button type="submit" id="deny" name="action" value="deny" formnovalidate>Deny</button>
<button type="submit" id="allow" name="action" value="allow">Allow</button>
</div>
</form>
</main></body></html>
`))

var errorTemplate = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Error {{.Status}}: {{.Code}}</title>` + pageStyle + `</head>
<body><main>
<h1>Access blocked: authorization error</h1>
<p class="error" id="error">Error {{.Status}}: {{.Code}}</p>
<p id="description">{{.Description}}</p>
</main></body></html>
`))
