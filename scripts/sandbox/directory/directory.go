// Package directory is the sandbox's Google Workspace tenant: one domain's
// users (org unit, suspended, admin) and groups, served as the Admin SDK
// Directory API's users.list and members.list with Google's paging, query
// syntax, JSON (the generated client's own types) and errors, and the
// domain-wide delegation an admin grants in the Admin console (a client id
// and its scopes). The sandbox's token endpoint asks Authorize before it
// issues a token for a delegated user.
package directory

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	admin "google.golang.org/api/admin/directory/v1"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
)

// Tokens tells the account and scopes of an access token; the sandbox's
// OAuth server is one.
type Tokens interface {
	Check(accessToken string) (email string, scopes []string, err error)
}

// Server is one Workspace tenant. Its methods are safe for concurrent use.
type Server struct {
	domain, customerID string
	tokens             Tokens
	now                func() time.Time

	mu          sync.Mutex
	users       map[string]*user           // by primary email
	groups      map[string]map[string]bool // group email -> member emails
	delegations map[string]map[string]bool // client id -> scopes granted domain-wide
	searchLag   time.Duration
	newUserLag  time.Duration // SetNewUserLag: how long a user created since lagFrom is refused
	lagFrom     time.Time
	indexed     map[string]indexed // what searches (users.list with a query) still show
}

type user struct {
	email, id, orgUnit string
	admin, suspended   bool
	created            time.Time
}

// indexed is a user as the search index knew it before a change (nil: not
// there), shown to searches until the change is lag old.
type indexed struct {
	was     *user
	changed time.Time
}

// SearchLag is how long searches show a user as it was before a change by
// default: Google's search guide says most changes show within an hour and
// some take up to 36. users.list without a query is always current.
const SearchLag = time.Hour

// SetSearchLag changes how long searches lag changes (0: never).
func (s *Server) SetSearchLag(d time.Duration) {
	s.mu.Lock()
	s.searchLag = d
	s.mu.Unlock()
}

// changing records u's state (nil: absent) before a change, unless an
// earlier change is still waiting to be indexed; s.mu must be held.
func (s *Server) changing(email string, u *user) {
	if _, ok := s.indexed[email]; ok {
		return
	}
	var was *user
	if u != nil {
		c := *u
		was = &c
	}
	s.indexed[email] = indexed{was: was, changed: s.now()}
}

// searchable returns the users a search sees at now; s.mu must be held.
func (s *Server) searchable() []*user {
	now := s.now()
	var out []*user
	seen := map[string]bool{}
	for email, ix := range s.indexed {
		if now.Sub(ix.changed) >= s.searchLag {
			delete(s.indexed, email)
			continue
		}
		seen[email] = true
		if ix.was != nil {
			out = append(out, ix.was)
		}
	}
	for email, u := range s.users {
		if !seen[email] {
			out = append(out, u)
		}
	}
	return out
}

// New returns an empty tenant for domain; now is its clock (nil: time.Now).
func New(domain string, tokens Tokens, now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	domain = strings.ToLower(domain)
	h := sha256.Sum256([]byte("customer:" + domain))
	return &Server{
		domain: domain, customerID: fmt.Sprintf("C0%07x", binary.BigEndian.Uint32(h[:4])>>4), tokens: tokens, now: now,
		users: map[string]*user{}, groups: map[string]map[string]bool{}, delegations: map[string]map[string]bool{},
		searchLag: SearchLag, indexed: map[string]indexed{},
	}
}

// Domain returns the tenant's primary domain.
func (s *Server) Domain() string { return s.domain }

// ID returns the stable numeric id Google gives an account, the same as the
// sub claim of its ID tokens (googleauth.Subject).
func ID(email string) string { return googleauth.Subject(email) }

// AddUser adds a user of the domain in orgUnit ("" is the root, "/").
func (s *Server) AddUser(email, orgUnit string, isAdmin bool) error {
	email = strings.ToLower(strings.TrimSpace(email))
	if !s.inDomain(email) {
		return badRequest("%s is not an address of %s", email, s.domain)
	}
	if orgUnit == "" {
		orgUnit = "/"
	}
	if !strings.HasPrefix(orgUnit, "/") || (len(orgUnit) > 1 && strings.HasSuffix(orgUnit, "/")) {
		return badRequest("orgUnitPath %q must start with / and not end with one", orgUnit)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[email]; ok {
		return &gmailapi.Error{Code: http.StatusConflict, Status: "ALREADY_EXISTS", Reason: "duplicate", Message: "Entity already exists."}
	}
	s.changing(email, nil)
	s.users[email] = &user{email: email, id: ID(email), orgUnit: orgUnit, admin: isAdmin, created: s.now()}
	return nil
}

// SetSuspended suspends or restores a user.
func (s *Server) SetSuspended(email string, suspended bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[strings.ToLower(email)]
	if !ok {
		return notFound("Resource Not Found: userKey")
	}
	s.changing(u.email, u)
	u.suspended = suspended
	return nil
}

// DeleteUser deletes a user, and with it the user's group memberships.
func (s *Server) DeleteUser(email string) error {
	email = strings.ToLower(email)
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[email]
	if !ok {
		return notFound("Resource Not Found: userKey")
	}
	s.changing(email, u)
	delete(s.users, email)
	for _, m := range s.groups {
		delete(m, email)
	}
	return nil
}

// AddGroup creates a group of the domain.
func (s *Server) AddGroup(email string) error {
	email = strings.ToLower(strings.TrimSpace(email))
	if !s.inDomain(email) {
		return badRequest("%s is not an address of %s", email, s.domain)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.groups[email]; ok {
		return &gmailapi.Error{Code: http.StatusConflict, Status: "ALREADY_EXISTS", Reason: "duplicate", Message: "Entity already exists."}
	}
	s.groups[email] = map[string]bool{}
	return nil
}

// SetMember adds member (any address: groups may hold outsiders) to group,
// or removes it.
func (s *Server) SetMember(group, member string, in bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.groups[strings.ToLower(group)]
	if !ok {
		return notFound("Resource Not Found: groupKey")
	}
	member = strings.ToLower(strings.TrimSpace(member))
	if !strings.Contains(member, "@") {
		return badRequest("member %q is not an address", member)
	}
	if in {
		m[member] = true
	} else {
		delete(m, member)
	}
	return nil
}

// GrantDelegation records what an admin enters under Security > API
// controls > Domain-wide delegation: the client id and its scopes (which
// replace any granted before).
func (s *Server) GrantDelegation(clientID string, scopes []string) error {
	if clientID == "" || len(scopes) == 0 {
		return badRequest("a client id and at least one scope are required")
	}
	set := map[string]bool{}
	for _, sc := range scopes {
		set[strings.TrimSpace(sc)] = true
	}
	s.mu.Lock()
	s.delegations[clientID] = set
	s.mu.Unlock()
	return nil
}

// WithdrawDelegation deletes the client's domain-wide delegation.
func (s *Server) WithdrawDelegation(clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.delegations[clientID]; !ok {
		return notFound("no domain-wide delegation for client %s", clientID)
	}
	delete(s.delegations, clientID)
	return nil
}

// Delegations returns each client id's granted scopes, sorted.
func (s *Server) Delegations() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	for id, set := range s.delegations {
		for sc := range set {
			out[id] = append(out[id], sc)
		}
		slices.Sort(out[id])
	}
	return out
}

// Unauthorized is what the token endpoint answers when Authorize refuses.
const Unauthorized = "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."

// Authorize decides whether clientID may act for subject with scopes, as
// the JWT-bearer grant does: it returns "" or an OAuth error code and
// description. A subject outside the domain, or delegation missing for the
// client or for any scope, is unauthorized_client; an address of the domain
// with no account, or a suspended one, is invalid_grant.
func (s *Server) Authorize(clientID, subject string, scopes []string) (code, description string) {
	subject = strings.ToLower(subject)
	s.mu.Lock()
	defer s.mu.Unlock()
	granted := s.delegations[clientID]
	if !s.inDomain(subject) || granted == nil {
		return "unauthorized_client", Unauthorized
	}
	for _, sc := range scopes {
		if !granted[sc] {
			return "unauthorized_client", Unauthorized
		}
	}
	if u, ok := s.users[subject]; !ok || u.suspended || !u.created.Before(s.lagFrom) && s.now().Sub(u.created) < s.newUserLag {
		return "invalid_grant", "Invalid email or User ID"
	}
	return "", ""
}

func (s *Server) inDomain(email string) bool {
	_, d, ok := strings.Cut(email, "@")
	return ok && strings.EqualFold(d, s.domain)
}

// Register serves users.list and members.list under /admin/directory/v1/.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/directory/v1/users", s.listUsers)
	mux.HandleFunc("GET /admin/directory/v1/groups/{groupKey}/members", s.listMembers)
}

// Scopes that allow each list, the read-only one first.
var (
	usersScopes   = []string{admin.AdminDirectoryUserReadonlyScope, admin.AdminDirectoryUserScope}
	membersScopes = []string{admin.AdminDirectoryGroupMemberReadonlyScope, admin.AdminDirectoryGroupMemberScope,
		admin.AdminDirectoryGroupReadonlyScope, admin.AdminDirectoryGroupScope}
)

// caller checks the request's access token: an admin of the domain with
// one of scopes.
func (s *Server) caller(r *http.Request, scopes []string) *gmailapi.Error {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return &gmailapi.Error{Code: http.StatusUnauthorized, Status: "UNAUTHENTICATED", Reason: "required", Message: "Login Required."}
	}
	email, granted, err := s.tokens.Check(strings.TrimSpace(token))
	if err != nil {
		return &gmailapi.Error{Code: http.StatusUnauthorized, Status: "UNAUTHENTICATED", Reason: "authError", Message: "Invalid Credentials"}
	}
	if !slices.ContainsFunc(scopes, func(sc string) bool { return slices.Contains(granted, sc) }) {
		return &gmailapi.Error{Code: http.StatusForbidden, Status: "PERMISSION_DENIED", Reason: "insufficientPermissions", Message: "Request had insufficient authentication scopes."}
	}
	s.mu.Lock()
	u, ok := s.users[strings.ToLower(email)]
	s.mu.Unlock()
	if !ok || !u.admin || u.suspended {
		return &gmailapi.Error{Code: http.StatusForbidden, Status: "PERMISSION_DENIED", Reason: "forbidden", Message: "Not Authorized to access this resource/api"}
	}
	return nil
}

// listUsers serves users.list: customer (my_customer or the id) or domain,
// query terms orgUnitPath= (the unit and every unit under it), isSuspended=
// and isAdmin=, maxResults 1..500 (default 100), pageToken; by email. With a
// query it answers from the search index, which lags changes (SearchLag).
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	if e := s.caller(r, usersScopes); e != nil {
		e.Respond(w)
		return
	}
	q := r.URL.Query()
	customer, domain := q.Get("customer"), strings.ToLower(q.Get("domain"))
	switch {
	case customer == "" && domain == "":
		badRequest("Bad Request").Respond(w)
		return
	case customer != "" && customer != "my_customer" && customer != s.customerID,
		domain != "" && domain != s.domain:
		(&gmailapi.Error{Code: http.StatusForbidden, Status: "PERMISSION_DENIED", Reason: "forbidden", Message: "Not Authorized to access this resource/api"}).Respond(w)
		return
	}
	limit, after, e := paging(q, 100, 500)
	if e != nil {
		e.Respond(w)
		return
	}
	match, e := parseQuery(q.Get("query"))
	if e != nil {
		e.Respond(w)
		return
	}
	s.mu.Lock()
	users := s.searchable()
	if q.Get("query") == "" {
		users = slices.Collect(maps.Values(s.users))
	}
	var all []*user
	for _, u := range users {
		if u.email > after && match(u) {
			all = append(all, u)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b *user) int { return strings.Compare(a.email, b.email) })
	resp := admin.Users{Kind: "admin#directory#users", Etag: etag(len(all)), Users: []*admin.User{}}
	for _, u := range all[:min(limit, len(all))] {
		local, _, _ := strings.Cut(u.email, "@")
		resp.Users = append(resp.Users, &admin.User{
			Kind: "admin#directory#user", Id: u.id, PrimaryEmail: u.email, CustomerId: s.customerID,
			Name:    &admin.UserName{FullName: local, GivenName: local, FamilyName: s.domain},
			IsAdmin: u.admin, Suspended: u.suspended, OrgUnitPath: u.orgUnit,
			CreationTime:    u.created.UTC().Format("2006-01-02T15:04:05.000Z"),
			ForceSendFields: []string{"IsAdmin", "Suspended", "Archived"},
		})
	}
	if len(all) > limit {
		resp.NextPageToken = pageToken(all[limit-1].email)
	}
	writeJSON(w, resp)
}

// listMembers serves members.list for a group's email or id: maxResults
// 1..200 (default 200), pageToken; roles and includeDerivedMembership are
// accepted (every member here is a direct MEMBER).
func (s *Server) listMembers(w http.ResponseWriter, r *http.Request) {
	if e := s.caller(r, membersScopes); e != nil {
		e.Respond(w)
		return
	}
	q := r.URL.Query()
	limit, after, e := paging(q, 200, 200)
	if e != nil {
		e.Respond(w)
		return
	}
	key := strings.ToLower(r.PathValue("groupKey"))
	s.mu.Lock()
	members, ok := s.groups[key]
	if !ok {
		for g, m := range s.groups {
			if ID(g) == key {
				members, ok = m, true
			}
		}
	}
	type row struct{ email, status string }
	var rows []row
	for m := range members {
		if m <= after {
			continue
		}
		status := "ACTIVE"
		if u, in := s.users[m]; in && u.suspended {
			status = "SUSPENDED"
		}
		rows = append(rows, row{m, status})
	}
	s.mu.Unlock()
	if !ok {
		notFound("Resource Not Found: groupKey").Respond(w)
		return
	}
	slices.SortFunc(rows, func(a, b row) int { return strings.Compare(a.email, b.email) })
	resp := admin.Members{Kind: "admin#directory#members", Etag: etag(len(rows)), Members: []*admin.Member{}}
	for _, m := range rows[:min(limit, len(rows))] {
		resp.Members = append(resp.Members, &admin.Member{
			Kind: "admin#directory#member", Id: ID(m.email), Email: m.email, Role: "MEMBER", Type: "USER", Status: m.status,
		})
	}
	if len(rows) > limit {
		resp.NextPageToken = pageToken(rows[limit-1].email)
	}
	writeJSON(w, resp)
}

func paging(q map[string][]string, def, max int) (limit int, after string, e *gmailapi.Error) {
	limit = def
	if v := first(q, "maxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > max {
			return 0, "", badRequest("Invalid value '%s'. Values must be within the range: [1, %d]", v, max)
		}
		limit = n
	}
	if t := first(q, "pageToken"); t != "" {
		raw, err := base64.RawURLEncoding.DecodeString(t)
		if err != nil || !strings.HasPrefix(string(raw), "after:") {
			return 0, "", badRequest("Invalid page token")
		}
		after = strings.TrimPrefix(string(raw), "after:")
	}
	return limit, after, nil
}

func first(q map[string][]string, k string) string {
	if v := q[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func pageToken(last string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("after:" + last))
}

// parseQuery reads the users.list query terms the sandbox knows, joined by
// spaces (all must hold): orgUnitPath=/X or ='/X' (the unit and its
// descendants), isSuspended=true|false, isAdmin=true|false.
func parseQuery(query string) (func(*user) bool, *gmailapi.Error) {
	var tests []func(*user) bool
	for _, term := range splitTerms(query) {
		field, value, ok := strings.Cut(term, "=")
		value = strings.Trim(value, `'"`)
		if !ok {
			return nil, badRequest("Invalid Input")
		}
		switch field {
		case "orgUnitPath":
			if !strings.HasPrefix(value, "/") {
				return nil, badRequest("Invalid Input: orgUnitPath")
			}
			path := strings.TrimSuffix(value, "/")
			tests = append(tests, func(u *user) bool {
				return path == "" || u.orgUnit == path || strings.HasPrefix(u.orgUnit, path+"/")
			})
		case "isSuspended", "isAdmin":
			b, err := strconv.ParseBool(value)
			if err != nil {
				return nil, badRequest("Invalid Input: %s", field)
			}
			if field == "isSuspended" {
				tests = append(tests, func(u *user) bool { return u.suspended == b })
			} else {
				tests = append(tests, func(u *user) bool { return u.admin == b })
			}
		default:
			return nil, badRequest("Invalid Input")
		}
	}
	return func(u *user) bool {
		for _, t := range tests {
			if !t(u) {
				return false
			}
		}
		return true
	}, nil
}

// splitTerms splits on spaces outside quotes, so orgUnitPath='/A B' is one term.
func splitTerms(q string) []string {
	var terms []string
	var cur strings.Builder
	quote := rune(0)
	for _, c := range q {
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '\'' || c == '"'):
			quote = c
		case quote == 0 && c == ' ':
			if cur.Len() > 0 {
				terms = append(terms, cur.String())
				cur.Reset()
			}
			continue
		}
		cur.WriteRune(c)
	}
	if cur.Len() > 0 {
		terms = append(terms, cur.String())
	}
	return terms
}

func etag(n int) string { return fmt.Sprintf(`"sandbox-%d"`, n) }

func badRequest(format string, args ...any) *gmailapi.Error {
	return &gmailapi.Error{Code: http.StatusBadRequest, Status: "INVALID_ARGUMENT", Reason: "invalid", Message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *gmailapi.Error {
	return &gmailapi.Error{Code: http.StatusNotFound, Status: "NOT_FOUND", Reason: "notFound", Message: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	b, _ := v.(interface{ MarshalJSON() ([]byte, error) }).MarshalJSON()
	_, _ = w.Write(b)
}
