package accounts

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// accessToken is a Gmail access token handed to the application's backend,
// so it can act on a user's mail (read a message, reply, label) without a
// consent of its own. Scopes are those Google granted the token: never more
// than the deployment's GMAIL_SCOPE.
type accessToken struct {
	AccessToken string   `json:"accessToken"`
	TokenType   string   `json:"tokenType"`
	ExpiresAt   string   `json:"expiresAt"`
	Scopes      []string `json:"scopes"`
}

// tokenRequest is the optional body of POST /accounts/{user}/access-token.
// ForceRefresh drops the cached token first: for a caller whose token Gmail
// answered 401 before its expiry.
type tokenRequest struct {
	ForceRefresh bool `json:"forceRefresh,omitempty"`
}

// issueToken answers POST /accounts/{user}/access-token: a live access token
// of an active user, from the instance's cache while it has at least
// gmailclient.MinTokenLife left, else freshly refreshed. A refusal says why
// in its reason: the account's status, or reauth_required when Google no
// longer honours the grant (the account is then marked so, as a sync would).
// The issuance is logged with the caller and the user, never the token.
func (h *Handler) issueToken(w http.ResponseWriter, r *http.Request) {
	u, ok := h.account(w, r)
	if !ok {
		return
	}
	var req tokenRequest
	if r.ContentLength != 0 && !decode(w, r, &req) {
		return
	}
	if u.Status != store.Active {
		failWhy(w, http.StatusConflict, u.Status, fmt.Sprintf("account is %s: access tokens are issued for active accounts only", u.Status))
		return
	}
	ctx := r.Context()
	if req.ForceRefresh {
		h.clients.Forget(u.Key)
	}
	tok, err := h.clients.Token(ctx, u)
	switch {
	case gmailclient.IsInvalidGrant(err):
		if _, err := h.syncer.MarkReauth(ctx, u.Key); err != nil {
			h.internal(w, r, err)
			return
		}
		failWhy(w, http.StatusConflict, store.ReauthRequired, "Google no longer honours this account's grant: the user must reconnect")
		return
	case gmailclient.IsRetryable(err):
		h.log.WarnContext(ctx, "access token not issued", "user", u.Key, "error", err)
		w.Header().Set("Retry-After", "5")
		fail(w, http.StatusServiceUnavailable, "Google's token endpoint did not answer; try again in a few seconds")
		return
	case err != nil:
		h.internal(w, r, err)
		return
	}
	h.log.InfoContext(ctx, "access token issued", "user", u.Key, "caller", caller(r), "expires", tok.Expiry)
	reply(w, http.StatusOK, accessToken{
		AccessToken: tok.AccessToken,
		TokenType:   tok.Type(),
		ExpiresAt:   tok.Expiry.UTC().Format(time.RFC3339),
		Scopes:      grantedScopes(tok.Extra("scope"), h.cfg.OAuth.Scope),
	})
}

// grantedScopes reads the scopes of the token endpoint's answer (a
// space-separated "scope"); an answer without them (a cached token, the
// delegation flow) was asked for configured.
func grantedScopes(extra any, configured string) []string {
	if s, ok := extra.(string); ok && strings.TrimSpace(s) != "" {
		return strings.Fields(s)
	}
	return []string{configured}
}
