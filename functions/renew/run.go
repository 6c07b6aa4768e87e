package renew

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/lifecycle"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// Report is what one run did, logged and answered as JSON.
type Report struct {
	Renewed           int          `json:"renewed"`                      // watches renewed
	Reconciled        int          `json:"reconciled"`                   // mailboxes synced by the safety net
	Skipped           int          `json:"skipped"`                      // due users left for a later run: lease held by a sync, user changed meanwhile, or Gmail answered 429
	Failed            int          `json:"failed"`                       // renewals, syncs or stops that failed; the users stay due
	ReauthRequired    int          `json:"reauth_required"`              // users whose refresh token Gmail refused, now marked reauth_required
	WatchesStopped    int          `json:"watches_stopped"`              // watches of long-reauth_required users stopped, or left to lapse when the token is dead
	RateLimited       int          `json:"rate_limited"`                 // 429s from Gmail, each slowing the limiter
	Announced         int          `json:"announced,omitempty"`          // gmail.user.connected events owed since a failed publish, now published
	Withdrawn         int          `json:"withdrawn,omitempty"`          // connections whose result lapsed unredeemed, now revoked and removed (or, reconnects and moves, forgotten)
	Joined            int          `json:"joined,omitempty"`             // delegation mode: users the directory lists, now watched
	Left              int          `json:"left,omitempty"`               // delegation mode: users it no longer lists, now disconnected
	DelegationRefused bool         `json:"delegation_refused,omitempty"` // Google refused the domain-wide delegation
	Stopped           bool         `json:"stopped"`                      // the time budget ended the run before every due user was taken
	Remaining         int64        `json:"remaining"`                    // renewals plus reconciles still due in its shards when the run ended; -1: not counted
	Shards            store.Shards `json:"shards"`                       // the shards the run walked
	Units             int          `json:"units"`                        // Gmail quota units paced by the limiter
	UnitsPerSecond    float64      `json:"units_per_second"`             // the limiter's rate at the end
	DurationMS        int64        `json:"duration_ms"`
	Firestore         store.Ops    `json:"firestore"` // what the run cost in Firestore, its syncs included
	Error             string       `json:"error,omitempty"`
}

// What one user's work came to.
type outcome int

const (
	nothing outcome = iota
	renewed
	reconciled
	skipped
	failed
	reauth
	watchStopped
	rateLimited
	joined
	left
	announced
	withdrawn
)

// phase is one kind of work over one query of users in a stable order.
type phase struct {
	units int // reserved before each user: a watch, a stop, or a reconcile's
	// first history.list (charged the rest of what its sync spent after)
	list  func(context.Context, int, store.Position, int) ([]store.User, error) // a page of one shard's users
	at    func(store.User) time.Time                                            // the field the query orders by
	wants func(store.User) bool                                                 // nil: every user listed
	do    func(context.Context, store.User) outcome
}

type run struct {
	h       *Handler
	shards  store.Shards    // the shards this run walks
	now     time.Time       // due times are compared with this clock reading
	startBy time.Time       // the end of the budget: no user is started after it
	work    context.Context // in-flight work, cancelled finishGrace after startBy
	stopped bool
	refusal sync.Once // the delegation refusal is logged once per run
	strays  bool      // pushes naming no recorded address wait: each reconcile checks its user's address first

	mu    sync.Mutex
	rep   Report
	units int
}

// Run works through the due users of every shard once and returns the report.
func (h *Handler) Run(ctx context.Context) Report { return h.RunShards(ctx, store.AllShards()) }

// RunShards works through the due users of the shards once and returns the
// report. The run over the range that starts at shard 0 also keeps a
// delegated domain in step with its directory.
func (h *Handler) RunShards(ctx context.Context, shards store.Shards) Report {
	start := time.Now()
	if !shards.Valid() {
		rep := Report{Shards: shards, Error: fmt.Sprintf("shards %d..%d are not a range of 0..%d", shards.From, shards.To, store.ShardCount)}
		h.d.Logger.ErrorContext(ctx, "renew run refused", "report", rep)
		return rep
	}
	ctx, ops := store.Counting(ctx)
	work, cancel := context.WithDeadline(ctx, start.Add(h.set.RunBudget+finishGrace))
	defer cancel()
	r := &run{h: h, shards: shards, now: h.d.Now(), startBy: start.Add(h.set.RunBudget), work: work}
	phases := []phase{
		{units: h.quota.Units(gmailclient.MethodWatch), list: r.due(store.RenewDue), at: func(u store.User) time.Time { return u.RenewAt }, do: r.renew},
		{units: h.quota.Units(gmailclient.MethodHistoryList), list: r.due(store.SyncDue), at: func(u store.User) time.Time { return u.SyncDueAt }, do: r.reconcile},
		{units: h.quota.Units(gmailclient.MethodStop), list: r.reauthWatches, at: func(u store.User) time.Time { return u.WatchExpiration }, wants: r.stopDue, do: r.stopWatch},
	}
	// Owed events go out first, ahead of any later one of their user.
	err := r.walk(phase{list: r.unannounced, at: func(u store.User) time.Time { return u.Notice.At }, do: r.announce})
	if strays, serr := h.d.Users.HasStrays(work, r.now.Add(-store.StrayTTL)); serr != nil {
		h.d.Logger.WarnContext(ctx, "stray pushes not read; addresses left unchecked", "error", serr)
	} else {
		r.strays = strays
	}
	if err == nil && !r.stopped && h.d.Pending != nil {
		err = r.walk(phase{units: h.quota.Units(gmailclient.MethodStop), list: r.lapsed, at: func(u store.User) time.Time { return u.PendingUntil }, do: r.withdraw})
	}
	// A failed directory listing is reported, but skips nothing: the
	// renewals and reconciles of the users already watched go on.
	var domainErr error
	if err == nil && !r.stopped && h.d.Domain != nil && shards.From == 0 {
		domainErr = r.inStep()
	}
	for _, p := range phases {
		if err != nil || r.stopped {
			break
		}
		err = r.walk(p)
	}
	err = errors.Join(domainErr, err)
	rep := r.rep
	rep.Shards = shards
	rep.Stopped, rep.Units, rep.UnitsPerSecond = r.stopped, r.units, h.limiter.rate()
	remaining, cerr := r.remaining(ctx)
	if cerr != nil {
		// The count only reports; failing the run for it would have Pub/Sub
		// or the scheduler run the whole shard range again.
		remaining = -1
		h.d.Logger.WarnContext(ctx, "work left not counted", "error", cerr)
	}
	rep.Remaining = remaining
	rep.DurationMS, rep.Firestore = time.Since(start).Milliseconds(), ops()
	if err != nil {
		rep.Error = err.Error()
		h.d.Logger.ErrorContext(ctx, "renew run failed", "report", rep, "error", err)
		return rep
	}
	h.d.Logger.InfoContext(ctx, "renew run", "report", rep)
	return rep
}

// finishGrace is how long work in flight may go on after the budget, before
// it is cancelled: with the default budget of 8 minutes a run ends within
// 8.5, inside the function's 9-minute timeout.
const finishGrace = 30 * time.Second

// recordTimeout bounds storing what Gmail already did; it runs even when
// the run's work is cancelled, so spent quota is never lost to a cancel.
const recordTimeout = 10 * time.Second

// walk pages through p's users of each of the run's shards, working on
// each user with bounded concurrency, until none is left or the budget ends.
func (r *run) walk(p phase) error {
	var g errgroup.Group
	g.SetLimit(r.h.set.Concurrency)
	defer g.Wait()
	for shard := r.shards.From; shard < r.shards.To; shard++ {
		if err := r.walkShard(&g, p, shard); err != nil || r.stopped {
			return err
		}
	}
	return nil
}

func (r *run) walkShard(g *errgroup.Group, p phase, shard int) error {
	var from store.Position
	for {
		users, err := p.list(r.work, shard, from, r.h.set.PageSize)
		if err != nil {
			if r.work.Err() != nil { // the budget ended during the query
				r.stopped = true
				return nil
			}
			return err
		}
		for _, u := range users {
			if p.wants != nil && !p.wants(u) {
				continue
			}
			if !r.mayStart(p.units) {
				r.stopped = true
				return nil
			}
			g.Go(func() error {
				r.count(p.do(r.work, u))
				return nil
			})
		}
		if len(users) < r.h.set.PageSize {
			return nil
		}
		last := users[len(users)-1]
		from = store.Position{At: p.at(last), Key: last.Key}
	}
}

// mayStart waits for the quota to start work costing units, and reports
// false, spending nothing, when that would not be before startBy.
func (r *run) mayStart(units int) bool {
	if !time.Now().Before(r.startBy) {
		return false
	}
	ctx, cancel := context.WithDeadline(r.work, r.startBy)
	defer cancel()
	if r.h.limiter.wait(ctx, units) != nil {
		return false
	}
	r.spent(units)
	return true
}

func (r *run) spent(units int) {
	r.mu.Lock()
	r.units += units
	r.mu.Unlock()
}

func (r *run) count(o outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch o {
	case renewed:
		r.rep.Renewed++
	case reconciled:
		r.rep.Reconciled++
	case skipped:
		r.rep.Skipped++
	case failed:
		r.rep.Failed++
	case reauth:
		r.rep.ReauthRequired++
	case watchStopped:
		r.rep.WatchesStopped++
	case rateLimited:
		r.rep.RateLimited++
		r.rep.Skipped++
	case joined:
		r.rep.Joined++
	case left:
		r.rep.Left++
	case announced:
		r.rep.Announced++
	case withdrawn:
		r.rep.Withdrawn++
	}
}

func (r *run) due(field string) func(context.Context, int, store.Position, int) ([]store.User, error) {
	return func(ctx context.Context, shard int, from store.Position, limit int) ([]store.User, error) {
		return r.h.d.Users.Due(ctx, shard, field, r.now, from, limit)
	}
}

// noticeGrace is how old an owed connected event must be before a run
// publishes it: younger, the connect that wrote it may still be publishing.
const noticeGrace = 5 * time.Minute

func (r *run) unannounced(ctx context.Context, shard int, from store.Position, limit int) ([]store.User, error) {
	return r.h.d.Users.Unannounced(ctx, shard, r.now.Add(-noticeGrace), from, limit)
}

// announce publishes the connected event an active user's record still
// owes, with the id it was first tried with. A user no longer active had a
// later lifecycle event, which says where it stands: its notice is dropped,
// as a connected event after it would mislead.
func (r *run) announce(ctx context.Context, u store.User) outcome {
	log := r.h.d.Logger.With("user", u.Key)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if u.Status != store.Active {
		if err := r.h.d.Users.ClearNotice(ctx, u.Key, u.Notice.At); err != nil {
			log.ErrorContext(ctx, "owed connected event not dropped", "error", err)
			return failed
		}
		log.InfoContext(ctx, "owed connected event dropped", "status", u.Status, "eventId", lifecycle.Connected(u).ID)
		return nothing
	}
	id, err := r.h.life().Announce(ctx, u)
	if err != nil {
		log.ErrorContext(ctx, "connected event not published", "error", err)
		return failed
	}
	log.InfoContext(ctx, "owed connected event published", "eventId", id)
	return announced
}

func (r *run) lapsed(ctx context.Context, shard int, from store.Position, limit int) ([]store.User, error) {
	return r.h.d.Users.Lapsed(ctx, shard, r.now, from, limit)
}

// withdraw ends a connection whose result the application did not redeem
// in time: a page of them at a time, like every phase, never a scan of all
// users. Nothing is published: the application never learned of it.
func (r *run) withdraw(ctx context.Context, u store.User) outcome {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := r.h.d.Pending.Abandon(ctx, u); err != nil {
		r.h.d.Logger.ErrorContext(ctx, "lapsed connection not withdrawn", "user", u.Key, "error", err)
		return failed
	}
	return withdrawn
}

func (r *run) reauthWatches(ctx context.Context, shard int, from store.Position, limit int) ([]store.User, error) {
	return r.h.d.Users.ReauthWatches(ctx, shard, r.now, from, limit)
}

// remaining counts the renewals and reconciles still due in the run's shards.
func (r *run) remaining(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var n int64
	for _, field := range []string{store.RenewDue, store.SyncDue} {
		c, err := r.h.d.Users.CountDue(ctx, r.shards, field, r.now)
		if err != nil {
			return n, err
		}
		n += c
	}
	return n, nil
}

// renew calls users.watch again and stores the new expiration.
func (r *run) renew(ctx context.Context, u store.User) outcome {
	log := r.h.d.Logger.With("user", u.Key)
	var expires time.Time
	err := r.h.d.Gmail.Do(ctx, u, func(svc *gmail.Service) (err error) {
		_, expires, err = r.h.set.Watch.Watch(ctx, svc)
		return err
	})
	switch {
	case gmailclient.IsInvalidGrant(err):
		return r.credentialsRefused(ctx, u.Key, err)
	case gmailclient.IsRateLimited(err):
		r.h.limiter.slowDown()
		level, msg := slog.LevelWarn, "watch renewal rate limited"
		if u.WatchExpiration.Before(r.now.Add(r.h.set.Watch.RenewBefore / 2)) {
			level, msg = slog.LevelError, "watch close to expiry"
		}
		log.Log(ctx, level, msg, "watchExpiration", u.WatchExpiration, "error", err)
		return rateLimited
	case err != nil:
		log.ErrorContext(ctx, "watch renewal failed", "watchExpiration", u.WatchExpiration, "error", err)
		return failed
	}
	r.h.limiter.speedUp()
	now := r.h.d.Now()
	active := true
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	_, err = r.h.d.Users.Update(ctx, u.Key, func(v *store.User) error {
		if active = v.Status == store.Active; !active {
			return store.ErrNoChange // disconnected or marked meanwhile
		}
		v.WatchExpiration, v.LastRenewAt = expires, now
		v.RenewAt = r.h.set.Watch.NextRenewal(expires, now)
		return nil
	})
	switch {
	case err != nil:
		log.ErrorContext(ctx, "watch renewed but not recorded", "error", err)
		return failed
	case !active:
		return skipped
	}
	log.DebugContext(ctx, "watch renewed", "watchExpiration", expires)
	return renewed
}

// reconcile runs the shared sync for a user whose pushes may have been
// lost. While pushes naming no recorded address wait, it first reads the
// user's profile (1 unit): a user whose address changed gets no pushes
// until its record has the new address.
func (r *run) reconcile(ctx context.Context, u store.User) outcome {
	spent := 0
	if r.strays {
		units, err := r.h.d.Syncer.CheckAddress(ctx, u.Key)
		if err != nil {
			r.h.d.Logger.WarnContext(ctx, "address not checked", "user", u.Key, "error", err)
		}
		spent = units
	}
	res, err := r.h.d.Syncer.Sync(ctx, u.Key)
	if extra := spent + res.Units - r.h.quota.Units(gmailclient.MethodHistoryList); extra > 0 {
		r.h.limiter.debit(extra)
		r.spent(extra)
	}
	switch {
	case gmailclient.IsRateLimited(err):
		r.h.limiter.slowDown()
		r.h.d.Logger.WarnContext(ctx, "reconcile rate limited", "user", u.Key, "error", err)
		return rateLimited
	case err != nil:
		r.h.d.Logger.ErrorContext(ctx, "reconcile failed", "user", u.Key, "error", err)
		return failed
	}
	switch res.Outcome {
	case gmailsync.Synced:
		r.h.limiter.speedUp()
		return reconciled
	case gmailsync.ReauthRequired:
		return reauth
	case gmailsync.Failed: // logged by the sync
		return failed
	}
	return skipped // busy, or no longer active
}

// credentialsRefused records Google's refusal of a user's credentials (cause): the
// user is reauth_required once it stands (gmailsync.Refused), else left
// for the next run to try again.
func (r *run) credentialsRefused(ctx context.Context, key string, cause error) outcome {
	stands, err := r.h.d.Syncer.Refused(ctx, key, cause)
	switch {
	case err != nil:
		r.h.d.Logger.ErrorContext(ctx, "reauth not recorded", "user", key, "error", err)
		return failed
	case !stands:
		return skipped
	}
	return reauth
}

// stopDue reports whether a reauth_required user has waited REAUTH_STOP_AFTER.
func (r *run) stopDue(u store.User) bool {
	return !u.ReauthSince.IsZero() && !r.now.Before(u.ReauthSince.Add(r.h.set.ReauthStopAfter))
}

// stopWatch ends the watch of a user who has not consented again for
// REAUTH_STOP_AFTER. Its refresh token is most likely dead (that is why it
// is reauth_required), and then Gmail lets nothing be done: the watch lapses
// by itself at its expiration, at most 7 days after its last renewal. Either
// way the user's watchExpiration is set to now, recording that the watch is
// no longer live for the system, so it is not tried again every hour; a
// retryable failure leaves it for the next run.
func (r *run) stopWatch(ctx context.Context, u store.User) outcome {
	log := r.h.d.Logger.With("user", u.Key)
	err := r.h.d.Gmail.Do(ctx, u, func(svc *gmail.Service) error { return gmailclient.Stop(ctx, svc) })
	switch {
	case err == nil:
		log.InfoContext(ctx, "watch stopped", "reauthSince", u.ReauthSince)
	case gmailclient.IsRateLimited(err):
		r.h.limiter.slowDown()
		log.WarnContext(ctx, "watch stop rate limited", "error", err)
		return rateLimited
	case gmailclient.IsInvalidGrant(err) || !gmailclient.IsRetryable(err):
		log.InfoContext(ctx, "watch left to lapse", "watchExpiration", u.WatchExpiration, "reason", err)
	default:
		log.WarnContext(ctx, "watch stop failed", "error", err)
		return failed
	}
	now := r.h.d.Now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	_, err = r.h.d.Users.Update(ctx, u.Key, func(v *store.User) error {
		if v.Status != store.ReauthRequired || !v.WatchExpiration.After(now) {
			return store.ErrNoChange // consented again meanwhile, or already recorded
		}
		v.WatchExpiration = now
		return nil
	})
	if err != nil {
		log.ErrorContext(ctx, "watch stop not recorded", "error", err)
		return failed
	}
	return watchStopped
}
