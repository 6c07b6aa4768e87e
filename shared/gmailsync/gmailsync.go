// Package gmailsync turns "the mailbox changed up to history id N" into
// events: one gmail.message.received per new message and, when EVENT_TYPES
// switches them on, gmail.message.sent, .labels_changed and .deleted.
//
// It guarantees, per user:
//   - each event is announced exactly once (an announced marker keyed by the
//     event id is written before the cursor moves) and in history order;
//   - the cursor never moves backwards, and only past what was announced;
//   - one sync at a time (a lease, kept alive while the holder works and
//     short enough that a holder that dies blocks nobody for long); a push
//     that finds it held only raises the pending id the holder reads next,
//     with one write, so pushes never queue behind a sync and nothing locks
//     the record;
//   - a message that lands within the second after a push, whose own push
//     Gmail may drop, is still seen: the sync looks once more TrailDelay
//     after the latest push, in the same invocation (it holds one of the
//     requests an instance serves at once, not the instance);
//   - history that lags what Gmail reported ends in ErrHistoryLag with the
//     pending id raised, so Pub/Sub's redelivery reads again;
//   - a refused grant makes the user reauth_required, once (Refused,
//     MarkReauth; the event is shared/lifecycle's).
//
// Use: build one Syncer with New (the store, the Gmail client factory, the
// events publisher, a clock) and share it; it is safe for concurrent use.
// The notify function calls OnPush for every Gmail push; the renew function
// calls Sync for users due for the safety-net reconcile; the accounts API
// calls Sync for a resync and MarkReauth when Google refuses a token. A
// returned error is worth a retry (Pub/Sub's redelivery, the next run);
// Result says what was done and what it cost.
//
// Why it works this way (drop semantics, the trailing look, history lag):
// docs/sync-design.md.
package gmailsync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/lifecycle"
	"github.com/gmailwatch/gmailwatch/shared/mailbody"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/googleapis/gax-go/v2"
)

// ErrHistoryLag ends a sync whose history still does not show what its push
// announced, or shows a message Gmail cannot read yet, after the rechecks:
// the cursor stays before it, and the error is worth a retry.
var ErrHistoryLag = errors.New("history lags the push")

// Outcomes of a push or a sync.
const (
	Synced         = "synced"          // the lease was taken and history read
	Stale          = "stale"           // the push was not ahead of the cursor: no Gmail call
	Busy           = "busy"            // another sync holds the lease; the push's id is recorded as pending
	Inactive       = "inactive"        // the user is not active (reauth_required or disconnected)
	Unknown        = "unknown"         // no such user
	ReauthRequired = "reauth_required" // Gmail refused the refresh token: the user must consent again
	Failed         = "failed"          // Gmail refused for good (logged); the cursor stays, a later sync retries
)

// Deps are what a Syncer works with.
type Deps struct {
	Users  *store.Store
	Gmail  *gmailclient.Factory
	Events *events.Publisher
	Logger *slog.Logger
	Now    func() time.Time // nil: time.Now
}

// Settings tune a Syncer; zero fields take the defaults ReadSettings documents.
type Settings struct {
	Types          []string      // mailbox event types announced (events.ReadTypes)
	Labels         []string      // watched labels for users whose record names none
	LabelFilter    string        // include or exclude, likewise
	LeaseTTL       time.Duration // how long a lease lasts unless its heartbeat renews it (every third of it)
	GetConcurrency int           // messages.get calls in flight per sync: under Gmail's per-user cap of 5, one left for other calls
	MarkerTTL      time.Duration // how long an announced marker is kept
	CatchUpChunk   int           // messages a catch-up lists and announces before its checkpoint moves
	MaxTries       int           // tries of one Gmail call on 429/5xx
	BackoffBase    time.Duration // first backoff; doubles per try, full jitter
	BackoffMax     time.Duration
	RecheckDelay   time.Duration     // wait before reading history again after an early push
	Rechecks       int               // such waits per call before leaving the push pending
	TrailDelay     time.Duration     // look at the mailbox again this long after the latest push
	ReconcileAfter time.Duration     // next safety-net sync after a complete one
	RefusalTries   int               // a delegated user's invalid_grant stands after this many (Refused); default 3
	RefusalGrace   time.Duration     // ... over at least this long; default 15 minutes
	Content        mailbody.Settings // message content in events (mailbody.ReadSettings); zero: none
}

// ReadSettings reads the sync settings from r. The watched labels and the
// event types are the watch's (gmailclient.ReadLabels, events.ReadTypes):
// the caller sets them.
func ReadSettings(r *config.Reader) Settings {
	return Settings{
		LeaseTTL:       r.Duration("SYNC_LEASE_TTL", 10*time.Second),
		GetConcurrency: r.Int("SYNC_GET_CONCURRENCY", 4, 1, 100),
		MarkerTTL:      r.Duration("MARKER_TTL", 14*24*time.Hour),
		CatchUpChunk:   r.Int("CATCHUP_CHUNK", 100, 1, 500),
		MaxTries:       r.Int("GMAIL_MAX_TRIES", 5, 1, 20),
		BackoffBase:    r.Duration("GMAIL_BACKOFF", 250*time.Millisecond),
		BackoffMax:     r.Duration("GMAIL_BACKOFF_MAX", 8*time.Second),
		RecheckDelay:   r.Duration("RECHECK_DELAY", 2*time.Second),
		Rechecks:       r.Int("RECHECKS", 2, 0, 10),
		TrailDelay:     r.Duration("TRAIL_DELAY", 1200*time.Millisecond),
		ReconcileAfter: gmailclient.ReadReconcileAfter(r),
		RefusalTries:   3,
		RefusalGrace:   15 * time.Minute,
	}
}

func (s Settings) withDefaults() Settings {
	r := config.NewReader(config.FromMap(nil))
	d := ReadSettings(r)
	if len(s.Labels) == 0 {
		s.Labels, _ = gmailclient.ReadLabels(r)
	}
	if len(s.Types) == 0 {
		s.Types = events.ReadTypes(r)
	}
	if s.LabelFilter == "" {
		_, s.LabelFilter = gmailclient.ReadLabels(r)
	}
	for _, p := range []struct{ v, def *time.Duration }{
		{&s.LeaseTTL, &d.LeaseTTL}, {&s.MarkerTTL, &d.MarkerTTL}, {&s.BackoffBase, &d.BackoffBase},
		{&s.BackoffMax, &d.BackoffMax}, {&s.RecheckDelay, &d.RecheckDelay}, {&s.ReconcileAfter, &d.ReconcileAfter},
		{&s.TrailDelay, &d.TrailDelay}, {&s.RefusalGrace, &d.RefusalGrace},
	} {
		if *p.v <= 0 {
			*p.v = *p.def
		}
	}
	for _, p := range []struct{ v, def *int }{
		{&s.GetConcurrency, &d.GetConcurrency}, {&s.CatchUpChunk, &d.CatchUpChunk}, {&s.MaxTries, &d.MaxTries},
		{&s.RefusalTries, &d.RefusalTries},
	} {
		if *p.v <= 0 {
			*p.v = *p.def
		}
	}
	return s
}

// Syncer runs the sync algorithm. It is safe for concurrent use.
type Syncer struct {
	users  *store.Store
	gmail  *gmailclient.Factory
	events *events.Publisher
	life   *lifecycle.Lifecycle
	log    *slog.Logger
	now    func() time.Time
	set    Settings
}

// New returns a Syncer.
func New(deps Deps, settings Settings) *Syncer {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	return &Syncer{users: deps.Users, gmail: deps.Gmail, events: deps.Events,
		life: lifecycle.New(deps.Users, deps.Events, deps.Now), log: deps.Logger, now: deps.Now, set: settings.withDefaults()}
}

// Result tells what a push or sync did. With an error, Outcome is Synced (the
// lease was taken) and the counters say how far the sync got.
type Result struct {
	User          string // the user key (OnPush, once known)
	Outcome       string
	Announced     int       // events published
	FromHistoryID int64     // cursor before
	ToHistoryID   int64     // cursor after
	Pending       int64     // pendingHistoryId left ahead of the cursor, 0 if none
	Calls, Units  int       // Gmail calls made and quota units they cost
	Rounds        int       // history reads
	CaughtUp      bool      // the cursor was too old and messages.list filled in
	Firestore     store.Ops // what the call cost in Firestore
}

// OnPush handles Gmail's notification that email's mailbox changed up to
// historyID. A returned error is worth a retry; permanent problems are
// logged and reported in Result.Outcome with a nil error.
func (s *Syncer) OnPush(ctx context.Context, email string, historyID int64) (Result, error) {
	if historyID <= 0 {
		return Result{}, fmt.Errorf("push at history id %d: not positive", historyID)
	}
	// Keys derive from Google's account id, not from the address, so the
	// store is asked; the record it returns is the run's first read.
	res, err := s.counted(ctx, historyID, func(ctx context.Context) (store.User, error) { return s.users.ByEmail(ctx, email) })
	if err == nil && res.Outcome == Unknown {
		// Perhaps a mailbox whose address changed: kept until a sync's
		// getProfile shows whose it is (noteAddress).
		if err := s.users.KeepStray(ctx, email, historyID, s.now()); err != nil {
			return res, fmt.Errorf("push for an unknown address: %w", err)
		}
	}
	return res, err
}

// Sync reads the user's history from the cursor whether or not a push asked,
// under the same lease and with the same algorithm as OnPush.
func (s *Syncer) Sync(ctx context.Context, userKey string) (Result, error) {
	return s.counted(ctx, 0, func(ctx context.Context) (store.User, error) { return s.users.Get(ctx, userKey) })
}

// counted reads the user with read, then runs and logs the call, its
// Firestore operations counted.
func (s *Syncer) counted(ctx context.Context, pushID int64, read func(context.Context) (store.User, error)) (Result, error) {
	start := time.Now()
	ctx, ops := store.Counting(ctx)
	u, err := read(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return Result{Outcome: Unknown}, nil // the caller says what it makes of an unknown user
	}
	if err != nil {
		return Result{}, err
	}
	res, err := s.run(ctx, u, pushID)
	res.User, res.Firestore = u.Key, ops()
	if res.Outcome != Unknown {
		s.logSync(ctx, u.Key, res, time.Since(start), err)
	}
	return res, err
}

func (s *Syncer) skipped(key, outcome string, u store.User) Result {
	return Result{Outcome: outcome, FromHistoryID: u.Cursor, ToHistoryID: u.Cursor}
}

// run takes the lease of u, as just read, for a push of pushID (0: a
// reconcile) and syncs until nothing is pending, or records the push as
// pending when the lease is held.
//
// Nothing here is a transaction on the user's record, so duplicated pushes
// and pushes during a sync never wait on its lock: a plain read decides; a
// push the holder must still see raises the pending id with one write (a
// server-side maximum) and reads again, since the holder may have released
// the lease in between without seeing it; a claim is a compare-and-set on
// the version read. Committed state only grows (cursor, pending), so what a
// read shows covered stays covered.
func (s *Syncer) run(ctx context.Context, u store.User, pushID int64) (Result, error) {
	key, holder := u.Key, newHolder()
	for tries := 0; tries < claimTries; tries++ {
		var err error
		if tries > 0 {
			u, err = s.users.Get(ctx, key)
		}
		switch {
		case errors.Is(err, store.ErrNotFound):
			return Result{Outcome: Unknown}, nil
		case err != nil:
			return Result{}, fmt.Errorf("lease of %s: %w", key, err)
		case u.Status != store.Active:
			return s.skipped(key, Inactive, u), nil
		case pushID > 0 && pushID <= u.Cursor && pushID <= u.PendingHistoryID && u.PendingHistoryID <= u.Cursor:
			// Read past, and a push as new was seen before it, whose look
			// after its second covers this one's (Gmail pushes in history
			// order). A push the cursor passed without one (a reconcile
			// read it, or it came late) still gets its look, and while
			// history lags (pending ahead of the cursor) a redelivery reads.
			return s.skipped(key, Stale, u), nil
		}
		now := s.now()
		if u.Lease.HeldBy(holder, now) {
			if pushID <= u.PendingHistoryID { // recorded before this read, so before the holder's next write
				res := s.skipped(key, Busy, u)
				res.Pending = pendingOf(u)
				return res, nil
			}
			// If the holder dies, the next push or the safety net (due when
			// the lease lapses, see store.Claim) finds the user.
			if err := s.users.RaisePending(ctx, key, pushID, now); err != nil {
				return Result{}, fmt.Errorf("lease of %s: %w", key, err)
			}
			continue
		}
		u, ok, err := s.users.Claim(ctx, u, store.Lease{Holder: holder, Until: now.Add(s.set.LeaseTTL)}, pushID, now)
		if err != nil {
			return Result{}, fmt.Errorf("lease of %s: %w", key, err)
		}
		if ok {
			return s.holding(ctx, u, holder, pushID > 0)
		}
	}
	return Result{}, fmt.Errorf("lease of %s: the record changed under %d claims", key, claimTries)
}

// claimTries bounds the reads of one push or sync whose record keeps
// changing under it; each failed try is another push's or sync's progress.
const claimTries = 20

// holding syncs while the lease is held: a round per pending history id,
// a short recheck when history lags behind a push, and a trailing look at
// the mailbox once the second after the latest push has passed. pushed says
// whether a push claimed the lease; a reconcile looks only after pushes
// that arrive while it holds it.
func (s *Syncer) holding(ctx context.Context, u store.User, holder string, pushed bool) (res Result, err error) {
	l := s.keep(ctx, u, holder)
	defer l.stop()
	ctx = l.ctx
	m := &meter{quota: s.gmail.Settings().Quota}
	res = Result{Outcome: Synced, FromHistoryID: u.Cursor, ToHistoryID: u.Cursor}
	defer func() {
		res.Calls, res.Units = int(m.calls.Load()), int(m.units.Load())
		if err != nil && errors.Is(context.Cause(ctx), errLeaseLost) {
			err = fmt.Errorf("%w: %w", context.Cause(ctx), err)
		}
	}()
	lk := &looks{}
	if !pushed {
		lk.since = s.now()
	}
	// A push the cursor already passed owes only its look: no read before it.
	passed := pushed && u.PendingHistoryID <= u.Cursor && u.CatchUp == nil
	for {
		target := u.PendingHistoryID
		read := s.now()
		final := lk.rechecks >= s.set.Rechecks || !s.fits(ctx, s.set.RecheckDelay)
		r := roundResult{historyID: u.Cursor, reported: u.Cursor}
		if !passed {
			r, err = s.round(ctx, u, m)
			res.Rounds++
			res.Announced += r.announced
			res.CaughtUp = res.CaughtUp || r.caughtUp
			if err != nil {
				return s.failed(ctx, u, l, res, err)
			}
		}
		passed = false
		if target, err = s.stalledAt(ctx, u, m, r, read, target, lk); err != nil {
			return s.failed(ctx, u, l, res, err)
		}
		wait := r.historyID < target && !final
		at := s.trailAt(u, read)
		trail := !wait && !at.IsZero() && u.LastNotificationAt.After(lk.trailed) && s.fits(ctx, at.Sub(s.now()))
		next, more, err := s.advance(ctx, l, r.historyID, target, wait || trail)
		if err != nil {
			_ = s.release(ctx, l)
			return res, err
		}
		u = next
		res.ToHistoryID, res.Pending = u.Cursor, pendingOf(u)
		if !more {
			if r.missing > 0 || u.PendingHistoryID > u.Cursor {
				// Gmail's indexing lags longer than the rechecks: a
				// redelivery of the push comes back in seconds.
				return res, fmt.Errorf("user %s at %d: %w", u.Key, u.Cursor, ErrHistoryLag)
			}
			return res, nil
		}
		if u.PendingHistoryID > target {
			lk.trailing = false
			continue // a later push is pending: read for it now
		}
		pause := s.set.RecheckDelay
		if wait {
			lk.rechecks++
		} else {
			pause, lk.trailing, lk.trailed = at.Sub(s.now()), true, u.LastNotificationAt
		}
		if err := gax.Sleep(ctx, pause); err != nil {
			_ = s.release(ctx, l)
			return res, err
		}
		// Pushes that came meanwhile found the lease held and only raised
		// the pending id: read the user again before deciding what is left.
		fresh, err := s.users.Get(ctx, u.Key)
		if err != nil {
			_ = s.release(ctx, l)
			return res, fmt.Errorf("user %s: %w", u.Key, err)
		}
		u = fresh
		if wait || u.PendingHistoryID > u.Cursor || !r.complete() {
			continue
		}
		// The last read showed every record up to the history id Gmail
		// reported: one getProfile (1 unit, against 2 for history.list)
		// tells whether anything changed since.
		if err := s.profile(ctx, u, m, lk); err != nil {
			return s.failed(ctx, u, l, res, err)
		}
		if lk.profiled > r.reported {
			continue
		}
		if u, _, err = s.advance(ctx, l, u.Cursor, u.PendingHistoryID, false); err != nil {
			_ = s.release(ctx, l)
			return res, err
		}
		res.ToHistoryID, res.Pending = u.Cursor, pendingOf(u)
		return res, nil
	}
}

// looks is what a holding sync carries from round to round.
type looks struct {
	rechecks   int       // history rereads spent on a stalled read
	trailing   bool      // this round is the look after a push's second
	trailed    time.Time // the push that look was for: one look per push, whatever the clock does
	since      time.Time // pushes from then on get a look
	profiled   int64     // the mailbox's history id as getProfile last told it
	profiledAt time.Time // when
}

// stalledAt returns the history id the round r (begun at read, for
// target) must have reached for u's sync not to be stalled: history does
// not show the push yet or, in the look after a push's second (this round,
// or one that began after it), the records up to the mailbox's history id,
// whose own pushes may have been dropped. history.list may report the
// newest record it shows rather than that id, so the look takes it from
// getProfile.
func (s *Syncer) stalledAt(ctx context.Context, u store.User, m *meter, r roundResult, read time.Time, target int64, lk *looks) (int64, error) {
	pushAt := u.LastNotificationAt
	if at := pushAt.Add(s.set.TrailDelay); lk.trailing || (!pushAt.IsZero() && !pushAt.Before(lk.since) && !read.Before(at)) {
		if r.complete() && lk.profiledAt.Before(at) {
			if err := s.profile(ctx, u, m, lk); err != nil {
				return target, err
			}
		}
		target = max(target, r.reported, lk.profiled)
	}
	// A refusal decided while records were hidden may be wrong (the
	// message may have been archived by one of them), and a message
	// history shows that messages.get cannot find yet is not passed:
	// read again, and once rechecks are spent end in ErrHistoryLag with
	// the cursor before it.
	if (r.refused > 0 && !r.complete()) || r.missing > 0 {
		target = max(target, r.reported)
	}
	return target, nil
}

// profile asks getProfile for the mailbox's history id, and remembers when.
func (s *Syncer) profile(ctx context.Context, u store.User, m *meter, lk *looks) error {
	h, err := s.current(ctx, u, m)
	if err != nil {
		return err
	}
	lk.profiled, lk.profiledAt = h, s.now()
	return nil
}

// trailAt is when the sync should look at the mailbox again after the
// latest push, or zero when the read that began at read already was that
// look. Gmail sends at most one notification a second per user and drops
// the rest, so a change within the second after a push may never be pushed:
// only a read after that second finds it.
func (s *Syncer) trailAt(u store.User, read time.Time) time.Time {
	if u.LastNotificationAt.IsZero() {
		return time.Time{}
	}
	at := u.LastNotificationAt.Add(s.set.TrailDelay)
	if !read.Before(at) {
		return time.Time{}
	}
	return at
}

// current returns the mailbox's history id (getProfile).
func (s *Syncer) current(ctx context.Context, u store.User, m *meter) (h int64, err error) {
	err = s.gmail.Do(ctx, u, func(svc *gmail.Service) (err error) {
		h, err = s.profileID(ctx, svc, u, m)
		return err
	})
	return h, err
}

// fits reports whether d and a round's margin still fit in the call's
// deadline; the heartbeat keeps the lease meanwhile.
func (s *Syncer) fits(ctx context.Context, d time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || s.now().Add(d+roundMargin).Before(dl)
}

func pendingOf(u store.User) int64 {
	if u.PendingHistoryID > u.Cursor {
		return u.PendingHistoryID
	}
	return 0
}

// advance moves the cursor to historyID (never back) and decides, in the same
// write, whether the holder goes on (a later push is pending, or it
// keeps the lease to read again: a recheck of a lagging push, or the look
// after a push's second) or releases the lease.
func (s *Syncer) advance(ctx context.Context, l *lease, historyID, target int64, keep bool) (u store.User, more bool, err error) {
	err = l.write(func() (err error) {
		u, err = s.users.Update(ctx, l.key, func(u *store.User) error {
			now := s.now()
			more = false
			u.Cursor = max(u.Cursor, historyID)
			u.PendingHistoryID = max(u.PendingHistoryID, target) // what the holder found history lagging behind
			u.LastSyncAt = now
			u.Refusals, u.RefusedSince = 0, time.Time{} // the credentials worked
			mine := u.Lease.Holder == l.holder
			switch {
			case mine && u.Status == store.Active && (keep || u.PendingHistoryID > max(target, u.Cursor)):
				more = true
				u.Lease.Until = now.Add(s.set.LeaseTTL)
				u.SyncDueAt = u.Lease.Until
				return nil
			case u.PendingHistoryID <= u.Cursor:
				u.SyncDueAt = now.Add(s.set.ReconcileAfter)
			default:
				u.SyncDueAt = now // history still lags a push: the next push or the safety net finishes it
			}
			if mine {
				u.Lease = store.Lease{}
			}
			return nil
		})
		return err
	})
	if err != nil {
		return u, false, fmt.Errorf("advance cursor of %s to %d: %w", l.key, historyID, err)
	}
	return u, more, nil
}

// release gives the lease back after a failed round and marks the user due
// for the safety net. It runs even when ctx is done.
func (s *Syncer) release(ctx context.Context, l *lease) error {
	l.halt() // what follows a release (MarkReauth) must not see the lease lost
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return l.write(func() error {
		_, err := s.users.Update(ctx, l.key, func(u *store.User) error {
			if u.Lease.Holder != l.holder {
				return store.ErrNoChange
			}
			u.Lease = store.Lease{}
			u.SyncDueAt = s.now()
			return nil
		})
		return err
	})
}

// failed ends a sync whose round failed: invalid_grant marks the user for
// reauthorization, other permanent errors are logged, retryable ones returned.
func (s *Syncer) failed(ctx context.Context, u store.User, l *lease, res Result, err error) (Result, error) {
	if rerr := s.release(ctx, l); rerr != nil {
		s.log.WarnContext(ctx, "lease not released", "user", u.Key, "error", rerr)
	}
	switch {
	case gmailclient.IsInvalidGrant(err):
		stands, rerr := s.Refused(ctx, u.Key, err)
		if rerr != nil {
			return res, rerr
		}
		if !stands { // a delegated user's refusal that may pass: a redelivery tries again
			return res, err
		}
		res.Outcome = ReauthRequired
		return res, nil
	case errors.Is(err, ErrCatchingUp):
		return res, err
	case errors.Is(err, gmailclient.ErrNoRefreshToken) || (!gmailclient.IsRetryable(err) && ctx.Err() == nil):
		// A retry would fail alike; the push stays pending and the safety net tries again later.
		res.Outcome = Failed
		s.log.ErrorContext(ctx, "sync refused for good", "user", u.Key, "error", err)
		return res, nil
	}
	return res, err
}

// MarkReauth moves an active user to reauth_required and publishes
// gmail.user.reauth_required (lifecycle.Lifecycle.MarkReauth, which says
// in what order); it reports whether this call made the change.
func (s *Syncer) MarkReauth(ctx context.Context, userKey string) (bool, error) {
	changed, ev, err := s.life.MarkReauth(ctx, userKey)
	if err != nil {
		return false, err
	}
	if ev.ID == "" {
		return false, nil
	}
	s.gmail.Forget(userKey)
	switch {
	case changed && ev.Reconnect == "": // delegated: the admin is told once, by the renew run's delegation alert
		s.log.WarnContext(ctx, "delegated user refused", "user", userKey, "eventId", ev.ID)
	case changed:
		s.log.WarnContext(ctx, "user must consent again", "user", userKey, "eventId", ev.ID)
	}
	return changed, nil
}

func (s *Syncer) logSync(ctx context.Context, key string, res Result, d time.Duration, err error) {
	attrs := []any{
		"user", key, "outcome", res.Outcome, "fromHistoryId", res.FromHistoryID, "toHistoryId", res.ToHistoryID,
		"messages", res.Announced, "calls", res.Calls, "units", res.Units, "rounds", res.Rounds,
		"durationMs", d.Milliseconds(), "firestoreReads", res.Firestore.Reads, "firestoreWrites", res.Firestore.Writes,
		"firestoreTransactions", res.Firestore.Transactions,
	}
	if res.Pending > 0 {
		attrs = append(attrs, "pendingHistoryId", res.Pending)
	}
	if res.CaughtUp {
		attrs = append(attrs, "caughtUp", true)
	}
	if err != nil {
		s.log.WarnContext(ctx, "sync failed, will retry", append(attrs, "error", err)...)
		return
	}
	s.log.InfoContext(ctx, "sync", attrs...)
}

// roundMargin is kept free before the call's deadline for one more round.
const roundMargin = 5 * time.Second

func newHolder() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// meter counts Gmail calls and their quota units, at the project's costs;
// rounds fetch concurrently. While a catch-up runs, it paces the calls.
type meter struct {
	quota        gmailclient.QuotaProfile
	calls, units atomic.Int64
	pace         *rate.Limiter // nil: no pacing
}

// add counts a call to method, after waiting for its units when paced. It
// fails, counting nothing, when they cannot be had before ctx's deadline.
func (m *meter) add(ctx context.Context, method string) error {
	n := m.quota.Units(method)
	if m.pace != nil {
		if err := m.pace.WaitN(ctx, n); err != nil {
			return fmt.Errorf("%s: %w: pacing to the per-user rate: %v", method, ErrCatchingUp, err)
		}
	}
	m.calls.Add(1)
	m.units.Add(int64(n))
	return nil
}
