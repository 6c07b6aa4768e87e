package accounts

import (
	"errors"
	"net/http"
	"regexp"

	"github.com/gmailwatch/gmailwatch/shared/store"
)

// resultRequest is the body of POST /connect-results.
type resultRequest struct {
	Result string `json:"result"` // the one-time code the browser brought back to successUrl
}

// resultCode is the shape of a result code: 32 random bytes, base64url.
var resultCode = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// Reasons a redeem is refused, in the error body.
const (
	reasonResultUnknown     = "result_unknown"
	reasonResultRedeemed    = "result_redeemed"
	reasonResultExpired     = "result_expired"
	reasonResultSuperseded  = "result_superseded"
	reasonResultOtherCaller = "result_other_caller"
)

// redeem confirms the connection a link's flow left pending, once, and
// answers the account; only the caller that asked for the link may (any
// listed caller, for a link its backend signed). A move takes effect here: the previous reference gets
// gmail.user.disconnected first. Then gmail.user.connected goes out, and a
// sync announces the mail that arrived since the consent (the renew run's
// safety net does, should it fail here).
func (h *Handler) redeem(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req resultRequest
	if !decode(w, r, &req) {
		return
	}
	if !resultCode.MatchString(req.Result) {
		fail(w, http.StatusBadRequest, "result must be the code the browser brought back to successUrl (43 characters, base64url)")
		return
	}
	id := store.ResultID(req.Result)
	res, u, err := h.users.PeekResult(ctx, id)
	if h.redeemRefused(w, r, err) {
		return
	}
	if res.Caller != "" && res.Caller != caller(r) {
		// Another backend allowed to call the API: the code is not its to redeem.
		failWhy(w, http.StatusForbidden, reasonResultOtherCaller, "this result belongs to a link another caller asked for: only that caller may redeem it")
		return
	}
	if u.Connected() && u.AppRef != res.AppRef {
		// The move ends the connection under the previous reference, which
		// hears of it before anything is published under the new one.
		if err := h.life.Moved(ctx, u); err != nil {
			h.internal(w, r, err)
			return
		}
	}
	_, u, err = h.users.Redeem(ctx, id)
	if h.redeemRefused(w, r, err) {
		return
	}
	eventID, err := h.life.Announce(ctx, u)
	if err != nil {
		h.log.ErrorContext(ctx, "connected event not published; the record owes it", "user", u.Key, "error", err)
	}
	h.log.InfoContext(ctx, "connection confirmed", "user", u.Key, "eventId", eventID)
	if _, err := h.syncer.Sync(ctx, u.Key); err != nil {
		h.log.WarnContext(ctx, "sync after confirmation failed; the safety net is due", "user", u.Key, "error", err)
	}
	if fresh, err := h.users.Get(ctx, u.Key); err == nil {
		u = fresh
	}
	reply(w, http.StatusOK, h.view(u))
}

// redeemRefused answers a redeem that cannot be done, and reports whether
// it did.
func (h *Handler) redeemRefused(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrResultNotFound):
		failWhy(w, http.StatusNotFound, reasonResultUnknown, "no such result: the code is not one a connection returned, or it lapsed a day ago")
	case errors.Is(err, store.ErrResultRedeemed):
		failWhy(w, http.StatusConflict, reasonResultRedeemed, "this result was already redeemed: a code works once")
	case errors.Is(err, store.ErrResultExpired):
		failWhy(w, http.StatusGone, reasonResultExpired, "this result expired before it was redeemed (CONNECT_RESULT_TTL): the connection was withdrawn")
	case errors.Is(err, store.ErrResultSuperseded):
		failWhy(w, http.StatusGone, reasonResultSuperseded, "this result no longer confirms the account: a later connection or a disconnect replaced it")
	default:
		h.internal(w, r, err)
	}
	return true
}
