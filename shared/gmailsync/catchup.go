package gmailsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/googleapis/gax-go/v2"
)

// ErrCatchingUp ends a call that stopped a catch-up before it was done (its
// deadline, or Gmail's per-user rate still refusing after the backoff): the
// checkpoint keeps what it achieved, and a redelivery, the next push or the
// reconcile continues from there. It is worth a retry.
var ErrCatchingUp = errors.New("catch-up not finished")

// newPace paces a catch-up's calls to the per-user quota of profile q, so
// that no 60 seconds (Gmail counts the minute before each call) spend more
// than it: a second's worth at once, the rest of a minute's spread over
// the minute. It starts empty, as the invocation before may have spent the
// last minute's worth.
func newPace(q gmailclient.QuotaProfile) *rate.Limiter {
	burst := max(q.UserPerMinute()/60, q.Units(gmailclient.MethodMessagesGet))
	l := rate.NewLimiter(rate.Limit(float64(q.UserPerMinute()-burst)/60), burst)
	l.ReserveN(time.Now(), burst)
	return l
}

// rateWait is how long a catch-up waits when Gmail's per-user rate refuses
// it after the call's own backoff: Gmail counts the limit per minute.
const rateWait = 20 * time.Second

// catchUp replaces history that Gmail no longer has (404 on the cursor). It
// reads the mailbox's history id first (whatever arrives later shows in
// history after it), then lists the watched labels (and SENT, when sent mail
// is announced) newest first, a page of CatchUpChunk messages at a time, and
// announces each page's messages that were received at or after the cut-off
// and not announced before. After each page it stores a checkpoint (where
// the listing stands) in the user's record, so the catch-up survives a
// crash, a 429 or the end of the invocation at the cost of one page, and
// any later sync continues it. It paces itself to the per-user quota of the
// project's profile (gmailclient.QuotaProfile, GMAIL_QUOTA_PROFILE), and
// stops a listing at the first page reaching mail from before the cut-off:
// the user's last sync (less a margin for Gmail's indexing; markers keep
// mail announced since from being announced again), or the connection.
// Such older mail is not announced: it was announced before, or it
// predates the connection. Label changes and deletions in the lost history
// cannot be told: Gmail keeps no record of them.
//
// The listing is by label, not by search: the default scope,
// gmail.metadata, does not allow messages.list's q.
func (s *Syncer) catchUp(ctx context.Context, svc *gmail.Service, u store.User, f filter, m *meter) (roundResult, error) {
	cp := u.CatchUp
	if cp == nil {
		h, err := s.profileID(ctx, svc, u, m)
		if err != nil {
			return roundResult{}, err
		}
		cp = &store.CatchUp{HistoryID: h, Since: s.cutOff(u), StartedAt: s.now()}
		s.log.WarnContext(ctx, "history expired, catching up with messages.list", "user", u.Key,
			"cursor", u.Cursor, "historyId", h, "since", cp.Since)
	}
	lists := s.catchUpLists(f)
	if len(cp.Pages) != len(lists) { // a new catch-up, or the watched labels changed: list them all from the top
		cp.Pages, cp.Done = make([]string, len(lists)), make([]bool, len(lists))
	}
	m.pace = newPace(m.quota)
	defer func() { m.pace = nil }()
	r := roundResult{historyID: u.Cursor, reported: u.Cursor, caughtUp: true}
	for slices.Contains(cp.Done, false) {
		if !s.fits(ctx, rateWait) {
			return r, fmt.Errorf("user %s: %w at %d messages listed", u.Key, ErrCatchingUp, cp.Listed)
		}
		n, next, err := s.chunk(ctx, svc, u, f, lists, *cp, m)
		r.announced += n
		if gmailclient.IsRateLimited(err) {
			// The checkpoint keeps what the chunks before achieved: wait
			// and go on, or leave the rest to a retry.
			if !s.fits(ctx, 2*rateWait) {
				return r, fmt.Errorf("user %s: %w: %w", u.Key, ErrCatchingUp, err)
			}
			s.log.InfoContext(ctx, "catch-up paused by the per-user rate", "user", u.Key, "listed", cp.Listed)
			if gax.Sleep(ctx, rateWait) != nil {
				return r, fmt.Errorf("user %s: %w: %w", u.Key, ErrCatchingUp, err)
			}
			continue
		}
		if err != nil {
			return r, err
		}
		*cp = next
		if err := s.checkpoint(ctx, u, *cp, !slices.Contains(cp.Done, false)); err != nil {
			return r, err
		}
	}
	s.log.InfoContext(ctx, "caught up", "user", u.Key, "historyId", cp.HistoryID, "listed", cp.Listed,
		"tookMs", s.now().Sub(cp.StartedAt).Milliseconds())
	r.historyID, r.reported = cp.HistoryID, cp.HistoryID
	return r, nil
}

// chunk lists the next page of each unfinished listing of cp and announces
// what they hold, in the order the messages reached the mailbox, and
// returns how many it announced and the checkpoint after it.
func (s *Syncer) chunk(ctx context.Context, svc *gmail.Service, u store.User, f filter, lists []listing, cp store.CatchUp, m *meter) (int, store.CatchUp, error) {
	cp.Pages, cp.Done = slices.Clone(cp.Pages), slices.Clone(cp.Done)
	var changes []change
	var from []int // the listing of each change
	for i, l := range lists {
		if cp.Done[i] {
			continue
		}
		ids, next, err := s.listPage(ctx, svc, u.Key, l.labels, cp.Pages[i], m)
		if err != nil {
			return 0, cp, err
		}
		for _, id := range ids {
			changes, from = append(changes, change{typ: l.typ, msgID: id}), append(from, i)
		}
		cp.Listed += len(ids)
		cp.Pages[i], cp.Done[i] = next, next == ""
	}
	t, err := s.announce(ctx, svc, u, changes, f, cp.Since, nil, m)
	if err != nil {
		return t.announced, cp, err
	}
	// A listing is newest first: once a page reaches mail from before the
	// cut-off, the rest of it is older still.
	for j, c := range changes {
		if at, ok := t.received[c.msgID]; ok && at < cp.Since.UnixMilli() {
			cp.Pages[from[j]], cp.Done[from[j]] = "", true
		}
	}
	return t.announced, cp, nil
}

// cutOffMargin is how far before the last sync a catch-up still looks:
// mail received just before it may not have shown in history yet.
const cutOffMargin = 10 * time.Minute

// cutOff is the oldest receipt time a catch-up announces for u.
func (s *Syncer) cutOff(u store.User) time.Time {
	if t := u.LastSyncAt.Add(-cutOffMargin); t.After(u.ConnectedAt) {
		return t
	}
	return u.ConnectedAt
}

type listing struct {
	typ    string
	labels []string
}

// catchUpLists are the listings a catch-up walks, in a fixed order the
// checkpoint indexes.
func (s *Syncer) catchUpLists(f filter) []listing {
	var lists []listing
	if slices.Contains(s.set.Types, events.MessageReceived) {
		if f.exclude {
			lists = append(lists, listing{events.MessageReceived, nil}) // every message, filtered once fetched
		} else {
			for _, l := range f.labels { // labelIds means all of them, so one list per label
				lists = append(lists, listing{events.MessageReceived, []string{l}})
			}
		}
	}
	if slices.Contains(s.set.Types, events.MessageSent) {
		lists = append(lists, listing{events.MessageSent, []string{"SENT"}})
	}
	return lists
}

// checkpoint stores cp as u's catch-up, or, when done, clears it and moves
// the cursor to the history id it began at, in one write, so no sync sees
// the catch-up over and the cursor still expired.
func (s *Syncer) checkpoint(ctx context.Context, u store.User, cp store.CatchUp, done bool) error {
	_, err := s.users.Update(ctx, u.Key, func(v *store.User) error {
		if v.Lease.Holder != u.Lease.Holder {
			return errLeaseLost
		}
		if done {
			v.CatchUp, v.Cursor = nil, max(v.Cursor, cp.HistoryID)
			return nil
		}
		v.CatchUp = &cp
		return nil
	})
	if err != nil {
		return fmt.Errorf("catch-up checkpoint of %s: %w", u.Key, err)
	}
	return nil
}

// listPage returns one page of message ids carrying labels, newest first,
// and the next page's token.
func (s *Syncer) listPage(ctx context.Context, svc *gmail.Service, key string, labels []string, page string, m *meter) ([]string, string, error) {
	// With spam and trash: a message that arrived in a watched label and
	// was trashed since is still to be announced, as history would.
	call := svc.Users.Messages.List("me").MaxResults(int64(s.set.CatchUpChunk)).PageToken(page).IncludeSpamTrash(true)
	if len(labels) > 0 {
		call.LabelIds(labels...)
	}
	var resp *gmail.ListMessagesResponse
	err := s.retry(ctx, m, "messages.list", func() (err error) {
		resp, err = call.Context(ctx).Do()
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("messages.list user %s labels %v: %w", key, labels, err)
	}
	ids := make([]string, 0, len(resp.Messages))
	for _, msg := range resp.Messages {
		ids = append(ids, msg.Id)
	}
	return ids, resp.NextPageToken, nil
}
