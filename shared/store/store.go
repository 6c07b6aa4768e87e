// Package store keeps the system's state in Firestore: one document per
// connected Gmail user (status, history cursor, watch, lease) under users/,
// and per-message "announced" markers under users/{key}/messages/ that keep
// retries and catch-up from announcing a message twice. A change that depends
// on the user's record is one write conditioned on the version read (Update,
// Claim: a compare-and-set, tried again on the new version) or a field
// transform the server applies (RaisePending), never a transaction, so no
// writer waits on the record's lock; the cursor only moves forward. Connect,
// Redeem, the link changes and MoveUser run in transactions.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// User statuses.
const (
	Active         = "active"
	ReauthRequired = "reauth_required"
	Disconnected   = "disconnected"
)

// ErrNotFound means there is no record for the user.
var ErrNotFound = errors.New("user not found")

// ErrOtherRef means the mailbox is connected under another application
// reference, and the connection did not ask to move it.
var ErrOtherRef = errors.New("mailbox connected under another reference")

// ErrNoChange, returned by an Update function, ends the Update without a write.
var ErrNoChange = errors.New("no change")

// User is the record of one connected mailbox. History ids are Gmail's
// (uint64 in the API); Firestore stores int64, which they fit.
type User struct {
	Key                string    `firestore:"-"`
	Shard              int       `firestore:"shard"` // ShardOf(Key): the first field of every index on a time field
	Email              string    `firestore:"email"`
	Sub                string    `firestore:"sub"`    // Google's account id; "" on records keyed by address, before migration
	AppRef             string    `firestore:"appRef"` // the application's reference, from the connect link
	Status             string    `firestore:"status"`
	Cursor             int64     `firestore:"cursor"`           // last history id fully announced
	PendingHistoryID   int64     `firestore:"pendingHistoryId"` // newest history id a push has told of
	Labels             []string  `firestore:"labels"`
	LabelFilter        string    `firestore:"labelFilter"` // include or exclude
	WatchExpiration    time.Time `firestore:"watchExpiration"`
	RenewAt            time.Time `firestore:"renewAt"`   // when the watch is next due for renewal
	SyncDueAt          time.Time `firestore:"syncDueAt"` // when the safety-net sync is next due
	LastNotificationAt time.Time `firestore:"lastNotificationAt"`
	LastSyncAt         time.Time `firestore:"lastSyncAt"`
	LastRenewAt        time.Time `firestore:"lastRenewAt"`
	ConnectedAt        time.Time `firestore:"connectedAt"`
	ActiveSince        time.Time `firestore:"activeSince"` // when the latest connection made it active; keys its reauth_required event
	ReauthSince        time.Time `firestore:"reauthSince"`
	UpdatedAt          time.Time `firestore:"updatedAt"`
	Lease              Lease     `firestore:"lease"`
	Delegated          bool      `firestore:"delegated"`               // watched through domain-wide delegation: no refresh token
	LeftAt             time.Time `firestore:"leftAt,omitempty"`        // a delegated user the directory stopped listing: when it was disconnected
	Refusals           int       `firestore:"refusals,omitempty"`      // invalid_grant answers since the last sync that worked (a delegated user's may pass)
	RefusedSince       time.Time `firestore:"refusedSince,omitempty"`  // the first of them
	OptedOut           bool      `firestore:"optedOut,omitempty"`      // disconnected at the user's own request: the directory does not bring it back (consent does)
	MovedTo            string    `firestore:"movedTo,omitempty"`       // a migrated legacy record: the key it moved to
	Notice             *Notice   `firestore:"notice,omitempty"`        // the last connection's gmail.user.connected, until published
	Farewell           time.Time `firestore:"farewell,omitempty"`      // the disconnected event's time, while it is owed (lifecycle.Disconnect)
	CatchUp            *CatchUp  `firestore:"catchUp,omitempty"`       // a catch-up in progress, see CatchUp
	PendingResult      string    `firestore:"pendingResult,omitempty"` // the connect result (Result.ID) that confirms the latest consent, until redeemed
	PendingUntil       time.Time `firestore:"pendingUntil,omitempty"`  // when that result lapses; only while one is owed
	Version            time.Time `firestore:"-"`                       // the record's update time as read, for Claim
}

// Lease marks the one sync of a user in progress; it lapses at Until, so a
// crashed holder blocks nobody for long.
type Lease struct {
	Holder string    `firestore:"holder"`
	Until  time.Time `firestore:"until"`
}

// Activation is when the record last became active: a reauth_required
// event is keyed by it, so the refusal after a reconnect is a new event,
// not a repeat of the one before (ConnectedAt for records from before
// ActiveSince was kept).
func (u User) Activation() time.Time {
	if u.ActiveSince.IsZero() {
		return u.ConnectedAt
	}
	return u.ActiveSince
}

// HeldBy reports whether someone other than holder holds the lease at now.
func (l Lease) HeldBy(holder string, now time.Time) bool {
	return l.Holder != "" && l.Holder != holder && now.Before(l.Until)
}

// Key returns the address-derived user key: a plain hash of the lower-cased
// address. Records made before keys derived from Google's account id (Keyer)
// carry it until scripts/migrate-keys moves them; tests and benchmarks that
// make users without a consent flow use it too.
func Key(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
	return hex.EncodeToString(sum[:16])
}

// Store reads and writes users in one Firestore database.
type Store struct {
	fs  *firestore.Client
	now func() time.Time
}

// New returns a Store over client; now is the clock (nil: time.Now).
func New(client *firestore.Client, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{fs: client, now: now}
}

// Now returns the store's clock reading.
func (s *Store) Now() time.Time { return s.now() }

func (s *Store) users() *firestore.CollectionRef { return s.fs.Collection("users") }

func (s *Store) markers(key string) *firestore.CollectionRef {
	return s.users().Doc(key).Collection("messages")
}

// Get returns the user with key.
func (s *Store) Get(ctx context.Context, key string) (User, error) {
	count(ctx, Ops{Reads: 1})
	snap, err := s.users().Doc(key).Get(ctx)
	return decode(key, snap, err)
}

func decode(key string, snap *firestore.DocumentSnapshot, err error) (User, error) {
	u, err := readDoc[User](snap, err, "user "+key, ErrNotFound)
	if err != nil {
		return User{}, err
	}
	u.Key, u.Version, u.Shard = key, snap.UpdateTime, shardOf(snap)
	return u, nil
}

// readDoc decodes a document read (snap, err) into T. A missing document is
// "what: notFound"; a failed read or decode names what.
func readDoc[T any](snap *firestore.DocumentSnapshot, err error, what string, notFound error) (T, error) {
	var v T
	if status.Code(err) == codes.NotFound || (err == nil && !snap.Exists()) {
		return v, fmt.Errorf("%s: %w", what, notFound)
	}
	if err != nil {
		return v, fmt.Errorf("read %s: %w", what, err)
	}
	if err := snap.DataTo(&v); err != nil {
		return v, fmt.Errorf("decode %s: %w", what, err)
	}
	return v, nil
}

// RaisePending records a push of historyID that arrived at `at` with one
// write and no transaction: the server raises pendingHistoryId to the
// maximum of its value and historyID (a field transform), so pushes never
// wait on each other nor on a sync's writes. The write only tells the
// lease holder what to read next: the caller reads the record again to learn
// whether a holder is still there to see it.
func (s *Store) RaisePending(ctx context.Context, key string, historyID int64, at time.Time) error {
	count(ctx, Ops{Writes: 1})
	_, err := s.users().Doc(key).Update(ctx, []firestore.Update{
		{Path: "pendingHistoryId", Value: firestore.FieldTransformMaximum(historyID)},
		{Path: "lastNotificationAt", Value: at},
		{Path: "updatedAt", Value: s.now()},
	})
	if status.Code(err) == codes.NotFound {
		return fmt.Errorf("user %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("raise pending of %s: %w", key, err)
	}
	return nil
}

// Claim gives u's lease to l if the record is still the version u was read
// at: a compare-and-set in one write, so two claimants never wait on each
// other's lock; false (and no change) when the record changed since or is
// gone, and the caller reads it again. A push of pushID (0: none) that arrived at `at` is
// recorded as pending with it, and the safety net is due when the lease
// lapses, so a claimant that dies is found. It returns the record as written.
func (s *Store) Claim(ctx context.Context, u User, l Lease, pushID int64, at time.Time) (User, bool, error) {
	ups := []firestore.Update{
		{Path: "lease", Value: l},
		{Path: "syncDueAt", Value: l.Until},
		{Path: "updatedAt", Value: s.now()},
	}
	u.Lease, u.SyncDueAt, u.UpdatedAt = l, l.Until, s.now()
	if shard := ShardOf(u.Key); u.Shard != shard { // a record from before shards
		u.Shard = shard
		ups = append(ups, firestore.Update{Path: "shard", Value: shard})
	}
	if pushID > 0 {
		u.PendingHistoryID, u.LastNotificationAt = max(u.PendingHistoryID, pushID), at
		ups = append(ups, firestore.Update{Path: "pendingHistoryId", Value: u.PendingHistoryID},
			firestore.Update{Path: "lastNotificationAt", Value: at})
	}
	count(ctx, Ops{Writes: 1})
	res, err := s.users().Doc(u.Key).Update(ctx, ups, firestore.LastUpdateTime(u.Version))
	switch status.Code(err) {
	case codes.OK:
		u.Version = res.UpdateTime
		return u, true, nil
	case codes.FailedPrecondition, codes.NotFound:
		return User{}, false, nil
	}
	return User{}, false, fmt.Errorf("claim lease of %s: %w", u.Key, err)
}

// Update runs fn on the current record of key and writes what it changed,
// unless fn returns ErrNoChange (the record is returned unchanged) or
// another error (returned). The write is a compare-and-set on the version
// read (its update time), not a transaction: a transaction locks the
// document until it ends, and one whose process dies keeps that lock until
// Firestore drops it after 60 s of inactivity
// (https://firebase.google.com/docs/firestore/quotas#writes_and_transactions),
// stalling every write of that user meanwhile. fn runs again
// on the new version when the record changed in between, so it must only
// compute: no network calls, no side effects.
func (s *Store) Update(ctx context.Context, key string, fn func(u *User) error) (User, error) {
	ref := s.users().Doc(key)
	pause := gax.Backoff{Initial: 5 * time.Millisecond, Max: 200 * time.Millisecond}
	for try := 1; ; try++ {
		count(ctx, Ops{Reads: 1})
		snap, err := ref.Get(ctx)
		was, err := decode(key, snap, err)
		if err != nil {
			return User{}, err
		}
		u := was
		u.Labels = slices.Clone(was.Labels)
		if err := fn(&u); err != nil {
			if errors.Is(err, ErrNoChange) {
				return was, nil
			}
			return was, err
		}
		u.UpdatedAt, u.Shard = s.now(), ShardOf(key)
		count(ctx, Ops{Writes: 1})
		res, err := ref.Update(ctx, changes(was, u), firestore.LastUpdateTime(was.Version))
		switch status.Code(err) {
		case codes.OK:
			u.Version = res.UpdateTime
			return u, nil
		case codes.NotFound:
			return User{}, fmt.Errorf("user %s: %w", key, ErrNotFound)
		case codes.FailedPrecondition: // changed since it was read
			if try == updateTries {
				return was, fmt.Errorf("update user %s: the record changed under %d tries", key, try)
			}
			if err := gax.Sleep(ctx, pause.Pause()); err != nil {
				return was, err
			}
			continue
		}
		return was, fmt.Errorf("update user %s: %w", key, err)
	}
}

// updateTries bounds the reads of one Update whose record keeps changing
// under it; each failed try is another writer's progress.
const updateTries = 20

// changes lists the fields of after that differ from before, as updates
// of their Firestore paths.
func changes(before, after User) []firestore.Update {
	var ups []firestore.Update
	b, a := reflect.ValueOf(before), reflect.ValueOf(after)
	for i := range a.NumField() {
		name, opts, _ := strings.Cut(a.Type().Field(i).Tag.Get("firestore"), ",")
		if name == "" || name == "-" {
			continue
		}
		v := a.Field(i).Interface()
		if reflect.DeepEqual(b.Field(i).Interface(), v) {
			continue
		}
		if opts == "omitempty" && a.Field(i).IsZero() {
			v = firestore.Delete
		}
		ups = append(ups, firestore.Update{Path: name, Value: v})
	}
	return ups
}

// Connection is what the consent flow learned about a mailbox.
type Connection struct {
	Key             string // the user key (Keyer.Key of Sub); "" derives it from Email
	Email           string
	Sub             string // Google's account id
	AppRef          string // the application's reference for the user
	Move            bool   // take the mailbox over from another AppRef
	Labels          []string
	LabelFilter     string
	HistoryID       int64 // the watch's history id
	WatchExpiration time.Time
	RenewAt         time.Time
	SyncDueAt       time.Time // a new connection's first safety-net sync; zero: at once
	Delegated       bool      // through domain-wide delegation, not consent
	Result          string    // "" or the id of the connect result (ResultID) the application must redeem; see Pending
	ResultExpires   time.Time // with Result: when it lapses
	ResultCaller    string    // with Result: who may redeem it (Link.Caller)
	// ResumeAfter, for a delegated connection: a record the directory
	// stopped listing (LeftAt) after this instant keeps its cursor, so the
	// mail that arrived while it was out is still announced; zero: never.
	ResumeAfter time.Time
}

// Connect creates or reactivates the user's record. An active or
// reauth_required user keeps its cursor (messages that arrived meanwhile are
// still owed) and is marked for a sync up to the new history id, and so
// does a delegated user back in the directory soon enough (ResumeAfter); a
// new or disconnected user starts at the watch's history id. The cursor never moves
// backwards. A connected (not disconnected) mailbox keeps its AppRef: a
// Connection with another one fails with ErrOtherRef unless it asks to Move.
// The record owes the connection's gmail.user.connected (Notice), written in
// the same transaction, so nothing that fails after can lose it; it replaces
// a notice still owed for an earlier connection. It reports whether the
// record was new.
//
// A Connection with a Result is held until the application redeems it
// (Redeem): a new, disconnected or pending record becomes Pending, with no
// AppRef and no notice; a connected one keeps its status and reference
// (a move or a reconnect takes effect at redeem) and only gets the new
// watch. Either way the record names the result, written in the same
// transaction.
func (s *Store) Connect(ctx context.Context, c Connection) (User, bool, error) {
	key := c.Key
	if key == "" {
		key = Key(c.Email)
	}
	ref := s.users().Doc(key)
	var out User
	var created bool
	err := s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		now := s.now()
		count(ctx, Ops{Reads: 1, Writes: 1, Transactions: 1})
		snap, err := tx.Get(ref)
		u, err := decode(key, snap, err)
		created = errors.Is(err, ErrNotFound)
		if err != nil && !created {
			return err
		}
		if !created && u.Connected() && u.AppRef != c.AppRef && !c.Move {
			return fmt.Errorf("connect %s: %w", key, ErrOtherRef)
		}
		if c.Result != "" {
			count(ctx, Ops{Writes: 1})
			res := Result{User: key, AppRef: c.AppRef, Move: c.Move, Caller: c.ResultCaller, Expires: c.ResultExpires, CreatedAt: now, ExpireAt: c.ResultExpires.Add(resultKeep)}
			if err := tx.Create(s.results().Doc(c.Result), res); err != nil {
				return err
			}
			out = s.held(u, created, c, key, now)
			return tx.Set(ref, out)
		}
		resume := !created && u.Status == Disconnected && c.Delegated && u.Delegated && u.CatchUp == nil &&
			!c.ResumeAfter.IsZero() && u.LeftAt.After(c.ResumeAfter)
		if (created || !u.Connected()) && !resume {
			u = User{Cursor: c.HistoryID, ConnectedAt: now, SyncDueAt: c.SyncDueAt}
			if u.SyncDueAt.IsZero() {
				u.SyncDueAt = now
			}
		} else {
			if resume { // a new connection, announced and ended by its own events, from the old cursor
				u.ConnectedAt, u.LeftAt, u.Lease = now, time.Time{}, Lease{}
			}
			u.PendingHistoryID = max(u.PendingHistoryID, c.HistoryID)
			u.SyncDueAt = now
		}
		u.Refusals, u.RefusedSince = 0, time.Time{}
		u.Key, u.Shard, u.Email, u.Sub, u.AppRef, u.Status = key, ShardOf(key), strings.ToLower(c.Email), c.Sub, c.AppRef, Active
		u.Labels, u.LabelFilter, u.Delegated = c.Labels, c.LabelFilter, c.Delegated
		u.WatchExpiration, u.RenewAt, u.LastRenewAt = c.WatchExpiration, c.RenewAt, now
		// One instant, to the microsecond Firestore keeps: the activation
		// keys a later reauth_required, the notice the connected event.
		at := now.Truncate(time.Microsecond)
		u.ReauthSince, u.UpdatedAt, u.ActiveSince = time.Time{}, now, at
		u.Notice = &Notice{At: at, HistoryID: c.HistoryID}
		out = u
		return tx.Set(ref, u)
	})
	return out, created, err
}

// held is u after a consent the application must still confirm (see Connect).
func (s *Store) held(u User, created bool, c Connection, key string, now time.Time) User {
	if created || !u.Connected() {
		// A user's own disconnect stands until the application confirms
		// the new consent: one never redeemed leaves it out of delegation.
		u = User{Cursor: c.HistoryID, ConnectedAt: now, SyncDueAt: c.SyncDueAt, Status: Pending, Sub: c.Sub, OptedOut: u.OptedOut}
	} else {
		u.PendingHistoryID = max(u.PendingHistoryID, c.HistoryID)
	}
	u.Key, u.Shard, u.Email = key, ShardOf(key), strings.ToLower(c.Email)
	u.Labels, u.LabelFilter = c.Labels, c.LabelFilter
	u.WatchExpiration, u.RenewAt, u.LastRenewAt, u.UpdatedAt = c.WatchExpiration, c.RenewAt, now, now
	u.PendingResult, u.PendingUntil = c.Result, c.ResultExpires
	return u
}

// Marker records that an event was announced, under its event id (markers
// written before were under the message id, for received events only);
// ExpireAt drives a Firestore TTL policy that removes it once no retry or
// catch-up can need it.
type Marker struct {
	Type        string    `firestore:"type,omitempty"`
	MessageID   string    `firestore:"messageId,omitempty"`
	EventID     string    `firestore:"eventId"`
	HistoryID   int64     `firestore:"historyId"`
	AnnouncedAt time.Time `firestore:"announcedAt"`
	ExpireAt    time.Time `firestore:"expireAt"`
}

// Announced returns which of ids (event ids, or message ids of markers
// written before) already have a marker.
func (s *Store) Announced(ctx context.Context, key string, ids []string) (map[string]bool, error) {
	done := make(map[string]bool, len(ids))
	const chunk = 300
	for start := 0; start < len(ids); start += chunk {
		refs := make([]*firestore.DocumentRef, 0, chunk)
		for _, id := range ids[start:min(start+chunk, len(ids))] {
			refs = append(refs, s.markers(key).Doc(id))
		}
		count(ctx, Ops{Reads: int64(len(refs))})
		snaps, err := s.fs.GetAll(ctx, refs)
		if err != nil {
			return nil, fmt.Errorf("read markers of %s: %w", key, err)
		}
		for _, snap := range snaps {
			if snap.Exists() {
				done[snap.Ref.ID] = true
			}
		}
	}
	return done, nil
}

// MarkAnnounced writes each marker under its key, the event id.
func (s *Store) MarkAnnounced(ctx context.Context, key string, markers map[string]Marker) error {
	if len(markers) == 0 {
		return nil
	}
	count(ctx, Ops{Writes: int64(len(markers))})
	bw := s.fs.BulkWriter(ctx)
	jobs := make([]*firestore.BulkWriterJob, 0, len(markers))
	for id, m := range markers {
		j, err := bw.Set(s.markers(key).Doc(id), m)
		if err != nil {
			bw.End()
			return fmt.Errorf("mark %s announced: %w", key, err)
		}
		jobs = append(jobs, j)
	}
	bw.End()
	for _, j := range jobs {
		if _, err := j.Results(); err != nil {
			return fmt.Errorf("mark %s announced: %w", key, err)
		}
	}
	return nil
}

// DeleteMarkers removes every announced-message marker of the user.
func (s *Store) DeleteMarkers(ctx context.Context, key string) error {
	bw := s.fs.BulkWriter(ctx)
	defer bw.End()
	refs := s.markers(key).DocumentRefs(ctx)
	for {
		ref, err := refs.Next()
		if err != nil {
			if errors.Is(err, iterator.Done) {
				return nil
			}
			return fmt.Errorf("list markers of %s: %w", key, err)
		}
		count(ctx, Ops{Deletes: 1})
		if _, err := bw.Delete(ref); err != nil {
			return fmt.Errorf("delete markers of %s: %w", key, err)
		}
	}
}

// Due fields.
const (
	RenewDue = "renewAt"
	SyncDue  = "syncDueAt"
)

// List returns up to limit users of any status, by key, after `after`.
func (s *Store) List(ctx context.Context, after string, limit int) ([]User, error) {
	q := s.users().OrderBy(firestore.DocumentID, firestore.Asc).Limit(limit)
	if after != "" {
		q = q.StartAfter(after)
	}
	return s.query(ctx, q)
}

func (s *Store) query(ctx context.Context, q firestore.Query) ([]User, error) {
	snaps, err := q.Documents(ctx).GetAll()
	count(ctx, Ops{Reads: max(1, int64(len(snaps)))})
	if err != nil {
		return nil, fmt.Errorf("query users: %w", err)
	}
	users := make([]User, 0, len(snaps))
	for _, snap := range snaps {
		u, err := decode(snap.Ref.ID, snap, nil)
		if err != nil {
			return nil, err
		}
		users = append(users, u)
	}
	return users, nil
}
