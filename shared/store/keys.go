package store

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// MinUserKeyBytes is the shortest user-key secret accepted.
const MinUserKeyBytes = 32

// Keyer derives user keys from Google's stable account id (the ID token's
// sub) with a keyed hash: an address can change, an account id cannot, and
// without the secret nobody can tell from a document id or a secret name
// whether an account is connected.
type Keyer struct{ secret []byte }

// NewKeyer returns a Keyer over secret (USER_KEY_SECRET_NAME in Secret Manager).
func NewKeyer(secret []byte) (Keyer, error) {
	if len(secret) < MinUserKeyBytes {
		return Keyer{}, fmt.Errorf("user key secret: shorter than %d bytes", MinUserKeyBytes)
	}
	return Keyer{secret: secret}, nil
}

// Key returns the user key of the Google account sub: 32 hex digits, the
// same shape as the address-derived keys it replaces.
func (k Keyer) Key(sub string) string {
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte("gmailwatch user\x00" + sub))
	return hex.EncodeToString(m.Sum(nil)[:16])
}
