package gmailsync

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/api/gmail/v1"

	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/mailbody"
	"github.com/gmailwatch/gmailwatch/shared/store"
	"github.com/googleapis/gax-go/v2"
)

// Headers fetched with every message, as the event carries them.
var Headers = []string{"From", "To", "Subject", "Date"}

// roundResult is what one read of history achieved.
type roundResult struct {
	historyID int64 // everything up to here is announced: the cursor may move here (a record id Gmail issued)
	reported  int64 // the mailbox's history id as Gmail answered; may be ahead of historyID
	refused   int64 // the first arrival not announced, decided on labels a hidden change may have set; 0 if none
	missing   int64 // the first arrival history shows that messages.get could not find yet; 0 if none
	announced int
	caughtUp  bool
}

// complete reports whether the read showed every record up to the history
// id Gmail reported: nothing was hidden from it.
func (r roundResult) complete() bool { return r.historyID >= r.reported }

// round reads history from the user's cursor and announces what is new,
// under the Gmail call policy of gmailclient (a 401 retried once with a
// fresh token source).
func (s *Syncer) round(ctx context.Context, u store.User, m *meter) (roundResult, error) {
	var r roundResult
	err := s.gmail.Do(ctx, u, func(svc *gmail.Service) (err error) {
		r, err = s.read(ctx, svc, u, m)
		return err
	})
	return r, err
}

func (s *Syncer) read(ctx context.Context, svc *gmail.Service, u store.User, m *meter) (roundResult, error) {
	f := s.filterOf(u)
	if u.CatchUp != nil {
		return s.catchUp(ctx, svc, u, f, m)
	}
	w, seen, reported, err := s.history(ctx, svc, u, m)
	if gmailclient.IsNotFound(err) {
		return s.catchUp(ctx, svc, u, f, m)
	}
	if err != nil {
		return roundResult{}, err
	}
	// Records that show no labels leave a message's arrival undecided:
	// read it now, and announce from the same read.
	have, err := s.fetch(ctx, svc, u, w.unlabelled(), m)
	if err != nil {
		return roundResult{}, err
	}
	for id, msg := range have {
		w.relabel(id, msg.LabelIds)
	}
	changes, refused := w.changes(f, s.set.Types)
	if refused > 0 && reported <= seen {
		// history.list may report the newest record it shows rather than
		// the mailbox's current id; getProfile (1 unit) tells whether
		// records are still hidden, only when a refusal depends on it.
		if reported, err = s.profileID(ctx, svc, u, m); err != nil {
			return roundResult{}, err
		}
		reported = max(reported, seen)
	}
	r := roundResult{historyID: seen, reported: reported, refused: refused}
	if refused > 0 && !r.complete() {
		// Held: publish only what precedes the refused arrival, so the
		// events that follow it come after it once a read decides it. The
		// cursor stays at the record before it, an id Gmail issued.
		changes = slices.DeleteFunc(changes, func(c change) bool { return c.historyID >= refused })
		r.historyID = w.below(refused, u.Cursor)
	}
	t, err := s.announce(ctx, svc, u, changes, f, time.Time{}, have, m)
	r.announced, r.missing = t.announced, t.missing
	if t.missing > 0 {
		r.historyID = min(r.historyID, w.below(t.missing, u.Cursor))
	}
	return r, err
}

// profileID returns the mailbox's current history id, and keeps the
// record's address the profile's (noteAddress).
func (s *Syncer) profileID(ctx context.Context, svc *gmail.Service, u store.User, m *meter) (int64, error) {
	var p *gmail.Profile
	err := s.retry(ctx, m, "getProfile", func() (err error) {
		p, err = svc.Users.GetProfile("me").Context(ctx).Do()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("getProfile user %s: %w", u.Key, err)
	}
	return int64(p.HistoryId), s.noteAddress(ctx, u, p.EmailAddress, int64(p.HistoryId))
}

// filter is the set of watched labels: include announces messages carrying
// one of them, exclude those carrying none.
type filter struct {
	labels  []string
	exclude bool
}

func (s *Syncer) filterOf(u store.User) filter {
	f := filter{labels: u.Labels, exclude: strings.EqualFold(u.LabelFilter, "exclude")}
	if len(f.labels) == 0 {
		f = filter{labels: s.set.Labels, exclude: strings.EqualFold(s.set.LabelFilter, "exclude")}
	}
	return f
}

// matches reports whether a message with labels on arrival is announced:
// include needs one of the watched labels; exclude needs none of them, and
// none of the labels of the user's own mail (drafts and sent), which is
// never received mail.
func (f filter) matches(labels []string) bool {
	hit := slices.ContainsFunc(labels, func(l string) bool { return slices.Contains(f.labels, l) })
	if !f.exclude {
		return hit
	}
	return !hit && !slices.ContainsFunc(labels, func(l string) bool { return slices.Contains(ownMail, l) })
}

// ownMail are the labels of mail the user wrote rather than received.
var ownMail = []string{"DRAFT", "SENT"}

// history lists every page of history after the cursor and returns it read
// into a window, the id of the newest record it saw, and the history id
// Gmail reported.
//
// The cursor may move only to the newest record seen, never to the history
// id Gmail reports: that is the mailbox's current id, and records up to it
// may still be hidden by indexing. The listing is unfiltered, because both
// filters Gmail offers drop records the sync needs: labelId filters on a
// message's labels now, so a message archived since it arrived would never
// show, and either filter would leave the newest record seen short of a push
// it caused, so the cursor could not catch up with it.
func (s *Syncer) history(ctx context.Context, svc *gmail.Service, u store.User, m *meter) (w *window, seen, reported int64, err error) {
	call := svc.Users.History.List("me").StartHistoryId(uint64(u.Cursor)).MaxResults(500)
	w = newWindow()
	seen, reported = u.Cursor, u.Cursor
	for page := ""; ; {
		var resp *gmail.ListHistoryResponse
		err := s.retry(ctx, m, "history.list", func() (err error) {
			resp, err = call.PageToken(page).Context(ctx).Do()
			return err
		})
		if err != nil {
			return nil, 0, 0, fmt.Errorf("history.list user %s from %d: %w", u.Key, u.Cursor, err)
		}
		for _, h := range resp.History {
			w.add(h)
			seen = max(seen, int64(h.Id))
		}
		reported = max(reported, int64(resp.HistoryId))
		// A page may be empty and still carry a token: only its absence ends the listing.
		if page = resp.NextPageToken; page == "" {
			return w, seen, reported, nil
		}
	}
}

// told is what announce did.
type told struct {
	announced int
	received  map[string]int64 // internalDate (ms) of each message it fetched
	missing   int64            // the first history record whose message Gmail could not find; 0 if none
}

// announce publishes one event per change not announced before, in the
// order given, and waits for Pub/Sub, then writes their markers. Received
// and sent changes fetch their message first; the others need no Gmail
// call. A message history shows but messages.get cannot find (404) is not
// yet readable: history only shows a message deleted for good as deleted,
// and window.changes leaves those out. So announce stops before it, and the
// caller keeps the cursor there. A message catch-up listed is kept only if
// its labels say it is of the change's type and it was received at or after
// since (zero: no bound).
func (s *Syncer) announce(ctx context.Context, svc *gmail.Service, u store.User, changes []change, f filter, since time.Time, have map[string]*gmail.Message, m *meter) (told, error) {
	var t told
	if len(changes) == 0 {
		return t, nil
	}
	ids := make([]string, len(changes))
	keys := make([]string, 0, len(changes))
	legacy := s.legacyMarkers(u)
	for i, c := range changes {
		ids[i] = c.eventID(u.Key)
		keys = append(keys, ids[i])
		if legacy && c.typ == events.MessageReceived {
			keys = append(keys, c.msgID)
		}
	}
	done, err := s.users.Announced(ctx, u.Key, keys)
	if err != nil {
		return t, err
	}
	var fetch []string
	for i, c := range changes {
		if done[ids[i]] || (c.typ == events.MessageReceived && done[c.msgID]) {
			done[ids[i]] = true
		} else if c.needsMessage() && have[c.msgID] == nil && !slices.Contains(fetch, c.msgID) {
			fetch = append(fetch, c.msgID)
		}
	}
	msgs, err := s.fetch(ctx, svc, u, fetch, m)
	if err != nil {
		return t, err
	}
	for id, msg := range have {
		msgs[id] = msg
	}
	t.received = make(map[string]int64, len(msgs))
	for id, msg := range msgs {
		t.received[id] = msg.InternalDate
	}
	if changes[0].historyID == 0 {
		// Catch-up listed newest first, label by label: announce in the
		// order the messages reached the mailbox, as history would.
		date := func(c change) int64 {
			if msg := msgs[c.msgID]; msg != nil {
				return msg.InternalDate
			}
			return 0
		}
		changes = slices.Clone(changes)
		slices.Reverse(changes) // oldest first within a list, for messages of the same millisecond
		slices.SortStableFunc(changes, func(a, b change) int { return cmp.Compare(date(a), date(b)) })
		for i, c := range changes {
			ids[i] = c.eventID(u.Key)
		}
	}
	now := s.now()
	var evs []events.Event
	markers := map[string]store.Marker{}
	for i, c := range changes {
		if done[ids[i]] {
			continue
		}
		var ev events.Event
		if c.needsMessage() {
			msg := msgs[c.msgID]
			if msg == nil && c.historyID > 0 {
				t.missing = c.historyID
				break
			}
			if msg == nil || (c.historyID == 0 && (!c.keeps(f, msg.LabelIds) || msg.InternalDate < since.UnixMilli())) {
				continue
			}
			ev = messageEvent(msg, s.set.Content)
		} else {
			ev = events.Event{MessageID: c.msgID, ThreadID: c.threadID, HistoryID: uint64(c.historyID),
				LabelIDs: c.labels, LabelsAdded: c.added, LabelsRemoved: c.removed, Deletion: c.deletion}
		}
		ev.Type, ev.ID, ev.Time, ev.User, ev.AppRef, ev.EmailAddress = c.typ, ids[i], now.UTC().Format(time.RFC3339Nano), u.Key, u.AppRef, u.Email
		done[ids[i]] = true
		evs = append(evs, ev)
		markers[ev.ID] = store.Marker{Type: c.typ, MessageID: c.msgID, EventID: ev.ID, HistoryID: int64(ev.HistoryID),
			AnnouncedAt: now, ExpireAt: now.Add(s.set.MarkerTTL)}
	}
	if len(evs) == 0 {
		return t, nil
	}
	if err := s.events.Publish(ctx, evs...); err != nil {
		return t, err
	}
	t.announced = len(evs)
	return t, s.users.MarkAnnounced(ctx, u.Key, markers)
}

// eventIDMarkers is when markers came to be keyed by event id; before,
// received messages' markers were keyed by message id.
var eventIDMarkers = time.Date(2026, 12, 1, 23, 30, 0, 0, time.UTC)

// legacyMarkers reports whether u's markers may include ones keyed by
// message id: only a record connected before eventIDMarkers can hold them,
// and only until they expire, within MarkerTTL. Reading them doubles a
// sync's marker reads, so no other record pays for them.
func (s *Syncer) legacyMarkers(u store.User) bool {
	return u.ConnectedAt.Before(eventIDMarkers) && s.now().Before(eventIDMarkers.Add(s.set.MarkerTTL))
}

// eventID is the change's idempotency key: a message is received or sent
// once, so its id and the type make it; a label change or deletion is one
// history record's, so its id joins them.
func (c change) eventID(user string) string {
	if c.needsMessage() {
		return events.ID(c.typ, user, c.msgID)
	}
	return events.ID(c.typ, user, c.msgID, fmt.Sprint(c.historyID))
}

// keeps reports whether a message catch-up listed, now carrying labels, is
// of the change's type.
func (c change) keeps(f filter, labels []string) bool {
	if c.typ == events.MessageSent {
		return isSent(labels)
	}
	return f.matches(labels)
}

// fetch gets the metadata of each message with bounded concurrency; a
// message deleted meanwhile is left out.
func (s *Syncer) fetch(ctx context.Context, svc *gmail.Service, u store.User, ids []string, m *meter) (map[string]*gmail.Message, error) {
	msgs := make([]*gmail.Message, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.set.GetConcurrency)
	for i, id := range ids {
		g.Go(func() error {
			err := s.retry(gctx, m, "messages.get", func() (err error) {
				get := svc.Users.Messages.Get("me", id).Format(s.set.Content.Format()).Context(gctx)
				if s.set.Content.Format() == "metadata" {
					get = get.MetadataHeaders(Headers...)
				}
				msgs[i], err = get.Do()
				return err
			})
			if gmailclient.IsNotFound(err) {
				s.log.DebugContext(ctx, "message gone before it was fetched", "user", u.Key, "messageId", id)
				msgs[i] = nil
				return nil
			}
			if err != nil {
				return fmt.Errorf("messages.get user %s: %w", u.Key, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make(map[string]*gmail.Message, len(ids))
	for i, id := range ids {
		if msgs[i] != nil {
			out[id] = msgs[i]
		}
	}
	return out, nil
}

// messageEvent is the part of a received or sent event the message gives,
// with its decoded content when the settings ask for it.
func messageEvent(msg *gmail.Message, content mailbody.Settings) events.Event {
	ev := events.Event{
		MessageID:    msg.Id,
		ThreadID:     msg.ThreadId,
		HistoryID:    msg.HistoryId,
		LabelIDs:     msg.LabelIds,
		InternalDate: msg.InternalDate,
		Snippet:      msg.Snippet,
	}
	if content.Mode == mailbody.Text || content.Mode == mailbody.Full {
		c := mailbody.Decode(msg.Payload, content.Mode == mailbody.Full, content.MaxBytes)
		ev.Content = &c
	}
	if msg.Payload != nil {
		for _, h := range msg.Payload.Headers {
			switch {
			case strings.EqualFold(h.Name, "From") && ev.From == "":
				ev.From = h.Value
			case strings.EqualFold(h.Name, "To") && ev.To == "":
				ev.To = h.Value
			case strings.EqualFold(h.Name, "Subject") && ev.Subject == "":
				ev.Subject = h.Value
			case strings.EqualFold(h.Name, "Date") && ev.Date == "":
				ev.Date = h.Value
			}
		}
	}
	return ev
}

// retry runs one Gmail call, trying again on 429 and 5xx with exponential
// backoff and full jitter while tries and the deadline allow.
func (s *Syncer) retry(ctx context.Context, m *meter, method string, call func() error) error {
	bo := gax.Backoff{Initial: s.set.BackoffBase, Max: s.set.BackoffMax, Multiplier: 2}
	for try := 1; ; try++ {
		if err := m.add(ctx, method); err != nil {
			return err
		}
		err := call()
		if err == nil || !gmailclient.IsRetryable(err) || try >= s.set.MaxTries || ctx.Err() != nil {
			return err
		}
		wait := bo.Pause()
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return err
		}
		if gax.Sleep(ctx, wait) != nil {
			return err
		}
	}
}
