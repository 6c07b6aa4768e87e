package consent

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/store"
)

// ConfirmPath is where the disconnect confirmation posts.
const ConfirmPath = "/disconnect/confirm"

// confirmTTL is how long a confirmation page may wait for its click.
const confirmTTL = 10 * time.Minute

// confirmation is what the confirmation form carries: the address the user
// just signed in with, bound by the state key's signature, and a nonce that
// makes it single-use.
type confirmation struct {
	Key     string `json:"k"`
	Email   string `json:"m"`
	Nonce   string `json:"n"`
	Expires int64  `json:"e"`
}

func confirmMAC(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("gmailwatch disconnect confirmation\x00" + payload))
	return m.Sum(nil)
}

// confirmDisconnect shows the signed-in user what a disconnect does, and a
// form whose POST does it; nothing changes until then.
func (h *Handler) confirmDisconnect(ctx context.Context, id identity, userKey string) (result, error) {
	keys, err := h.stateKeys.Get(ctx)
	if err != nil {
		return result{}, err
	}
	body, _ := json.Marshal(confirmation{Key: userKey, Email: id.Email, Nonce: newNonce(), Expires: h.now().Add(confirmTTL).Unix()})
	payload := base64.RawURLEncoding.EncodeToString(body)
	token := payload + "." + base64.RawURLEncoding.EncodeToString(confirmMAC(keys[0], payload))
	return result{page: pageConfirm, data: pageData{Email: id.Email, Token: token, Action: h.cfg.PublicURL + ConfirmPath}}, nil
}

// confirm handles the confirmation's POST: from this site only, with a
// token this function issued, unexpired and unused, for the address it names.
func (h *Handler) confirm(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	refuse := func(status int, reason string) {
		h.log.WarnContext(ctx, "disconnect refused", "reason", reason, "status", status)
		h.render(w, pageError, status, pageData{Message: "This confirmation is invalid, has expired or was already used. Please start again.",
			Retry: h.cfg.PublicURL + "/disconnect"})
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		refuse(http.StatusForbidden, "cross-site request")
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" && origin != h.origin {
		refuse(http.StatusForbidden, "cross-site request")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") || r.ParseForm() != nil {
		refuse(http.StatusBadRequest, "not a form")
		return
	}
	keys, err := h.stateKeys.Get(ctx)
	if err != nil {
		h.log.ErrorContext(ctx, "disconnect failed", "error", err)
		h.render(w, pageError, http.StatusInternalServerError, pageData{Message: "Something failed on our side. Please start again in a minute."})
		return
	}
	payload, sig, _ := strings.Cut(r.PostForm.Get("token"), ".")
	mac, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	var c confirmation
	body, berr := base64.RawURLEncoding.DecodeString(payload)
	switch {
	case err != nil || !signedBy(keys, mac, confirmMAC, payload):
		refuse(http.StatusBadRequest, "confirmation signature invalid")
		return
	case berr != nil || json.Unmarshal(body, &c) != nil || c.Key == "" || c.Nonce == "":
		refuse(http.StatusBadRequest, "confirmation unreadable")
		return
	case !h.now().Before(time.Unix(c.Expires, 0)):
		refuse(http.StatusBadRequest, "confirmation expired")
		return
	}
	if err := h.users.UseState(ctx, c.Nonce, "confirm", time.Unix(c.Expires, 0)); err != nil {
		if errors.Is(err, store.ErrStateUsed) {
			refuse(http.StatusBadRequest, "confirmation replayed")
			return
		}
		h.log.ErrorContext(ctx, "disconnect failed", "error", err)
		h.render(w, pageError, http.StatusInternalServerError, pageData{Message: "Something failed on our side. Please start again in a minute."})
		return
	}
	found, delegated, err := h.disconnect.ByUser(ctx, c.Key)
	if err != nil {
		h.log.ErrorContext(ctx, "disconnect failed", "error", err)
		h.render(w, pageError, http.StatusInternalServerError, pageData{Message: "Something failed on our side. Please start again in a minute."})
		return
	}
	h.render(w, pageDisconnected, http.StatusOK, pageData{Email: c.Email, NotFound: !found, Domain: delegated})
}

// originOf returns the scheme://host of a URL.
func originOf(raw string) string {
	u, _ := url.Parse(raw)
	return u.Scheme + "://" + u.Host
}
