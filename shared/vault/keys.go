package vault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// KeysCacheTTL is how long keys read from Secret Manager are used before
// they are read again, so a rotation reaches every instance within minutes
// without a redeploy.
const KeysCacheTTL = 5 * time.Minute

// Source returns the latest value of a secret; *Vault is one.
type Source interface {
	Access(ctx context.Context, id string) ([]byte, error)
}

// Keys is one of the system's own keys in Secret Manager: one key or, across
// a rotation, several separated by whitespace, newest first, as
// scripts/set-secrets.sh --rotate writes them. New values are signed with
// the newest; what was signed with any of them still verifies.
type Keys struct {
	src  Source
	name string
	min  int
	now  func() time.Time

	mu   sync.Mutex
	keys [][]byte
	at   time.Time
}

// NewKeys returns the keys of secret name, each at least min bytes; now is
// the cache's clock (nil: time.Now).
func NewKeys(src Source, name string, min int, now func() time.Time) *Keys {
	if now == nil {
		now = time.Now
	}
	return &Keys{src: src, name: name, min: min, now: now}
}

// Get returns the keys, newest first, read again once KeysCacheTTL has
// passed. If reading them again fails, the keys read before are kept (and
// read again at the next call); the first read's failure is returned, a
// missing secret as ErrNotFound.
func (k *Keys) Get(ctx context.Context) ([][]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys != nil && k.now().Sub(k.at) < KeysCacheTTL {
		return k.keys, nil
	}
	keys, err := k.read(ctx)
	switch {
	case err == nil:
		k.keys, k.at = keys, k.now()
	case k.keys != nil:
		return k.keys, nil
	}
	return keys, err
}

func (k *Keys) read(ctx context.Context) ([][]byte, error) {
	b, err := k.src.Access(ctx, k.name)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", k.name, err)
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return nil, fmt.Errorf("key %s: %w", k.name, errors.New("empty"))
	}
	keys := make([][]byte, len(fields))
	for i, f := range fields {
		if len(f) < k.min {
			return nil, fmt.Errorf("key %s: key %d of %d is shorter than %d bytes", k.name, i+1, len(fields), k.min)
		}
		keys[i] = []byte(f)
	}
	return keys, nil
}
