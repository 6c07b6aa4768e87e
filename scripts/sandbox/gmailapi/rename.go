package gmailapi

import "net/http"

// RenameMailbox gives the mailbox of from the address to, as when its owner
// changes a Gmail address or a Workspace admin renames a user: the mailbox,
// its history and its watch stay, getProfile and every later notification
// name the new address
// (https://knowledge.workspace.google.com/kb/switch-existing-email-alias-to-primary-email-address-000007487:
// the old primary address becomes an alias). Quota, fault and notification
// counters stay under the old address. The old address answers as unknown.
func (s *Server) RenameMailbox(from, to string) error {
	old, e := normalizeEmail(from)
	if e != nil {
		return e
	}
	addr, e := normalizeEmail(to)
	if e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mb, e := s.lookup(old)
	if e != nil {
		return e
	}
	if _, taken := s.mailboxes[addr]; taken {
		return &Error{http.StatusConflict, "ALREADY_EXISTS", "duplicate", "mailbox " + addr + " already exists", ""}
	}
	delete(s.mailboxes, old)
	mb.email = addr
	s.mailboxes[addr] = mb
	return nil
}
