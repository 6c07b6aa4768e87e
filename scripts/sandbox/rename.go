package sandbox

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
)

// RenameMailbox changes the address of a mailbox and of the Google account
// that signs in to it (and of its directory user, in a Workspace sandbox),
// as a Gmail address change or a Workspace admin's rename does: the
// account's id (sub), its grants and the mailbox's history and watch stay;
// getProfile and later pushes name the new address.
func (s *Sandbox) RenameMailbox(from, to string) error {
	if err := s.Gmail.RenameMailbox(from, to); err != nil {
		return err
	}
	if s.Directory != nil {
		var ge *gmailapi.Error
		if err := s.Directory.RenameUser(from, to); err != nil && !(errors.As(err, &ge) && ge.Code == http.StatusNotFound) {
			_ = s.Gmail.RenameMailbox(to, from)
			return err
		}
	}
	if !s.Auth.RenameAccount(from, to) {
		return fmt.Errorf("sandbox rename: the account of %s did not move to %s", lowerTrim(from), lowerTrim(to))
	}
	return nil
}

// renameMailbox is POST /admin/rename {"from": ..., "to": ...}.
func (s *Sandbox) renameMailbox(r *http.Request) (int, any, error) {
	var req struct {
		From string `json:"from"`
		To   string `json:"to"`
	}
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if req.From == "" || req.To == "" {
		return 0, nil, badRequest("from and to are required")
	}
	if err := s.RenameMailbox(req.From, req.To); err != nil {
		return 0, nil, err
	}
	h, _ := s.Gmail.HistoryID(req.To)
	return http.StatusOK, mailboxInfo{lowerTrim(req.To), h}, nil
}
