// Package webhooksig signs and verifies webhook requests per the Standard
// Webhooks specification (https://www.standardwebhooks.com): HMAC-SHA256 over
// "id.timestamp.body" with whsec_ secrets, sent in the webhook-id,
// webhook-timestamp and webhook-signature headers. During key rotation the
// secret holds several keys separated by whitespace; a request is then signed
// with each and verifies with any.
package webhooksig

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Header names defined by the specification.
const (
	HeaderID        = standardwebhooks.HeaderWebhookID
	HeaderTimestamp = standardwebhooks.HeaderWebhookTimestamp
	HeaderSignature = standardwebhooks.HeaderWebhookSignature
)

// Errors a verification can report, for errors.Is.
var (
	ErrNoMatch      = standardwebhooks.ErrNoMatchingSignature
	ErrTooOld       = standardwebhooks.ErrMessageTooOld
	ErrTooNew       = standardwebhooks.ErrMessageTooNew
	ErrMissing      = standardwebhooks.ErrRequiredHeaders
	ErrBadTimestamp = standardwebhooks.ErrInvalidHeaders
)

const prefix = "whsec_"

// Keyring holds one or more signing keys.
type Keyring struct {
	keys []*standardwebhooks.Webhook
}

// Parse reads whitespace-separated whsec_ secrets. Each must be the prefix
// followed by standard base64 of 24 to 64 random bytes. Errors name the
// position of a bad key, never its value.
func Parse(secrets string) (*Keyring, error) {
	fields := strings.Fields(secrets)
	if len(fields) == 0 {
		return nil, errors.New("webhook secret: empty")
	}
	k := &Keyring{}
	for i, f := range fields {
		raw, ok := strings.CutPrefix(f, prefix)
		if !ok {
			return nil, fmt.Errorf("webhook secret key %d of %d: missing %s prefix", i+1, len(fields), prefix)
		}
		key, err := base64.StdEncoding.DecodeString(raw)
		if err != nil {
			return nil, fmt.Errorf("webhook secret key %d of %d: not standard base64", i+1, len(fields))
		}
		if len(key) < 24 || len(key) > 64 {
			return nil, fmt.Errorf("webhook secret key %d of %d: %d bytes, want 24 to 64", i+1, len(fields), len(key))
		}
		wh, err := standardwebhooks.NewWebhookRaw(key)
		if err != nil {
			return nil, fmt.Errorf("webhook secret key %d of %d: %w", i+1, len(fields), err)
		}
		k.keys = append(k.keys, wh)
	}
	return k, nil
}

// Sign returns the webhook-signature header value for a message: one
// "v1,<base64>" signature per key, separated by spaces. The id must not be
// empty or contain a full stop, which would make the signed content ambiguous.
func (k *Keyring) Sign(id string, ts time.Time, body []byte) (string, error) {
	if id == "" || strings.Contains(id, ".") {
		return "", fmt.Errorf("webhook id %q: must be non-empty without '.'", id)
	}
	sigs := make([]string, len(k.keys))
	for i, wh := range k.keys {
		s, err := wh.Sign(id, ts, body)
		if err != nil {
			return "", fmt.Errorf("sign webhook %s: %w", id, err)
		}
		sigs[i] = s
	}
	return strings.Join(sigs, " "), nil
}

// Header returns the three Standard Webhooks headers for a message sent at ts.
func (k *Keyring) Header(id string, ts time.Time, body []byte) (http.Header, error) {
	sig, err := k.Sign(id, ts, body)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, sig)
	return h, nil
}

// Verify checks that header carries a signature of body by any key and a
// timestamp within five minutes of now (the specification's tolerance).
func (k *Keyring) Verify(body []byte, header http.Header) error {
	var err error
	for _, wh := range k.keys {
		if err = wh.Verify(body, header); err == nil || !errors.Is(err, ErrNoMatch) {
			return err
		}
	}
	return err
}
