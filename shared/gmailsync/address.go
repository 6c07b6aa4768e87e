package gmailsync

import (
	"context"
	"strings"

	"google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/shared/store"
)

// noteAddress keeps u's recorded address what the mailbox's own profile
// says, so a user whose address changed (a Gmail address change, a
// Workspace rename) keeps getting its pushes, which name the mailbox by
// address. The address comes only from getProfile through u's own
// credentials, never from a push: a push naming some address cannot move
// that address onto a record, so no push ever has one user's mailbox read
// under another user's record. Pushes kept while no record had the new
// address (store.KeepStray) are then u's: the newest is recorded as
// pending, up to the profile's history id (current, the mailbox's own
// word), so the sync reads up to it.
func (s *Syncer) noteAddress(ctx context.Context, u store.User, profile string, current int64) error {
	addr := strings.ToLower(strings.TrimSpace(profile))
	if addr == "" || addr == u.Email {
		return nil
	}
	moved := false
	_, err := s.users.Update(ctx, u.Key, func(v *store.User) error {
		if moved = v.Email == u.Email; !moved {
			return store.ErrNoChange // another sync saw it first
		}
		v.Email = addr
		return nil
	})
	if err != nil || !moved {
		return err
	}
	s.log.InfoContext(ctx, "mailbox address changed", "user", u.Key)
	h, err := s.users.TakeStray(ctx, addr)
	if err != nil || h == 0 {
		return err
	}
	return s.users.RaisePending(ctx, u.Key, min(h, current), s.now())
}

// CheckAddress reads the mailbox profile of the user with key (1 unit)
// and keeps the record's address what it says; the renew run calls it
// while pushes naming no recorded address wait (store.HasStrays). It
// returns the quota units spent.
func (s *Syncer) CheckAddress(ctx context.Context, key string) (int, error) {
	u, err := s.users.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	m := &meter{}
	err = s.gmail.Do(ctx, u, func(svc *gmail.Service) error {
		_, err := s.profileID(ctx, svc, u, m)
		return err
	})
	return int(m.units.Load()), err
}
