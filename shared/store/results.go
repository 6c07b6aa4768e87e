package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Pending is the status of a mailbox connected through a link whose result
// the application's backend has not redeemed yet: watched, so no mail is
// lost, but nothing is published for it (gmailsync syncs only active users,
// so its cursor stays at the watch's history id of the consent) and it has
// no AppRef yet. Redeem makes it active under the link's reference; a renew
// run removes it, token and all, once its result lapses.
const Pending = "pending"

// Connected reports whether the record is a live connection of its AppRef:
// active or reauth_required. A pending or disconnected record belongs to no
// one yet, so a new connection may take it under any reference.
func (u User) Connected() bool { return u.Status == Active || u.Status == ReauthRequired }

// Result is what a connect link's flow left for the application's backend
// to redeem, in connectResults/{ID}: ID is a hash of the one-time code the
// browser carried back, so the collection holds no usable code. It names the
// user and the reference (and move) the link asked for; the user's record
// names the one result that can still confirm it (PendingResult).
type Result struct {
	ID         string    `firestore:"-"`
	User       string    `firestore:"user"`
	AppRef     string    `firestore:"appRef"`
	Move       bool      `firestore:"move"`
	Caller     string    `firestore:"caller,omitempty"` // the caller that asked for the link, the only one that may redeem; "": any
	Expires    time.Time `firestore:"expires"`
	CreatedAt  time.Time `firestore:"createdAt"`
	RedeemedAt time.Time `firestore:"redeemedAt"`
	ExpireAt   time.Time `firestore:"expireAt"` // for a Firestore TTL policy: a replay is told "already redeemed" until then
}

// Result errors.
var (
	ErrResultNotFound   = errors.New("no such connect result")
	ErrResultRedeemed   = errors.New("connect result already redeemed")
	ErrResultExpired    = errors.New("connect result expired")
	ErrResultSuperseded = errors.New("connect result no longer confirms the account: a later connection, a disconnect or its expiry replaced it")
)

// resultKeep is how long a result's document outlives the result.
const resultKeep = 24 * time.Hour

// ResultID is the stored id of a result code.
func ResultID(code string) string {
	sum := sha256.Sum256([]byte("connect result\x00" + code))
	return hex.EncodeToString(sum[:])
}

func (s *Store) results() *firestore.CollectionRef { return s.fs.Collection("connectResults") }

// PeekResult returns the result with id and the record of its user as they
// are now, checking what Redeem checks, without changing anything.
func (s *Store) PeekResult(ctx context.Context, id string) (Result, User, error) {
	count(ctx, Ops{Reads: 2})
	snap, err := s.results().Doc(id).Get(ctx)
	res, err := decodeResult(id, snap, err)
	if err != nil {
		return Result{}, User{}, err
	}
	snap, err = s.users().Doc(res.User).Get(ctx)
	u, err := decode(res.User, snap, err)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return res, User{}, err
	}
	return res, u, s.redeemable(res, u, err)
}

func decodeResult(id string, snap *firestore.DocumentSnapshot, err error) (Result, error) {
	r, err := readDoc[Result](snap, err, "connect result", ErrResultNotFound)
	if err != nil {
		return Result{}, err
	}
	r.ID = id
	return r, nil
}

// redeemable says why res cannot confirm u (read with err), if it cannot.
func (s *Store) redeemable(res Result, u User, err error) error {
	switch {
	case !res.RedeemedAt.IsZero():
		return ErrResultRedeemed
	case !s.now().Before(res.Expires):
		return ErrResultExpired
	case err != nil || u.PendingResult != res.ID:
		return ErrResultSuperseded
	}
	return nil
}

// Redeem confirms the connection a result stands for, once: a pending
// record becomes active under the result's reference; a connected one
// (reconnected, or moved from another reference) becomes active under it,
// a move starting a new connection (ConnectedAt). The record then owes its
// gmail.user.connected (Notice), and is due for a sync, which announces the
// mail since the consent. It returns the record before and after.
func (s *Store) Redeem(ctx context.Context, id string) (before, after User, err error) {
	ref := s.results().Doc(id)
	err = s.fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		count(ctx, Ops{Reads: 2, Writes: 2, Transactions: 1})
		snap, err := tx.Get(ref)
		res, err := decodeResult(id, snap, err)
		if err != nil {
			return err
		}
		uref := s.users().Doc(res.User)
		snap, err = tx.Get(uref)
		u, err := decode(res.User, snap, err)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := s.redeemable(res, u, err); err != nil {
			return err
		}
		before = u
		now := s.now()
		at := now.Truncate(time.Microsecond)
		if u.Connected() && u.AppRef != res.AppRef {
			u.ConnectedAt = now // a new connection, for its new reference
		}
		u.Status, u.AppRef, u.ActiveSince, u.ReauthSince = Active, res.AppRef, at, time.Time{}
		u.PendingResult, u.PendingUntil, u.SyncDueAt, u.UpdatedAt = "", time.Time{}, now, now
		u.Shard = ShardOf(res.User)
		u.OptedOut = false // connected by consent again, and confirmed
		u.Notice = &Notice{At: at, HistoryID: max(u.Cursor, u.PendingHistoryID)}
		after = u
		if err := tx.Set(uref, u); err != nil {
			return err
		}
		return tx.Update(ref, []firestore.Update{{Path: "redeemedAt", Value: now}})
	})
	if err != nil {
		return User{}, User{}, err
	}
	return before, after, nil
}

// Lapsed returns up to limit users whose connect result lapsed at or
// before t, oldest first, after from. The pendingUntil field exists only
// while a result is unredeemed, so its single-field index stays as small
// as the set.
func (s *Store) Lapsed(ctx context.Context, shard int, t time.Time, from Position, limit int) ([]User, error) {
	return s.page(ctx, shard, s.users().Where("pendingUntil", "<=", t), "pendingUntil", from, limit)
}

// Forget deletes u's record, as read, with its markers: only if it has not
// changed since (a new connection meanwhile keeps it). It reports whether
// the record is gone.
func (s *Store) Forget(ctx context.Context, u User) (bool, error) {
	if err := s.DeleteMarkers(ctx, u.Key); err != nil {
		return false, err
	}
	count(ctx, Ops{Deletes: 1})
	_, err := s.users().Doc(u.Key).Delete(ctx, firestore.LastUpdateTime(u.Version))
	switch status.Code(err) {
	case codes.OK, codes.NotFound:
		return true, nil
	case codes.FailedPrecondition:
		return false, nil
	}
	return false, fmt.Errorf("delete user %s: %w", u.Key, err)
}
