package accounts

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/connectlink"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// maxBody caps a request body; a link request is well under 4 KiB.
const maxBody = 16 << 10

// linkRequest is the body of POST /connect-links.
type linkRequest struct {
	connectlink.Request
	ExpiresInSeconds int `json:"expiresInSeconds,omitempty"` // default CONNECT_LINK_TTL
}

// linkResponse is a link made.
type linkResponse struct {
	URL       string `json:"url"`
	ExpiresAt string `json:"expiresAt"`
}

// DomainOnlyReason is the error reason of a link asked for in
// delegation-only mode.
const DomainOnlyReason = "delegation_only"

// linksRefused answers a link request with 409 in delegation-only mode,
// before its body is read (no one could ever use the link), and reports
// whether it did.
func (h *Handler) linksRefused(w http.ResponseWriter) bool {
	if h.cfg.Delegation == nil || !h.cfg.Delegation.Only { // CONNECT_MODE delegation: no one connects by consent
		return false
	}
	failWhy(w, http.StatusConflict, DomainOnlyReason, "no account connects by consent here: this deployment watches the mailboxes of its "+
		"Google Workspace domain through domain-wide delegation (CONNECT_MODE=delegation), so it makes no connect or reconnect links")
	return true
}

func (h *Handler) createLink(w http.ResponseWriter, r *http.Request) {
	if h.linksRefused(w) {
		return
	}
	var req linkRequest
	if !decode(w, r, &req) {
		return
	}
	h.makeLink(w, r, req.Request, req.ExpiresInSeconds, "")
}

// reconnectRequest is the body of POST /accounts/{user}/reconnect-link.
type reconnectRequest struct {
	SuccessURL       string `json:"successUrl,omitempty"`
	ErrorURL         string `json:"errorUrl,omitempty"`
	ExpiresInSeconds int    `json:"expiresInSeconds,omitempty"`
}

// reconnectLink makes a link that only the account's own Google account can
// complete, keeping its reference.
func (h *Handler) reconnectLink(w http.ResponseWriter, r *http.Request) {
	if h.linksRefused(w) {
		return
	}
	u, ok := h.account(w, r)
	if !ok {
		return
	}
	var req reconnectRequest
	if !decode(w, r, &req) {
		return
	}
	if u.Status != store.ReauthRequired {
		fail(w, http.StatusConflict, fmt.Sprintf("account is %s: only a reauth_required account gets a reconnect link", u.Status))
		return
	}
	h.makeLink(w, r, connectlink.Request{AppRef: u.AppRef, ExpectedAddress: u.Email, SuccessURL: req.SuccessURL, ErrorURL: req.ErrorURL},
		req.ExpiresInSeconds, u.Key)
}

func (h *Handler) makeLink(w http.ResponseWriter, r *http.Request, req connectlink.Request, seconds int, reconnect string) {
	ttl := h.cfg.LinkTTL
	if seconds != 0 {
		ttl = time.Duration(seconds) * time.Second
	}
	if ttl < time.Minute || ttl > connectlink.MaxTTL {
		fail(w, http.StatusBadRequest, fmt.Sprintf("invalid connect link: expiresInSeconds must be %d..%d", 60, int(connectlink.MaxTTL.Seconds())))
		return
	}
	checked := req
	if reconnect != "" && req.AppRef == "" {
		checked.AppRef = reconnect // connected without a link: no reference to keep, the key passes the check
	}
	l, err := h.cfg.Links.Check(checked, h.now().Add(ttl))
	var probs connectlink.Problems
	if errors.As(err, &probs) {
		fail(w, http.StatusBadRequest, err.Error())
		return
	}
	token, id := connectlink.NewToken()
	l.ID, l.Reconnect, l.AppRef = id, reconnect, req.AppRef // a reconnect keeps the account's own reference, even none
	l.Caller = caller(r)                                    // the only caller that may redeem its result
	if err := h.users.CreateLink(r.Context(), l); err != nil {
		h.internal(w, r, err)
		return
	}
	h.log.InfoContext(r.Context(), "connect link made", "reconnect", reconnect != "", "expires", l.Expires)
	reply(w, http.StatusCreated, linkResponse{
		URL:       h.cfg.ConsentURL + "/connect?" + url.Values{"link": {token}}.Encode(),
		ExpiresAt: l.Expires.UTC().Format(time.RFC3339),
	})
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	if u, ok := h.account(w, r); ok {
		reply(w, http.StatusOK, h.view(u))
	}
}

// listResponse is a page of accounts.
type listResponse struct {
	Accounts      []account `json:"accounts"`
	NextPageToken string    `json:"nextPageToken,omitempty"`
}

var statuses = []string{store.Active, store.ReauthRequired, store.Disconnected, store.Pending}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var probs []string
	for k := range q {
		if k != "appRef" && k != "status" && k != "pageSize" && k != "pageToken" {
			probs = append(probs, fmt.Sprintf("unknown parameter %q", clip(k)))
		}
	}
	size := 100
	if s := q.Get("pageSize"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			probs = append(probs, "pageSize must be 1..500")
		}
		size = n
	}
	status, token, ref := q.Get("status"), q.Get("pageToken"), q.Get("appRef")
	if status != "" && !slices.Contains(statuses, status) {
		probs = append(probs, "status must be one of "+strings.Join(statuses, ", "))
	}
	if token != "" && !userKey.MatchString(token) {
		probs = append(probs, "pageToken is not one this API returned")
	}
	if ref != "" && (status != "" || token != "") {
		probs = append(probs, "appRef cannot be combined with status or pageToken")
	}
	if len(ref) > connectlink.MaxAppRef {
		probs = append(probs, "appRef is too long")
	}
	if len(probs) > 0 {
		fail(w, http.StatusBadRequest, strings.Join(probs, "; "))
		return
	}
	var users []store.User
	var err error
	switch {
	case ref != "":
		users, err = h.users.ByAppRef(r.Context(), ref, size)
	case status != "":
		users, err = h.users.ListStatus(r.Context(), status, token, size)
	default:
		users, err = h.users.List(r.Context(), token, size)
	}
	if err != nil {
		h.internal(w, r, err)
		return
	}
	resp := listResponse{Accounts: []account{}}
	for _, u := range users {
		resp.Accounts = append(resp.Accounts, h.view(u))
	}
	if ref == "" && len(users) == size {
		resp.NextPageToken = users[len(users)-1].Key
	}
	reply(w, http.StatusOK, resp)
}

func (h *Handler) disconnectUser(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("user")
	if !userKey.MatchString(key) {
		fail(w, http.StatusBadRequest, "the user key is 32 lower-case hex digits")
		return
	}
	found, err := h.disconnect.Disconnect(r.Context(), key)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	if !found {
		fail(w, http.StatusNotFound, "no such account")
		return
	}
	u, err := h.users.Get(r.Context(), key)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	reply(w, http.StatusOK, h.view(u))
}

// resyncResponse tells what a resync did.
type resyncResponse struct {
	Outcome   string `json:"outcome"`
	Announced int    `json:"announced"`
	Cursor    int64  `json:"cursor"`
}

func (h *Handler) resync(w http.ResponseWriter, r *http.Request) {
	u, ok := h.account(w, r)
	if !ok {
		return
	}
	if u.Status != store.Active {
		fail(w, http.StatusConflict, fmt.Sprintf("account is %s: only an active account is synced", u.Status))
		return
	}
	res, err := h.syncer.Sync(r.Context(), u.Key)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	reply(w, http.StatusOK, resyncResponse{Outcome: res.Outcome, Announced: res.Announced, Cursor: res.ToHistoryID})
}

// userKey is the shape of a user key.
var userKey = regexp.MustCompile(`^[0-9a-f]{32}$`)

// account reads the account the path names, answering 400 or 404 itself.
func (h *Handler) account(w http.ResponseWriter, r *http.Request) (store.User, bool) {
	key := r.PathValue("user")
	if !userKey.MatchString(key) {
		fail(w, http.StatusBadRequest, "the user key is 32 lower-case hex digits")
		return store.User{}, false
	}
	u, err := h.users.Get(r.Context(), key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		fail(w, http.StatusNotFound, "no such account")
		return store.User{}, false
	case err != nil:
		h.internal(w, r, err)
		return store.User{}, false
	}
	return u, true
}

// decode reads a JSON body into v, refusing anything else with 400 (or 415).
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		fail(w, http.StatusUnsupportedMediaType, "the body must be JSON (Content-Type: application/json)")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", maxBody))
		return false
	case err != nil:
		fail(w, http.StatusBadRequest, "the body is not the expected JSON object: "+clip(err.Error()))
		return false
	case dec.Decode(&struct{}{}) != io.EOF:
		fail(w, http.StatusBadRequest, "the body has more than one JSON value")
		return false
	}
	return true
}

// apiError is the error body, in the shape Google's APIs use, with a
// machine-readable reason where a client may act on it.
type apiError struct {
	Error struct {
		Code    int    `json:"code"`
		Status  string `json:"status"`
		Message string `json:"message"`
		Reason  string `json:"reason,omitempty"`
	} `json:"error"`
}

func fail(w http.ResponseWriter, code int, msg string) { failWhy(w, code, "", msg) }

func failWhy(w http.ResponseWriter, code int, reason, msg string) {
	var e apiError
	e.Error.Code, e.Error.Status, e.Error.Message = code, strings.ToUpper(strings.ReplaceAll(http.StatusText(code), " ", "_")), msg
	e.Error.Reason = reason
	reply(w, code, e)
}

func (h *Handler) internal(w http.ResponseWriter, r *http.Request, err error) {
	h.log.ErrorContext(r.Context(), "accounts request failed", "route", r.Pattern, "error", err)
	fail(w, http.StatusInternalServerError, "the request failed on our side; it may be repeated")
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}
