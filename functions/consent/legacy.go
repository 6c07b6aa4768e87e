package consent

import (
	"context"
	"errors"

	"github.com/gmailwatch/gmailwatch/shared/store"
)

// legacyReconnect lets a legacy account (a record keyed by its address,
// that scripts/migrate-keys has not moved yet, so its key is not the one
// its account id gives) complete that record's reconnect link: it
// reconnects under its account id's key, keeping the link's reference, and
// migrate-keys then removes the legacy record. Any other link is returned
// as it is.
func (h *Handler) legacyReconnect(ctx context.Context, l *store.Link, key, email string) (*store.Link, error) {
	if l == nil || l.Reconnect == "" || l.Reconnect == key {
		return l, nil
	}
	u, err := h.users.Get(ctx, l.Reconnect)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return l, nil
	case err != nil:
		return l, err
	case u.Sub != "" || u.MovedTo != "" || u.Email != email:
		return l, nil
	}
	reconnect := *l
	reconnect.Reconnect = key
	return &reconnect, nil
}
