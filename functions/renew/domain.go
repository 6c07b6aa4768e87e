package renew

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/googleapi"

	"github.com/gmailwatch/gmailwatch/shared/directory"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// Domain is what keeping a delegated Workspace domain in step needs beside
// the handler's store and Gmail factory; nil Deps.Domain means consent mode.
type Domain struct {
	Directory *directory.Lister
	// Keys returns the hash that keys users, read once a run: a delegated
	// user is keyed as a consented one is, by Google's account id. The
	// Directory API's user id is that id: Google documents the ID token's
	// sub as the account's unique, never reused identifier, and its user
	// ids as interoperable across the Admin SDK and People API (the Meet
	// API's user reference); it does not say in one sentence that the two
	// are equal, so a consented record is also found by address (join).
	Keys func(context.Context) (store.Keyer, error)
}

// DelegationRefusedLog is the message of the one line a run logs when
// Google refuses the service account's domain-wide delegation; the
// deployment's alert matches it.
const DelegationRefusedLog = "domain-wide delegation refused"

// inStep makes the watched users those the directory lists: a user new to
// the listing (or back in it, or back after the delegation was restored) is
// watched and announced with gmail.user.connected; a delegated user gone
// from it or suspended is stopped and announced with gmail.user.disconnected.
// A listing that fails changes nothing, and so does an empty one while
// users are watched (a mistyped org unit or group must not stop everyone).
// A refused delegation is logged once per run and ends the step: each
// user's own sync marks it reauth_required, once.
func (r *run) inStep() error {
	d := r.h.d.Domain
	members, err := d.Directory.Mailboxes(r.work)
	switch {
	case gmailclient.IsInvalidGrant(err):
		r.refused(err)
		return nil
	case err != nil:
		return fmt.Errorf("directory listing: %w", err)
	}
	keys, err := d.Keys(r.work)
	if err != nil {
		return fmt.Errorf("user key: %w", err)
	}
	known := map[string]store.User{} // by key
	for after := ""; ; {
		page, err := r.h.d.Users.Delegated(r.work, after, r.h.set.PageSize)
		if err != nil {
			return err
		}
		for _, u := range page {
			known[u.Key] = u
		}
		if len(page) < r.h.set.PageSize {
			break
		}
		after = page[len(page)-1].Key
	}
	wanted := map[string]directory.Member{} // by key
	for _, m := range members {
		if !m.Suspended && m.ID != "" {
			wanted[keyIn(known, keys.Keys(m.ID))] = m
		}
	}
	watched := 0
	for _, u := range known {
		if u.Status == store.Active {
			watched++
		}
	}
	var g errgroup.Group
	g.SetLimit(r.h.set.Concurrency)
	defer g.Wait()
	if len(wanted) == 0 && watched > 0 {
		r.h.d.Logger.ErrorContext(r.work, "directory lists no mailbox; watched users left as they are", "watched", watched)
	} else {
		for key, u := range known {
			if _, ok := wanted[key]; !ok && (u.Status != store.Disconnected || !u.Farewell.IsZero()) {
				if !r.mayStart(r.h.quota.Units(gmailclient.MethodStop)) {
					r.stopped = true
					return nil
				}
				g.Go(func() error { r.count(r.leave(r.work, u)); return nil })
			}
		}
	}
	for key, m := range wanted {
		// An active user whose address changed is joined again: the record
		// takes the new address, which Gmail's pushes name.
		if u, ok := known[key]; ok && (u.Status == store.Active && u.Email == m.Email || u.Status == store.Disconnected && u.OptedOut) {
			continue // watched, or disconnected at the user's own request
		}
		if r.isRefused() {
			break
		}
		if !r.mayStart(r.h.quota.Units(gmailclient.MethodWatch)) {
			r.stopped = true
			return nil
		}
		g.Go(func() error { r.count(r.join(r.work, key, m)); return nil })
	}
	return nil
}

// keyIn returns the first of a member's keys (newest first) that a known
// user has, so a user keyed before a rotation of the user-key secret stays
// itself; else the newest.
func keyIn(known map[string]store.User, keys []string) string {
	for _, k := range keys {
		if _, ok := known[k]; ok {
			return k
		}
	}
	return keys[0]
}

// refused logs the delegation refusal, once per run.
func (r *run) refused(err error) {
	r.refusal.Do(func() {
		r.mu.Lock()
		r.rep.DelegationRefused = true
		r.mu.Unlock()
		r.h.d.Logger.ErrorContext(r.work, DelegationRefusedLog, "alert", "delegation_refused", "error", err)
	})
}

func (r *run) isRefused() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rep.DelegationRefused
}

// join watches a user of the domain under key and records it as delegated;
// a user that was reauth_required keeps its cursor, so what arrived
// meanwhile is still announced, and so does one back in the directory
// within HistoryRetention of leaving it. A user connected by consent (with
// both modes on) stays so, and one who disconnected itself
// (store.User.OptedOut) stays out: either is found by address, whatever
// its key.
func (r *run) join(ctx context.Context, key string, m directory.Member) outcome {
	email := m.Email
	log := r.h.d.Logger.With("user", key)
	if u, err := r.h.d.Users.ByEmail(ctx, email); err == nil && (!u.Delegated && u.Status == store.Active || u.Status == store.Disconnected && u.OptedOut) {
		return nothing // connected by consent, or disconnected at the user's own request
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		log.ErrorContext(ctx, "domain user not read", "error", err)
		return failed
	}
	svc, err := r.h.d.Gmail.ForAddress(ctx, email)
	var historyID int64
	var expires time.Time
	if err == nil {
		historyID, expires, err = r.h.set.Watch.Watch(ctx, svc)
	}
	switch {
	case errors.Is(err, gmailclient.ErrDelegationRefused):
		r.refused(err)
		return failed
	case gmailclient.IsInvalidGrant(err):
		// A user created minutes ago may be refused until its account
		// reaches every backend (gmailsync.Refused): not recorded, so the
		// next run tries again.
		log.InfoContext(ctx, "domain user not accepted yet; tried again next run", "error", err)
		return skipped
	case gmailclient.IsRateLimited(err):
		r.h.limiter.slowDown()
		return rateLimited
	case noMailbox(err): // a user without a Gmail licence; tried again next run
		log.InfoContext(ctx, "domain user has no Gmail mailbox", "error", err)
		return skipped
	case err != nil:
		log.ErrorContext(ctx, "watch of a new domain user failed", "error", err)
		return failed
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	u, _, err := r.h.d.Users.Connect(ctx, store.Connection{
		Key: key, Sub: m.ID, Email: email, Labels: r.h.set.Watch.Labels, LabelFilter: r.h.set.Watch.LabelFilter, Delegated: true,
		HistoryID: historyID, WatchExpiration: expires, RenewAt: r.h.set.Watch.NextRenewal(expires, r.h.d.Now()),
		SyncDueAt:   r.h.d.Now().Add(r.h.set.Watch.ReconcileAfter),
		ResumeAfter: r.h.d.Now().Add(-HistoryRetention),
	})
	if err != nil {
		log.ErrorContext(ctx, "domain user watched but not recorded", "error", err)
		return failed
	}
	id, err := r.h.life().Announce(ctx, u)
	if err != nil { // the record owes it: a later run publishes it (announce)
		log.ErrorContext(ctx, "connected event not published", "error", err)
		return failed
	}
	log.InfoContext(ctx, "domain user connected", "eventId", id)
	return joined
}

// HistoryRetention is how long after leaving the directory a delegated
// user that comes back continues from its old cursor: Gmail keeps history
// "typically" for a week (a cursor it no longer knows gets the catch-up).
const HistoryRetention = 7 * 24 * time.Hour

// leave stops a delegated user the directory no longer lists (deleted,
// suspended, moved out of the org unit or group), after a last sync, so
// the mail that arrived before it left is announced (a deleted or
// suspended user's token is refused, and then there is nothing to read).
// The status is written first, with the disconnected event it owes
// (lifecycle.Disconnect), then the event is published: a failure is
// finished by the next run, which lists the record while it owes one.
func (r *run) leave(ctx context.Context, u store.User) outcome {
	log := r.h.d.Logger.With("user", u.Key)
	if u.Status == store.Active {
		res, err := r.h.d.Syncer.Sync(ctx, u.Key)
		if res.Units > 0 { // what was reserved is the stop's
			r.h.limiter.debit(res.Units)
			r.spent(res.Units)
		}
		if err != nil || res.Outcome != gmailsync.Synced {
			log.InfoContext(ctx, "last sync before leaving not done", "outcome", res.Outcome, "error", err)
		}
	}
	if u.Status != store.Disconnected {
		if err := r.h.d.Gmail.Do(ctx, u, func(svc *gmail.Service) error { return gmailclient.Stop(ctx, svc) }); err != nil {
			log.InfoContext(ctx, "watch left to lapse", "reason", err) // a suspended or deleted user's token is refused
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	v, err := r.h.life().Disconnect(ctx, u.Key, func(v *store.User) error {
		if v.Status == store.Disconnected || !v.ConnectedAt.Equal(u.ConnectedAt) {
			return store.ErrNoChange // already done, or connected again meanwhile
		}
		v.Status, v.LeftAt = store.Disconnected, r.h.d.Now()
		return nil
	})
	r.h.d.Gmail.Forget(u.Key)
	if err == nil && v.Status == store.Disconnected {
		err = r.h.d.Users.DeleteMarkers(ctx, u.Key)
	}
	if err != nil {
		log.ErrorContext(ctx, "domain user not disconnected", "error", err)
		return failed
	}
	if v.Status != store.Disconnected {
		return nothing // connected again meanwhile
	}
	id, err := r.h.life().Farewell(ctx, v)
	if err != nil { // the record owes it: the next run publishes it
		log.ErrorContext(ctx, "disconnected event not published", "error", err)
		return failed
	}
	log.InfoContext(ctx, "domain user disconnected", "eventId", id)
	return left
}

// noMailbox reports Gmail's answer for an account without Gmail: 400
// failedPrecondition, "Mail service not enabled".
func noMailbox(err error) bool {
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != http.StatusBadRequest {
		return false
	}
	for _, e := range ge.Errors {
		if e.Reason == "failedPrecondition" {
			return true
		}
	}
	return false
}
