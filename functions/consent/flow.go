package consent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/shared/connectlink"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// connect starts the consent flow: offline access to the configured Gmail
// scope and the sign-in scopes (the callback checks who signed in), asked
// again every time so Google returns a refresh token. Scopes the user granted
// this client before are not included (no include_granted_scopes): the
// stored grant, and every access token made from it, carries exactly the
// configured scope, even where the application's own sign-in shares the
// OAuth client. Without a connect link it starts only if some account could
// be admitted.
func (h *Handler) connect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	opts := []oauth2.AuthCodeOption{oauth2.AccessTypeOffline, oauth2.SetAuthURLParam("prompt", "consent")}
	raw := r.URL.Query().Get("link")
	if raw == "" {
		if !h.cfg.Admit.Open && len(h.cfg.Admit.Addresses) == 0 && len(h.cfg.Admit.Domains) == 0 {
			h.log.WarnContext(ctx, "flow refused", "flow", flowConnect, "reason", "no link and no allowlist")
			h.render(w, pageError, http.StatusForbidden, pageData{Message: msgNeedLink})
			return
		}
		h.start(w, r, flowState{Flow: flowConnect}, opts...)
		return
	}
	l, err := h.resolveLink(ctx, raw, h.now())
	if err != nil {
		h.refuseLink(w, r, l, err)
		return
	}
	if err := h.bindBrowser(w, r, l); err != nil {
		h.refuseLink(w, r, store.Link{}, err) // a page, never the error URL: this browser is not the one the link was for
		return
	}
	if l.Address != "" && r.URL.Query().Get("login_hint") == "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", l.Address))
	}
	if l.Domain != "" {
		opts = append(opts, oauth2.SetAuthURLParam("hd", l.Domain)) // Google's account chooser hint; checked on the ID token
	}
	h.start(w, r, flowState{Flow: flowConnect, Link: raw}, opts...)
}

// startDisconnect asks the user to sign in again, choosing the account
// explicitly; the callback then only asks for confirmation.
func (h *Handler) startDisconnect(w http.ResponseWriter, r *http.Request) {
	h.start(w, r, flowState{Flow: flowDisconnect}, oauth2.SetAuthURLParam("prompt", "select_account"))
}

// start sets a fresh state cookie and redirects to the configured
// authorization endpoint, and nowhere else.
func (h *Handler) start(w http.ResponseWriter, r *http.Request, s flowState, opts ...oauth2.AuthCodeOption) {
	ctx := r.Context()
	flow := s.Flow
	if hint := r.URL.Query().Get("login_hint"); hint != "" {
		if a, err := mail.ParseAddress(hint); err != nil || a.Address != hint || len(hint) > 254 {
			h.log.WarnContext(ctx, "flow refused", "flow", flow, "reason", "login_hint is not an address")
			h.render(w, pageError, http.StatusBadRequest, pageData{Message: "login_hint must be a plain email address."})
			return
		}
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", hint))
	}
	keys, err := h.stateKeys.Get(ctx)
	var conf *oauth2.Config
	if err == nil {
		conf, err = h.oauthConfig(ctx, flow)
	}
	if err != nil {
		h.log.ErrorContext(ctx, "flow not started", "flow", flow, "error", err)
		h.render(w, pageError, http.StatusInternalServerError, pageData{Message: "The service cannot start a sign-in right now. Please try again later."})
		return
	}
	s.Nonce, s.Verifier, s.Expires = newNonce(), oauth2.GenerateVerifier(), h.now().Add(stateTTL).Unix()
	c := h.cookie
	c.Value, c.MaxAge = seal(keys[0], s), int(stateTTL.Seconds())
	http.SetCookie(w, &c)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Location", conf.AuthCodeURL(s.Nonce, append(opts, oauth2.S256ChallengeOption(s.Verifier))...))
	w.WriteHeader(http.StatusFound)
	h.log.InfoContext(ctx, "flow started", "flow", flow, "link", s.Link != "")
}

// oauthConfig returns the OAuth client for a flow: the Gmail scope to
// connect, sign-in scopes only to disconnect.
func (h *Handler) oauthConfig(ctx context.Context, flow string) (*oauth2.Config, error) {
	base, err := h.clients.OAuth(ctx)
	if err != nil {
		return nil, err
	}
	c := *base
	c.RedirectURL = h.cfg.PublicURL + CallbackPath
	c.Scopes = []string{h.cfg.OAuth.Scope, "openid", "email"}
	if flow == flowDisconnect {
		c.Scopes = []string{"openid", "email"}
	}
	return &c, nil
}

// refusal is a callback turned down: the page and status shown, the
// message on it, the reason logged, and the code an application's error URL
// receives. Statuses: 400 when the request cannot succeed as sent (state
// missing, mismatched, tampered, expired, replayed or ambiguous; code
// missing, replayed or failing PKCE; a link invalid, expired or used); 403
// when access was not given (the user denied, withheld the Gmail scope, the
// ID token proves no account, or the account is not the one admitted); 409
// when the mailbox is connected under another reference; 502 when Google's
// answer is unusable (no refresh token, token endpoint down); 500, outside
// refusals, for failures on our side.
type refusal struct {
	page   string
	status int
	msg    string
	reason string
	code   string
}

func (r *refusal) Error() string { return r.reason }

// Codes an application's error URL receives as ?outcome=error&reason=.
const (
	codeDenied       = "access_denied"
	codeScope        = "scope_not_granted"
	codeNoRefresh    = "no_refresh_token"
	codeNotAllowed   = "account_not_allowed"
	codeLinkUsed     = "link_used"
	codeLinkExpired  = "link_expired"
	codeOtherRef     = "connected_elsewhere"
	codeSignInFailed = "sign_in_failed"
	codeServerError  = "server_error"
)

const (
	msgStartAgain = "This sign-in is invalid, has expired or was already used. Please start again."
	msgNeedLink   = "Connecting a mailbox here needs a link from the application you are connecting it to. Please start from that application."
	msgNotAllowed = "This Google account may not be connected here. Nothing was stored, and the access you granted was withdrawn."
)

// result is a finished flow: the page to show, or the link whose success
// URL the browser goes back to.
type result struct {
	page string
	data pageData
	link *store.Link
	user string
	code string // the one-time result code the backend redeems; "" without CONNECT_CONFIRM
}

// callback finishes either flow. The state cookie is cleared whatever
// happens. A flow started from a link with return URLs ends with a 303 to
// the application, carrying the outcome and the one-time result code its
// backend redeems (the user key, with CONNECT_CONFIRM=false), never a token.
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	ctx := context.WithValue(r.Context(), oauth2.HTTPClient, h.http)
	gone := h.cookie
	gone.MaxAge = -1
	http.SetCookie(w, &gone)
	res, err := h.finish(ctx, r)
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		h.log.WarnContext(ctx, "callback refused", "reason", ref.reason, "status", ref.status)
	case err != nil:
		h.log.ErrorContext(ctx, "callback failed", "error", err)
		ref = &refusal{pageError, http.StatusInternalServerError, "Something failed on our side. Please start again in a minute.", "", codeServerError}
	}
	switch {
	case ref != nil && res.link != nil && res.link.ErrorURL != "":
		h.goBack(w, res.link.ErrorURL, url.Values{"outcome": {"error"}, "reason": {ref.code}})
	case ref != nil:
		h.render(w, ref.page, ref.status, pageData{Message: ref.msg})
	case res.link != nil && res.link.SuccessURL != "":
		back := url.Values{"outcome": {"connected"}, "result": {res.code}}
		if res.code == "" {
			back = url.Values{"outcome": {"connected"}, "user": {res.user}}
		}
		h.goBack(w, res.link.SuccessURL, back)
	default:
		h.render(w, res.page, http.StatusOK, res.data)
	}
}

// goBack sends the browser to an application URL checked when its link was
// made, replacing the callback (and its code) in the browser's history.
func (h *Handler) goBack(w http.ResponseWriter, target string, params url.Values) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Location", connectlink.Return(target, params))
	w.WriteHeader(http.StatusSeeOther)
}

func (h *Handler) finish(ctx context.Context, r *http.Request) (result, error) {
	st, err := h.checkState(ctx, r)
	switch {
	case errors.Is(err, errNoState), errors.Is(err, errBadSignature), errors.Is(err, errExpired),
		errors.Is(err, errMismatch), errors.Is(err, store.ErrStateUsed), errors.Is(err, errTwoCookies):
		return result{}, &refusal{pageError, http.StatusBadRequest, msgStartAgain, err.Error(), codeSignInFailed}
	case err != nil:
		return result{}, err
	}
	var res result
	if st.Link != "" {
		// The link as it was when the flow started, so one that expired
		// during consent still completes; its single use is claimed below.
		l, err := h.resolveLink(ctx, st.Link, time.Unix(st.Expires, 0).Add(-stateTTL))
		if err != nil {
			return res, linkRefusal(err)
		}
		res.link = &l
	}
	q := r.URL.Query()
	switch e := q.Get("error"); {
	case e == "access_denied":
		return res, &refusal{pageDenied, http.StatusForbidden, "You chose not to allow access.", "access_denied", codeDenied}
	case e != "":
		return res, &refusal{pageError, http.StatusBadRequest, "Google could not complete the sign-in. Please start again.", "authorization error " + clip(e), codeSignInFailed}
	case q.Get("code") == "":
		return res, &refusal{pageError, http.StatusBadRequest, msgStartAgain, "code missing", codeSignInFailed}
	}
	conf, err := h.oauthConfig(ctx, st.Flow)
	if err != nil {
		return res, err
	}
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return res, &refusal{pageError, http.StatusBadRequest, msgStartAgain, "code exchange: " + clip(re.ErrorDescription), codeSignInFailed}
		}
		return res, &refusal{pageError, http.StatusBadGateway, "Google could not complete the sign-in. Please try again.", fmt.Sprintf("code exchange: %v", err), codeSignInFailed}
	}
	// Only now is the state worth remembering: a stranger's callbacks with
	// made-up codes never reach this line, so cannot fill oauthStates.
	if err := h.users.UseState(ctx, st.Nonce, st.Flow, time.Unix(st.Expires, 0)); err != nil {
		if errors.Is(err, store.ErrStateUsed) {
			return res, &refusal{pageError, http.StatusBadRequest, msgStartAgain, err.Error(), codeSignInFailed}
		}
		return res, err
	}
	raw, _ := tok.Extra("id_token").(string)
	id, err := verifiedIdentity(raw, h.cfg.OAuth.ClientID, h.now())
	if err != nil {
		return res, &refusal{pageError, http.StatusForbidden,
			"Google did not confirm which account you signed in with. Please try again.", err.Error(), codeSignInFailed}
	}
	keys, err := h.keyer(ctx)
	if err == nil {
		res.user, err = h.users.KeyOf(ctx, keys, id.Sub) // a record keyed before a rotation keeps its key
	}
	if err != nil {
		return res, err
	}
	if st.Flow == flowDisconnect {
		return h.confirmDisconnect(ctx, id, res.user)
	}
	if res.link, err = h.legacyReconnect(ctx, res.link, res.user, id.Email); err != nil {
		return res, err
	}
	if err := h.admit(res.link, id, res.user); err != nil {
		h.withdraw(ctx, res.user, id.Email, tok)
		return res, err
	}
	page, d, err := h.finishConnect(ctx, tok, id, &res)
	res.page, res.data = page, d
	return res, err
}

// admit decides whether the account that signed in may connect: with a link,
// the one it expects (address, Workspace domain, or the user it reconnects);
// without one, an account on the allowlists, or anyone with open enrollment.
// Domains are matched on the verified hd claim, never the address's suffix.
func (h *Handler) admit(l *store.Link, id identity, key string) error {
	var why string
	a := h.cfg.Admit
	switch {
	case l != nil && l.Address != "" && id.Email != l.Address:
		why = "account is not the link's expected address"
	case l != nil && l.Domain != "" && id.HD != l.Domain:
		why = "account is not in the link's expected domain"
	case l != nil && l.Reconnect != "" && key != l.Reconnect:
		why = "account is not the one the link reconnects"
	case l != nil, a.Open, slices.Contains(a.Addresses, id.Email), id.HD != "" && slices.Contains(a.Domains, id.HD):
		return nil
	default:
		why = "account on no allowlist"
	}
	return &refusal{pageDenied, http.StatusForbidden, msgNotAllowed, why, codeNotAllowed}
}

// withdraw revokes what Google granted in a refused flow, unless the account
// is connected already: revoking ends the whole grant, and with it that
// connection. A legacy record, keyed by its address until
// scripts/migrate-keys moves it, is found by the address.
func (h *Handler) withdraw(ctx context.Context, key, email string, tok *oauth2.Token) {
	if u, err := h.users.Get(ctx, key); err == nil && u.Status != store.Disconnected || err != nil && !errors.Is(err, store.ErrNotFound) {
		return
	}
	if u, err := h.users.ByEmail(ctx, email); err == nil && u.Sub == "" && u.Status != store.Disconnected || err != nil && !errors.Is(err, store.ErrNotFound) {
		return
	}
	t := tok.RefreshToken
	if t == "" {
		t = tok.AccessToken
	}
	if err := h.disconnect.Revoke(ctx, t); err != nil {
		h.log.WarnContext(ctx, "grant of a refused account not revoked", "error", err)
	}
}

// finishConnect keeps the refresh token, starts the watch and records the
// user, in the order of the spec; a first connect that fails midway leaves
// no token behind.
//
// With CONNECT_CONFIRM (the default) a link's connection is held until the
// application's backend redeems it: the record is pending (or, when the
// mailbox is connected already, keeps its reference until then), nothing
// is published, and res gets the one-time result code for the success URL;
// only its hash is stored, expiring after CONNECT_RESULT_TTL.
func (h *Handler) finishConnect(ctx context.Context, tok *oauth2.Token, id identity, res *result) (string, pageData, error) {
	key, l := res.user, res.link
	scope, _ := tok.Extra("scope").(string)
	if !slices.Contains(strings.Fields(scope), h.cfg.OAuth.Scope) {
		h.withdraw(ctx, key, id.Email, tok)
		return "", pageData{}, &refusal{pageDenied, http.StatusForbidden,
			"Gmail access was not allowed: tick the Gmail box on Google's page to connect.", "scope not granted", codeScope}
	}
	if tok.RefreshToken == "" {
		return "", pageData{}, &refusal{pageError, http.StatusBadGateway,
			"Google did not grant lasting access. Remove this app at myaccount.google.com/permissions, then connect again.", "no refresh token", codeNoRefresh}
	}
	svc, err := h.cfg.OAuth.Service(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		return "", pageData{}, err
	}
	prof, err := svc.Users.GetProfile("me").Context(ctx).Do()
	if err != nil {
		return "", pageData{}, fmt.Errorf("users.getProfile: %w", err)
	}
	email := strings.ToLower(prof.EmailAddress)
	if email != id.Email {
		h.withdraw(ctx, key, id.Email, tok)
		return "", pageData{}, &refusal{pageDenied, http.StatusForbidden, msgNotAllowed, "mailbox is not the signed-in address", codeNotAllowed}
	}
	conn := store.Connection{Key: key, Email: email, Sub: id.Sub, Labels: h.cfg.Watch.Labels, LabelFilter: h.cfg.Watch.LabelFilter}
	if l != nil {
		conn.AppRef, conn.Move = l.AppRef, l.Move
	}
	otherRef := &refusal{pageError, http.StatusConflict,
		"This mailbox is already connected for another user of the application. Nothing was changed.", "connected under another reference", codeOtherRef}
	if l != nil && h.cfg.Links.Confirm {
		res.code = newNonce()
		conn.Result, conn.ResultExpires, conn.ResultCaller = store.ResultID(res.code), h.now().Add(h.cfg.ResultTTL), l.Caller
	}
	if u, err := h.users.Get(ctx, key); err == nil && u.Connected() && u.AppRef != conn.AppRef && !conn.Move {
		return "", pageData{}, otherRef
	}
	if l != nil {
		switch err := h.users.UseLink(ctx, *l); {
		case errors.Is(err, store.ErrLinkUsed), errors.Is(err, store.ErrLinkNotFound):
			h.withdraw(ctx, key, id.Email, tok)
			return "", pageData{}, linkRefusal(err)
		case err != nil:
			return "", pageData{}, err
		}
	}
	if err := h.tokens.PutRefreshToken(ctx, key, tok.RefreshToken); err != nil {
		return "", pageData{}, err
	}
	historyID, expires, err := h.cfg.Watch.Watch(ctx, svc)
	var u store.User
	var created bool
	if err == nil {
		conn.HistoryID, conn.WatchExpiration, conn.RenewAt = historyID, expires, h.cfg.Watch.NextRenewal(expires, h.now())
		conn.SyncDueAt = h.now().Add(h.cfg.Watch.ReconcileAfter)
		u, created, err = h.users.Connect(ctx, conn)
	}
	if err != nil {
		if _, gerr := h.users.Get(ctx, key); errors.Is(gerr, store.ErrNotFound) {
			if derr := h.tokens.DeleteRefreshToken(ctx, key); derr != nil {
				h.log.ErrorContext(ctx, "token of failed connect left in Secret Manager", "user", key, "error", derr)
			}
		}
		if errors.Is(err, store.ErrOtherRef) {
			return "", pageData{}, otherRef
		}
		return "", pageData{}, fmt.Errorf("connect %s: %w", key, err)
	}
	eventID, err := h.life.Announce(ctx, u)
	if err != nil {
		// The user is connected and watched; the record owes the event
		// until the next renew run publishes it, with the same id.
		h.log.ErrorContext(ctx, "connected event not published", "user", key, "error", err)
	}
	h.log.InfoContext(ctx, "user connected", "user", key, "created", created, "historyId", historyID, "cursor", u.Cursor, "link", l != nil,
		"eventId", eventID, "awaitsRedeem", conn.Result != "")
	return pageConnected, pageData{Email: email}, nil
}

// clip shortens a value from the request before it is logged.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}
