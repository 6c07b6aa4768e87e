package gmailsync

import (
	"context"
	"errors"
	"fmt"

	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// Refused decides what Google's refusal of a user's credentials (err, for
// which gmailclient.IsInvalidGrant holds) means, and reports whether it
// stands: the user is now reauth_required (or no longer active).
//
// A consented user's refresh token that Google refuses was revoked or has
// expired, and a withdrawn delegation (gmailclient.ErrDelegationRefused) is
// the admin's act: either stands at once. A delegated user's invalid_grant
// is also what Google answers for a user created minutes ago, whose account
// has not reached every backend yet (the Directory API's users.insert:
// "Mutate calls immediately following user creation might sometimes fail
// ... due to propagation delay", https://developers.google.com/workspace/admin/directory/reference/rest/v1/users/insert),
// or for an assertion signed by a clock running ahead of Google's. So it is
// counted, and stands only once it came RefusalTries times over at least
// RefusalGrace with no sync succeeding in between (a sync that works clears
// the count); until then the caller treats it as worth a retry.
func (s *Syncer) Refused(ctx context.Context, key string, err error) (bool, error) {
	u, gerr := s.users.Get(ctx, key)
	if gerr != nil {
		return false, gerr
	}
	if u.Status != store.Active {
		return true, nil
	}
	if u.Delegated && !errors.Is(err, gmailclient.ErrDelegationRefused) {
		var stands bool
		now := s.now()
		_, uerr := s.users.Update(ctx, key, func(v *store.User) error {
			stands = v.Status != store.Active
			if stands {
				return store.ErrNoChange
			}
			if v.Refusals == 0 {
				v.RefusedSince = now
			}
			v.Refusals++
			stands = v.Refusals >= s.set.RefusalTries && now.Sub(v.RefusedSince) >= s.set.RefusalGrace
			return nil
		})
		if uerr != nil {
			return false, fmt.Errorf("refusal of %s: %w", key, uerr)
		}
		if !stands {
			s.log.WarnContext(ctx, "delegated user refused, tried again", "user", key, "error", err)
			return false, nil
		}
	}
	if _, err := s.MarkReauth(ctx, key); err != nil {
		return false, err
	}
	return true, nil
}
