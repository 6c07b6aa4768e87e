// Package disconnect ends a user's connection, the one code path behind the
// user's own confirmed disconnect, the accounts API and the operator's tool:
// stop the watch, revoke and delete the refresh token, mark the user
// disconnected, delete its markers, publish gmail.user.disconnected.
package disconnect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/lifecycle"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/gmailwatch/gmailwatch/shared/vault"
)

// Disconnecter ends users' connections.
type Disconnecter struct {
	users   *store.Store
	tokens  *vault.Vault
	clients *gmailclient.Factory
	life    *lifecycle.Lifecycle
	http    *http.Client
	log     *slog.Logger
}

// New returns a Disconnecter; client carries the calls to Google's token,
// revoke and Gmail endpoints.
func New(users *store.Store, tokens *vault.Vault, clients *gmailclient.Factory, pub *events.Publisher, client *http.Client, log *slog.Logger) *Disconnecter {
	return &Disconnecter{users: users, tokens: tokens, clients: clients, life: lifecycle.New(users, pub, nil), http: client, log: log}
}

// Disconnect marks the user with key disconnected, stops the watch, revokes
// and deletes the refresh token, deletes the announced-message markers and
// publishes gmail.user.disconnected. The status is written first, with the
// event the record then owes (lifecycle.Disconnect), so from then on notify
// and renew leave the user alone whatever happens next; a failed call can
// be repeated and finishes the remaining steps, publishing the same event.
// A connected event the record still owes is published right after the
// status, ahead of the disconnected one. found is false
// when no user record exists: then only a stray token, if any, is revoked
// and deleted, and nothing is published.
func (d *Disconnecter) Disconnect(ctx context.Context, key string) (found bool, err error) {
	_, found, err = d.disconnect(ctx, key, false)
	return found, err
}

// ByUser is Disconnect at the user's own request (the confirmed disconnect
// of the consent page). The record remembers it (store.User.OptedOut): with
// both connect modes on, the renew run does not watch the mailbox again
// through domain-wide delegation, whatever the directory lists; connecting
// again by consent clears it. delegated tells whether the mailbox was
// watched through delegation.
func (d *Disconnecter) ByUser(ctx context.Context, key string) (found, delegated bool, err error) {
	u, found, err := d.disconnect(ctx, key, true)
	return found, u.Delegated, err
}

func (d *Disconnecter) disconnect(ctx context.Context, key string, byUser bool) (store.User, bool, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, d.http)
	u, err := d.life.Disconnect(ctx, key, func(u *store.User) error {
		if u.Status == store.Disconnected && (u.OptedOut || !byUser) {
			return store.ErrNoChange
		}
		u.Status, u.PendingResult, u.PendingUntil = store.Disconnected, "", time.Time{}
		u.OptedOut = u.OptedOut || byUser
		return nil
	})
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return u, false, fmt.Errorf("disconnect %s: %w", key, err)
	}
	if _, err := d.life.Announce(ctx, u); err != nil {
		return u, found, fmt.Errorf("disconnect %s: %w", key, err)
	}
	u.Notice = nil
	token, err := d.tokens.RefreshToken(ctx, key)
	switch {
	case errors.Is(err, vault.ErrNotFound):
	case err != nil:
		return u, found, fmt.Errorf("disconnect %s: %w", key, err)
	default:
		d.stopWatch(ctx, key, token)
		if err := d.Revoke(ctx, token); err != nil {
			return u, found, fmt.Errorf("disconnect %s: %w", key, err)
		}
	}
	if err := d.tokens.DeleteRefreshToken(ctx, key); err != nil {
		return u, found, fmt.Errorf("disconnect %s: %w", key, err)
	}
	if !found {
		d.log.InfoContext(ctx, "disconnect of unknown user", "user", key)
		return u, false, nil
	}
	if err := d.users.DeleteMarkers(ctx, key); err != nil {
		return u, true, fmt.Errorf("disconnect %s: %w", key, err)
	}
	id, err := d.life.Farewell(ctx, u)
	switch {
	case err != nil:
		return u, true, fmt.Errorf("disconnect %s: %w", key, err)
	case id == "": // a pending record was never announced, and a repeat finds the event out
		d.log.InfoContext(ctx, "user disconnected, nothing owed", "user", key)
	default:
		d.log.InfoContext(ctx, "user disconnected", "user", key, "eventId", id)
	}
	return u, true, nil
}

// Abandon ends a consent whose result lapsed unredeemed (u, as a renew run
// listed it), publishing nothing: a pending record is marked disconnected,
// its watch stopped, its grant revoked, its token deleted and then the
// record itself (the mark keeps a failed try listed, to be finished by the
// next run); a connected record, whose reconnect or move was never
// confirmed, only forgets the result, as its grant is the live connection's.
func (d *Disconnecter) Abandon(ctx context.Context, u store.User) error {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, d.http)
	u, err := d.users.Update(ctx, u.Key, func(v *store.User) error {
		switch {
		case v.PendingUntil.IsZero() || v.PendingUntil.After(u.PendingUntil):
			return store.ErrNoChange // redeemed, or connected again, meanwhile
		case v.Connected():
			v.PendingResult, v.PendingUntil = "", time.Time{}
		case v.Status == store.Pending:
			v.Status, v.PendingResult = store.Disconnected, ""
		default:
			return store.ErrNoChange // marked by an earlier try
		}
		return nil
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("abandon %s: %w", u.Key, err)
	case u.Status != store.Disconnected || u.PendingUntil.IsZero():
		return nil
	}
	token, err := d.tokens.RefreshToken(ctx, u.Key)
	switch {
	case errors.Is(err, vault.ErrNotFound):
	case err != nil:
		return fmt.Errorf("abandon %s: %w", u.Key, err)
	default:
		held, err := d.legacyHolds(ctx, u)
		if err != nil {
			return fmt.Errorf("abandon %s: %w", u.Key, err)
		}
		if held {
			break // the grant and the mailbox's watch are the legacy connection's too: only this token goes
		}
		d.stopWatch(ctx, u.Key, token)
		if err := d.Revoke(ctx, token); err != nil {
			return fmt.Errorf("abandon %s: %w", u.Key, err)
		}
	}
	if err := d.tokens.DeleteRefreshToken(ctx, u.Key); err != nil {
		return fmt.Errorf("abandon %s: %w", u.Key, err)
	}
	if _, err := d.users.Forget(ctx, u); err != nil {
		return fmt.Errorf("abandon %s: %w", u.Key, err)
	}
	d.log.InfoContext(ctx, "unconfirmed connection removed", "user", u.Key)
	return nil
}

// legacyHolds reports whether the mailbox of u is connected under a legacy
// record (keyed by its address, not moved by scripts/migrate-keys yet):
// revoking u's token would end the grant that connection runs on, and
// users.stop its watch.
func (d *Disconnecter) legacyHolds(ctx context.Context, u store.User) (bool, error) {
	o, err := d.users.ByEmail(ctx, u.Email)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return o.Key != u.Key && o.Sub == "" && o.Connected(), nil
}

// stopWatch calls users.stop with the stored token. A failure is only
// logged: the watch lapses within 7 days and pushes for a disconnected
// user are dropped anyway.
func (d *Disconnecter) stopWatch(ctx context.Context, key, token string) {
	conf, err := d.clients.OAuth(ctx)
	if err == nil {
		svc, serr := d.clients.Settings().Service(ctx, conf.TokenSource(ctx, &oauth2.Token{RefreshToken: token}))
		err = serr
		if err == nil {
			err = gmailclient.Stop(ctx, svc)
		}
	}
	if err != nil {
		d.log.WarnContext(ctx, "users.stop failed; the watch will lapse", "user", key, "error", err)
	}
}

// Revoke revokes token (refresh or access) at Google's revoke endpoint, which
// ends its whole grant; a token Google no longer knows (already revoked or
// expired) counts as revoked.
func (d *Disconnecter) Revoke(ctx context.Context, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.clients.Settings().RevokeURL,
		strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := d.http.Do(req)
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&body)
	if resp.StatusCode == http.StatusOK || (resp.StatusCode == http.StatusBadRequest && body.Error == "invalid_token") {
		return nil
	}
	if len(body.Error) > 64 {
		body.Error = body.Error[:64]
	}
	return fmt.Errorf("revoke token: status %d %s", resp.StatusCode, body.Error)
}
