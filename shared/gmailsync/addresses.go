package gmailsync

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/store"
)

// addresses remembers, per address, the key of the active user a push of
// it last found, so the next push reads that record by key (a get) rather
// than querying by address; both are one billed read, the get is the
// quicker. A remembered key is used only while its record is active and
// still has the address, and only for addressTTL: an address that moved
// to another Google account (a new record, a new key) is found by the
// query again within that time, and meanwhile the safety net covers it.
type addresses struct {
	mu   sync.Mutex
	keys map[string]remembered
	now  func() time.Time
}

type remembered struct {
	key string
	at  time.Time
}

const (
	addressTTL   = time.Minute
	addressLimit = 10_000 // entries an instance keeps; the map starts again when full
)

// user returns the active record of email's user: by the remembered key
// when it still fits, else by the store's query.
func (a *addresses) user(ctx context.Context, users *store.Store, email string) (store.User, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	a.mu.Lock()
	r, ok := a.keys[email]
	a.mu.Unlock()
	if ok && a.now().Sub(r.at) < addressTTL {
		u, err := users.Get(ctx, r.key)
		if err == nil && u.Status == store.Active && u.Email == email {
			return u, nil
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return u, err
		}
	}
	u, err := users.ByEmail(ctx, email)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err == nil && u.Status == store.Active:
		if a.keys == nil || len(a.keys) >= addressLimit {
			a.keys = map[string]remembered{}
		}
		a.keys[email] = remembered{u.Key, a.now()}
	case err == nil || errors.Is(err, store.ErrNotFound):
		delete(a.keys, email)
	}
	return u, err
}
