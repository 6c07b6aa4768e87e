package directory

import (
	"net/http"
	"strings"
	"time"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
)

// RenameUser changes a user's primary address, as an admin's "Update user"
// does: the user keeps its id, and the old address becomes an alias
// (https://knowledge.workspace.google.com/kb/switch-existing-email-alias-to-primary-email-address-000007487),
// which the sandbox does not serve: the token endpoint acts only for the
// new address. Searches see the change after the search lag.
func (s *Server) RenameUser(from, to string) error {
	from, to = strings.ToLower(strings.TrimSpace(from)), strings.ToLower(strings.TrimSpace(to))
	if !s.inDomain(to) {
		return badRequest("%s is not an address of %s", to, s.domain)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[from]
	if !ok {
		return notFound("Resource Not Found: userKey")
	}
	if _, taken := s.users[to]; taken {
		return &gmailapi.Error{Code: http.StatusConflict, Status: "ALREADY_EXISTS", Reason: "duplicate", Message: "Entity already exists."}
	}
	s.changing(from, u)
	s.changing(to, nil)
	delete(s.users, from)
	u.email = to
	s.users[to] = u
	for _, m := range s.groups {
		if m[from] {
			delete(m, from)
			m[to] = true
		}
	}
	return nil
}

// SetNewUserLag makes the token endpoint refuse to act for a user created
// from now on, until it is d old, with invalid_grant, as Google may while a
// new account propagates: "Mutate calls immediately following user
// creation might sometimes fail as the user isn't fully created due to
// propagation delay in our backends"
// (https://developers.google.com/workspace/admin/directory/reference/rest/v1/users/insert).
// 0, the default, accepts a user at once.
func (s *Server) SetNewUserLag(d time.Duration) {
	s.mu.Lock()
	s.newUserLag, s.lagFrom = d, s.now()
	s.mu.Unlock()
}
