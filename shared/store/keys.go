package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MinUserKeyBytes is the shortest user-key secret accepted.
const MinUserKeyBytes = 32

// Keyer derives user keys from Google's stable account id (the ID token's
// sub) with a keyed hash: an address can change, an account id cannot, and
// without the secret nobody can tell from a document id or a secret name
// whether an account is connected.
type Keyer struct{ secrets [][]byte }

// NewKeyer returns a Keyer over the secrets of USER_KEY_SECRET_NAME in
// Secret Manager, newest first: across a rotation (scripts/set-secrets.sh
// --rotate) a record keyed with an older one keeps its key (KeyOf) until
// scripts/migrate-keys moves it to the newest.
func NewKeyer(secrets ...[]byte) (Keyer, error) {
	if len(secrets) == 0 {
		return Keyer{}, errors.New("user key secret: empty")
	}
	for i, s := range secrets {
		if len(s) < MinUserKeyBytes {
			return Keyer{}, fmt.Errorf("user key secret: key %d of %d is shorter than %d bytes", i+1, len(secrets), MinUserKeyBytes)
		}
	}
	return Keyer{secrets: secrets}, nil
}

// Key returns the user key of the Google account sub under the newest
// secret: 32 hex digits, the same shape as the address-derived keys it
// replaces.
func (k Keyer) Key(sub string) string { return keyOf(k.secrets[0], sub) }

// Keys returns the user keys of sub under every secret, newest first.
func (k Keyer) Keys(sub string) []string {
	out := make([]string, len(k.secrets))
	for i, s := range k.secrets {
		out[i] = keyOf(s, sub)
	}
	return out
}

// AddressKey returns the key of a legacy record whose Google account id is
// not known (its token no longer works, or Google's tokeninfo did not name
// the account): a keyed hash of the address, so neither its document id nor
// its secret's name tells whether the address is connected, as the plain
// hash (Key) did. It never equals a Key of an account id.
func (k Keyer) AddressKey(email string) string {
	return keyOf(k.secrets[0], "address\x00"+strings.ToLower(strings.TrimSpace(email)))
}

func keyOf(secret []byte, sub string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("gmailwatch user\x00" + sub))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// KeyOf returns the key of account sub's record: the one under the newest
// secret, unless the account has a record only under an older one (one
// scripts/migrate-keys has not moved yet). With one secret it reads nothing.
func (s *Store) KeyOf(ctx context.Context, k Keyer, sub string) (string, error) {
	keys := k.Keys(sub)
	if len(keys) == 1 {
		return keys[0], nil
	}
	for _, key := range keys {
		u, err := s.Get(ctx, key)
		switch {
		case err == nil && u.MovedTo == "":
			return key, nil
		case err != nil && !errors.Is(err, ErrNotFound):
			return "", err
		}
	}
	return keys[0], nil
}
