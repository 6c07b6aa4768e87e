package consent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/connectlink"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

// maxLinkBytes caps a link token in a URL: a signed one carries two return
// URLs of at most connectlink.MaxURL bytes.
const maxLinkBytes = 4096

// resolveLink returns the link a token stands for, as it was at `at`: a
// link made by the accounts API, or one signed with the shared key. An
// expired or used link comes back with its error, so the browser can be
// sent to its error URL; a forged or unknown one comes back empty.
func (h *Handler) resolveLink(ctx context.Context, token string, at time.Time) (store.Link, error) {
	if len(token) > maxLinkBytes {
		return store.Link{}, connectlink.ErrForged
	}
	if connectlink.IsSigned(token) {
		keys, err := h.linkKeys.Get(ctx)
		if errors.Is(err, vault.ErrNotFound) {
			return store.Link{}, fmt.Errorf("%w: this deployment has no signed-link key", connectlink.ErrForged)
		}
		if err != nil {
			return store.Link{}, err
		}
		return h.cfg.Links.Verify(keys, token, at)
	}
	l, err := h.users.Link(ctx, connectlink.TokenID(token))
	switch {
	case errors.Is(err, store.ErrLinkNotFound):
		return store.Link{}, err
	case err != nil:
		return store.Link{}, err
	case !l.UsedAt.IsZero():
		return l, store.ErrLinkUsed
	case !at.Before(l.Expires):
		return l, connectlink.ErrExpired
	case h.cfg.Links.Confirm && l.SuccessURL == "":
		// made while CONNECT_CONFIRM was off: its result would reach no one
		return store.Link{}, connectlink.Problems{"the link has no successUrl for its result code"}
	}
	return l, nil
}

// linkRefusal turns a link's problem into a refusal, or passes on a failure
// on our side.
func linkRefusal(err error) error {
	var probs connectlink.Problems
	switch {
	case errors.Is(err, store.ErrLinkUsed):
		return &refusal{pageError, http.StatusBadRequest, "This link was already used. Please ask the application for a new one.", "link used", codeLinkUsed}
	case errors.Is(err, store.ErrLinkBound):
		return &refusal{pageError, http.StatusForbidden, "This link was already opened in another browser, so it does nothing here and nothing was connected. " +
			"Open it in the browser you first used, or ask the application for a new link.", "link opened in another browser", "link_elsewhere"}
	case errors.Is(err, connectlink.ErrExpired):
		return &refusal{pageError, http.StatusBadRequest, "This link has expired. Please ask the application for a new one.", "link expired", codeLinkExpired}
	case errors.Is(err, store.ErrLinkNotFound), errors.Is(err, connectlink.ErrForged), errors.As(err, &probs):
		return &refusal{pageError, http.StatusBadRequest, "This link is not valid. Please start again from the application.", "link invalid: " + clip(err.Error()), "link_invalid"}
	}
	return err
}

// refuseLink answers a /connect whose link cannot be used: back to the
// link's error URL when the link is genuine, else a page.
func (h *Handler) refuseLink(w http.ResponseWriter, r *http.Request, l store.Link, err error) {
	ctx := r.Context()
	var ref *refusal
	if !errors.As(linkRefusal(err), &ref) {
		h.log.ErrorContext(ctx, "flow not started", "flow", flowConnect, "error", err)
		h.render(w, pageError, http.StatusInternalServerError, pageData{Message: "The service cannot start a sign-in right now. Please try again later."})
		return
	}
	h.log.WarnContext(ctx, "flow refused", "flow", flowConnect, "reason", ref.reason)
	if l.ErrorURL != "" {
		h.goBack(w, l.ErrorURL, url.Values{"outcome": {"error"}, "reason": {ref.code}})
		return
	}
	h.render(w, ref.page, ref.status, pageData{Message: ref.msg})
}

// browserCookieAge is how long a browser's binding cookie lasts: as long as
// the longest link it may be bound to.
var browserCookieAge = int(connectlink.MaxTTL.Seconds())

// bindBrowser ties a link to the browser opening it, by a random cookie
// (set on the first open; only a hash of it is stored): a link already
// opened by another browser fails with store.ErrLinkBound.
func (h *Handler) bindBrowser(w http.ResponseWriter, r *http.Request, l store.Link) error {
	value := ""
	if c, err := r.Cookie(h.browser.Name); err == nil && len(c.Value) == 43 && strings.Trim(c.Value, base64URL) == "" {
		value = c.Value
	}
	fresh := value == ""
	if fresh {
		value = newNonce()
	}
	sum := sha256.Sum256([]byte("browser\x00" + value))
	if err := h.users.BindLink(r.Context(), l, hex.EncodeToString(sum[:])); err != nil {
		return err
	}
	if fresh {
		c := h.browser
		c.Value, c.MaxAge = value, browserCookieAge
		http.SetCookie(w, &c)
	}
	return nil
}

const base64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
