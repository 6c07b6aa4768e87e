package consent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// connect starts the consent flow: offline access to the configured Gmail
// scope, asked again every time so Google returns a refresh token.
func (h *Handler) connect(w http.ResponseWriter, r *http.Request) {
	h.start(w, r, flowConnect, oauth2.AccessTypeOffline,
		oauth2.SetAuthURLParam("prompt", "consent"),
		oauth2.SetAuthURLParam("include_granted_scopes", "true"))
}

// startDisconnect asks the user to sign in again, choosing the account
// explicitly, so a link from elsewhere cannot disconnect anyone silently.
func (h *Handler) startDisconnect(w http.ResponseWriter, r *http.Request) {
	h.start(w, r, flowDisconnect, oauth2.SetAuthURLParam("prompt", "select_account"))
}

// start sets a fresh state cookie and redirects to the configured
// authorization endpoint, and nowhere else.
func (h *Handler) start(w http.ResponseWriter, r *http.Request, flow string, opts ...oauth2.AuthCodeOption) {
	ctx := r.Context()
	if hint := r.URL.Query().Get("login_hint"); hint != "" {
		if a, err := mail.ParseAddress(hint); err != nil || a.Address != hint || len(hint) > 254 {
			h.log.WarnContext(ctx, "flow refused", "flow", flow, "reason", "login_hint is not an address")
			h.render(w, pageError, http.StatusBadRequest, pageData{Message: "login_hint must be a plain email address."})
			return
		}
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", hint))
	}
	key, err := h.signingKey(ctx)
	var conf *oauth2.Config
	if err == nil {
		conf, err = h.oauthConfig(ctx, flow)
	}
	if err != nil {
		h.log.ErrorContext(ctx, "flow not started", "flow", flow, "error", err)
		h.render(w, pageError, http.StatusInternalServerError, pageData{Message: "The service cannot start a sign-in right now. Please try again later."})
		return
	}
	s := flowState{Nonce: newNonce(), Verifier: oauth2.GenerateVerifier(), Flow: flow, Expires: h.now().Add(stateTTL).Unix()}
	c := h.cookie
	c.Value, c.MaxAge = seal(key, s), int(stateTTL.Seconds())
	http.SetCookie(w, &c)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Location", conf.AuthCodeURL(s.Nonce, append(opts, oauth2.S256ChallengeOption(s.Verifier))...))
	w.WriteHeader(http.StatusFound)
	h.log.InfoContext(ctx, "flow started", "flow", flow)
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
	c.Scopes = []string{h.cfg.OAuth.Scope}
	if flow == flowDisconnect {
		c.Scopes = []string{"openid", "email"}
	}
	return &c, nil
}

// refusal is a callback turned down: the page and status shown, the
// message on it, and the reason logged. Statuses: 400 when the request cannot
// succeed as sent (state missing, mismatched, tampered, expired, replayed or
// ambiguous; code missing, replayed or failing PKCE); 403 when access was not
// given (the user denied, withheld the Gmail scope, or the ID token proves no
// account); 502 when Google's answer is unusable (no refresh token, token
// endpoint down); 500, outside refusals, for failures on our side.
type refusal struct {
	page   string
	status int
	msg    string
	reason string
}

func (r *refusal) Error() string { return r.reason }

const msgStartAgain = "This sign-in is invalid, has expired or was already used. Please start again."

// callback finishes either flow. The state cookie is cleared whatever happens.
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	ctx := context.WithValue(r.Context(), oauth2.HTTPClient, h.http)
	gone := h.cookie
	gone.MaxAge = -1
	http.SetCookie(w, &gone)
	page, d, err := h.finish(ctx, r)
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		h.log.WarnContext(ctx, "callback refused", "reason", ref.reason, "status", ref.status)
		h.render(w, ref.page, ref.status, pageData{Message: ref.msg})
	case err != nil:
		h.log.ErrorContext(ctx, "callback failed", "error", err)
		h.render(w, pageError, http.StatusInternalServerError, pageData{Message: "Something failed on our side. Please start again in a minute."})
	default:
		h.render(w, page, http.StatusOK, d)
	}
}

func (h *Handler) finish(ctx context.Context, r *http.Request) (string, pageData, error) {
	st, err := h.checkState(ctx, r)
	switch {
	case errors.Is(err, errNoState), errors.Is(err, errBadSignature), errors.Is(err, errExpired),
		errors.Is(err, errMismatch), errors.Is(err, store.ErrStateUsed), errors.Is(err, errTwoCookies):
		return "", pageData{}, &refusal{pageError, http.StatusBadRequest, msgStartAgain, err.Error()}
	case err != nil:
		return "", pageData{}, err
	}
	q := r.URL.Query()
	switch e := q.Get("error"); {
	case e == "access_denied":
		return "", pageData{}, &refusal{pageDenied, http.StatusForbidden, "You chose not to allow access.", "access_denied"}
	case e != "":
		return "", pageData{}, &refusal{pageError, http.StatusBadRequest, "Google could not complete the sign-in. Please start again.", "authorization error " + clip(e)}
	case q.Get("code") == "":
		return "", pageData{}, &refusal{pageError, http.StatusBadRequest, msgStartAgain, "code missing"}
	}
	conf, err := h.oauthConfig(ctx, st.Flow)
	if err != nil {
		return "", pageData{}, err
	}
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return "", pageData{}, &refusal{pageError, http.StatusBadRequest, msgStartAgain, "code exchange: " + clip(re.ErrorDescription)}
		}
		return "", pageData{}, &refusal{pageError, http.StatusBadGateway, "Google could not complete the sign-in. Please try again.", fmt.Sprintf("code exchange: %v", err)}
	}
	if st.Flow == flowDisconnect {
		return h.finishDisconnect(ctx, tok)
	}
	return h.finishConnect(ctx, tok)
}

// finishConnect keeps the refresh token, starts the watch and records the
// user, in the order of the spec; a first connect that fails midway leaves
// no token behind.
func (h *Handler) finishConnect(ctx context.Context, tok *oauth2.Token) (string, pageData, error) {
	scope, _ := tok.Extra("scope").(string)
	if !slices.Contains(strings.Fields(scope), h.cfg.OAuth.Scope) {
		return "", pageData{}, &refusal{pageDenied, http.StatusForbidden,
			"Gmail access was not allowed: tick the Gmail box on Google's page to connect.", "scope not granted"}
	}
	if tok.RefreshToken == "" {
		return "", pageData{}, &refusal{pageError, http.StatusBadGateway,
			"Google did not grant lasting access. Remove this app at myaccount.google.com/permissions, then connect again.", "no refresh token"}
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
	key := store.Key(email)
	if err := h.tokens.PutRefreshToken(ctx, key, tok.RefreshToken); err != nil {
		return "", pageData{}, err
	}
	historyID, expires, err := h.cfg.Watch.Watch(ctx, svc)
	var u store.User
	var created bool
	if err == nil {
		u, created, err = h.users.Connect(ctx, store.Connection{
			Email: email, Labels: h.cfg.Watch.Labels, LabelFilter: h.cfg.Watch.LabelFilter,
			HistoryID: historyID, WatchExpiration: expires, RenewAt: h.cfg.Watch.NextRenewal(expires, h.now()),
		})
	}
	if err != nil {
		if _, gerr := h.users.Get(ctx, key); errors.Is(gerr, store.ErrNotFound) {
			if derr := h.tokens.DeleteRefreshToken(ctx, key); derr != nil {
				h.log.ErrorContext(ctx, "token of failed connect left in Secret Manager", "user", key, "error", derr)
			}
		}
		return "", pageData{}, fmt.Errorf("connect %s: %w", key, err)
	}
	ev := events.Event{
		Type: events.UserConnected, ID: events.ID(events.UserConnected, key, fmt.Sprint(u.UpdatedAt.UnixMicro())),
		Time: u.UpdatedAt.UTC().Format(time.RFC3339Nano), User: key, EmailAddress: email, HistoryID: uint64(historyID),
	}
	if err := h.events.Publish(ctx, ev); err != nil {
		// The user is connected and watched; only the notice is lost.
		h.log.ErrorContext(ctx, "connected event not published", "user", key, "eventId", ev.ID, "error", err)
	}
	h.log.InfoContext(ctx, "user connected", "user", key, "created", created, "historyId", historyID, "cursor", u.Cursor)
	return pageConnected, pageData{Email: email}, nil
}

// finishDisconnect disconnects the account the user just proved to own.
func (h *Handler) finishDisconnect(ctx context.Context, tok *oauth2.Token) (string, pageData, error) {
	raw, _ := tok.Extra("id_token").(string)
	email, err := verifiedEmail(raw, h.cfg.OAuth.ClientID, h.now())
	if err != nil {
		return "", pageData{}, &refusal{pageError, http.StatusForbidden,
			"Google did not confirm which account you signed in with. Please try again.", err.Error()}
	}
	found, err := h.disconnect.Disconnect(ctx, email)
	if err != nil {
		return "", pageData{}, err
	}
	return pageDisconnected, pageData{Email: email, NotFound: !found}, nil
}

// clip shortens a value from the request before it is logged.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}
