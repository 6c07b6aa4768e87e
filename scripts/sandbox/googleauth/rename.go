package googleauth

import "strings"

// RenameAccount gives the account signing in as from the address to: its
// grants and tokens stay valid and act for the new address, and its sub
// stays what it was, as Google's account id does when an address changes.
// It reports false when from is not an account or to already is one.
func (s *Server) RenameAccount(from, to string) bool {
	from, to = strings.ToLower(from), strings.ToLower(to)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.accounts[from] || s.accounts[to] {
		return false
	}
	sub := s.subjectOf(from)
	delete(s.accounts, from)
	s.accounts[to] = true
	if hd, ok := s.hosted[from]; ok {
		delete(s.hosted, from)
		s.hosted[to] = hd
	}
	delete(s.subjects, from)
	s.subjects[to] = sub
	for _, g := range s.refresh {
		s.move(g, from, to)
	}
	for _, a := range s.access {
		s.move(a.grant, from, to)
	}
	for _, c := range s.codes {
		if c.email == from {
			c.email = to
		}
	}
	return true
}

// move readdresses g from from to to; s.mu must be held.
func (s *Server) move(g *grant, from, to string) {
	if g.email != from {
		return
	}
	if scopes, ok := s.consented[[2]string{g.clientID, from}]; ok {
		delete(s.consented, [2]string{g.clientID, from})
		s.consented[[2]string{g.clientID, to}] = scopes
	}
	g.email = to
}

// subjectOf returns the account's sub; s.mu must be held.
func (s *Server) subjectOf(email string) string {
	if sub, ok := s.subjects[email]; ok {
		return sub
	}
	return subject(email)
}
