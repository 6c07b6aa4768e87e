package gmailsync

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gmailwatch/gmailwatch/shared/store"
)

// errLeaseLost ends a sync whose lease another sync took, or that could not
// be renewed in time: working on would risk two syncs of one user.
var errLeaseLost = errors.New("sync lease lost")

// lease is the lease one sync holds. Its heartbeat renews it every third of
// the TTL while the sync works, so the TTL only needs to cover a heartbeat's
// round trip, and the user of a sync that died is free again within it. The
// sync's context (ctx) ends when the lease is lost, or when a third of the
// TTL is left unrenewed. The sync's own writes of the user's record go one
// at a time through write: two compare-and-sets on one document from one
// sync would only make each other read again.
type lease struct {
	key, holder string
	ctx         context.Context
	mu          sync.Mutex
	halt        func() // ends the heartbeat, before the lease is given back
	stop        func() // ends the heartbeat and ctx
}

// keep starts the heartbeat of the lease u records for holder; stop ends it.
func (s *Syncer) keep(ctx context.Context, u store.User, holder string) *lease {
	ctx, cancel := context.WithCancelCause(ctx)
	l := &lease{key: u.Key, holder: holder, ctx: ctx}
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		until, every := u.Lease.Until, s.set.LeaseTTL/3
		t := time.NewTimer(every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			next, err := s.renew(ctx, l)
			switch {
			case errors.Is(err, errLeaseLost):
				cancel(err)
				return
			case err == nil:
				until = next
			case !s.now().Before(until.Add(-every)):
				cancel(fmt.Errorf("%w: not renewed: %w", errLeaseLost, err))
				return
			}
			t.Reset(min(every, max(until.Add(-every).Sub(s.now())/2, 10*time.Millisecond)))
		}
	}()
	var once sync.Once
	l.halt = func() { once.Do(func() { close(quit); <-done }) }
	l.stop = func() { l.halt(); cancel(nil) }
	return l
}

// write runs fn while no other write of this sync is in flight.
func (l *lease) write(fn func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fn()
}

// renew moves the lease's end a TTL ahead, and the safety net's due time
// with it, so only a lapsed lease makes the user due.
func (s *Syncer) renew(ctx context.Context, l *lease) (time.Time, error) {
	var until time.Time
	err := l.write(func() error {
		lost := false
		_, err := s.users.Update(ctx, l.key, func(u *store.User) error {
			lost = u.Lease.Holder != l.holder
			if lost {
				return store.ErrNoChange
			}
			until = s.now().Add(s.set.LeaseTTL)
			u.Lease.Until, u.SyncDueAt = until, until
			return nil
		})
		if err == nil && lost {
			return errLeaseLost
		}
		return err
	})
	return until, err
}
