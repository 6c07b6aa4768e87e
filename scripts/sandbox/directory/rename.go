package directory

import (
	"net/http"
	"strings"

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
