package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// episodeGap separates a user's episodes (a single message or a burst): more
// than Gmail's one push per second per user, so every episode starts with a
// fresh push, and room for the baseline to finish a burst.
const episodeGap = 2 * time.Second

// floorUnits is the least Gmail quota the messages of episodes can cost:
// a messages.get per message, and per episode a history.list for its push
// and a getProfile after the push's second (Gmail drops pushes above one a
// second), at the profile's costs.
func (b *bench) floorUnits(messages, episodes int) int {
	q := b.cfg.Quota
	return messages*q.Units(gmailclient.MethodMessagesGet) + episodes*(q.Units(gmailclient.MethodHistoryList)+q.Units(gmailclient.MethodGetProfile))
}

// Phase is one mode's run of one kind of episode over all its users.
type Phase struct {
	Messages        int              `json:"messages"`
	Episodes        int              `json:"episodes"`
	Units           int64            `json:"units"`
	Calls           map[string]int64 `json:"calls"`
	RateLimited     int64            `json:"rateLimited"`
	UnitsPerMessage float64          `json:"unitsPerMessage"`
	FloorPerMessage float64          `json:"floorUnitsPerMessage"` // a messages.get per message + a history.list and a getProfile per episode
	Pushes          int64            `json:"pushes"`               // Gmail notifications published, copies included
	DuplicatePushes int64            `json:"duplicatePushes"`      // extra copies among them
	Announced       int              `json:"announced"`            // messages with an event
	DuplicateEvents int              `json:"duplicateEvents"`      // events beyond the first for a message
	Missing         int              `json:"missing"`              // messages with no event
	Retried         int64            `json:"retriedPushes"`        // pushes answered with an error, delivered again (relay only)
	Latency         Dist             `json:"latency"`              // sandbox accepting the message -> event on the topic
	Cost            *Cost            `json:"cost,omitempty"`       // the system's, counted
}

// Probe is what pushes that tell nothing new cost: per user, the last push
// repeated twice and one older than the cursor, sent straight to the handler.
type Probe struct {
	Duplicate int   `json:"duplicatePushes"`
	Stale     int   `json:"stalePushes"`
	Calls     int64 `json:"gmailCalls"`
	Units     int64 `json:"units"`
}

// Kinds are a mode's phases: single messages, then bursts.
type Kinds struct {
	Single Phase `json:"single"`
	Burst  Phase `json:"burst"`
}

// Mode is the workload's result for the system or the baseline. Latency is
// measured with every push published once: duplicates arrive together, and
// the Firestore emulator resolves concurrent transactions on one document
// with lock timeouts of seconds where Firestore takes milliseconds, so they
// would time the emulator. Quota is measured with duplicated pushes.
type Mode struct {
	Users   int    `json:"users"`
	Latency *Kinds `json:"latency,omitempty"` // no duplicated pushes
	Quota   *Kinds `json:"quota,omitempty"`   // DuplicateRate of pushes duplicated
	Probe   *Probe `json:"probe,omitempty"`
}

// Workload is the quota and latency sections' measurements.
type Workload struct {
	System   Mode `json:"system"`
	Baseline Mode `json:"baseline"`
	// PushHop is the time from the sandbox accepting a single message to
	// its Gmail push reaching an HTTP endpoint the way pushes reach the
	// handlers (the baseline's endpoint, timed during the system's
	// latency singles).
	PushHop Dist `json:"pushHop"`
	// Dropped is the system's messages whose own push Gmail dropped.
	Dropped *Dropped `json:"dropped,omitempty"`
}

// Dropped measures messages that land within the second after a push, so
// that Gmail drops their own notification: each episode delivers one message
// (pushed) and, 100-800 ms later, a second one (not pushed).
type Dropped struct {
	Messages        int   `json:"messages"`    // second messages, whose push was dropped
	RateDropped     int64 `json:"rateDropped"` // notifications the sandbox dropped for the rate
	Announced       int   `json:"announced"`
	DuplicateEvents int   `json:"duplicateEvents"`
	Missing         int   `json:"missing"`
	Latency         Dist  `json:"latency"` // second message accepted -> its event
	// Wait is, per second message, the least any sync could wait before a
	// read shows it without a push of its own: until the first push arrives
	// when it comes later, else until that push's second ends. The floor
	// adds two Gmail round trips.
	Wait Dist `json:"wait"`
}

type delivery struct {
	id, user  string
	at        time.Time
	historyID uint64
}

// workload connects the system's and the baseline's users, then runs, for
// each mode in turn: a warm-up; singles and bursts with every push once
// (latency); singles and bursts with duplicated pushes (quota); and a probe
// of duplicate and stale pushes.
func (b *bench) workload(ctx context.Context) error {
	n := b.cfg.Mailboxes
	sys, base := emails("user-%03d@bench.test", n), emails("tutorial-%03d@bench.test", n)
	b.progress("connecting %d system and %d baseline users", n, n)
	err := b.connectAll(ctx, sys, 8, func(ctx context.Context, e string) error {
		_, _, err := b.connect(ctx, e, modeSystem, true, time.Time{})
		return err
	})
	if err != nil {
		return err
	}
	err = b.connectAll(ctx, base, 8, func(ctx context.Context, e string) error {
		svc, hid, err := b.connect(ctx, e, modeBaseline, true, time.Time{})
		if err == nil {
			b.base.add(e, svc, hid)
		}
		return err
	})
	if err != nil {
		return err
	}
	w := &Workload{}
	var hopDeliveries []delivery
	clean := gmailapi.Faults{Latency: gmailapi.Duration(b.cfg.GmailLatency)}
	duplicating := clean
	duplicating.Seed, duplicating.DuplicateNotifications, duplicating.DuplicateCopies = 9, b.cfg.DuplicateRate, 2
	for _, m := range []struct {
		name  string
		users []string
		log   *eventLog
		out   *Mode
	}{{modeSystem, sys, b.sysEvents, &w.System}, {modeBaseline, base, b.baseEvents, &w.Baseline}} {
		m.out.Users = len(m.users)
		b.progress("%s: warm-up (one message per user: token exchange, connections)", m.name)
		if _, _, err := b.phase(ctx, m.users, m.log, 1, 1); err != nil {
			return err
		}
		for _, section := range []string{"latency", "quota"} {
			if !b.cfg.runs(section) {
				continue
			}
			faults := clean
			if section == "quota" {
				faults = duplicating
			}
			if err := b.sb.Gmail.SetFaults("", faults); err != nil {
				return err
			}
			k := &Kinds{}
			b.progress("%s, %s: %d single messages per user", m.name, section, b.cfg.Singles)
			var singles []delivery
			if k.Single, singles, err = b.phase(ctx, m.users, m.log, b.cfg.Singles, 1); err != nil {
				return err
			}
			b.progress("%s, %s: %d bursts of %d per user", m.name, section, b.cfg.Bursts, b.cfg.BurstSize)
			if k.Burst, _, err = b.phase(ctx, m.users, m.log, b.cfg.Bursts, b.cfg.BurstSize); err != nil {
				return err
			}
			if section == "latency" {
				m.out.Latency = k
				if m.name == modeSystem {
					hopDeliveries = singles
				}
			} else {
				m.out.Quota = k
			}
		}
		if err := b.sb.Gmail.SetFaults("", clean); err != nil {
			return err
		}
		if m.name == modeSystem && b.cfg.runs("latency") {
			b.progress("%s: %d messages per user within the second after a push", m.name, b.cfg.Singles)
			if w.Dropped, err = b.dropped(ctx, m.users, m.log, b.cfg.Singles); err != nil {
				return err
			}
		}
		if b.cfg.runs("quota") {
			b.progress("%s: probing with duplicate and stale pushes", m.name)
			if m.out.Probe, err = b.probe(ctx, m.name, m.users); err != nil {
				return err
			}
		}
	}
	w.PushHop = b.hops.hop(hopDeliveries)
	b.rep.Workload = w
	return nil
}

// phase delivers episodes of size messages to every user, waits for their
// events and for Gmail traffic to settle, and measures.
func (b *bench) phase(ctx context.Context, users []string, log *eventLog, episodes, size int) (Phase, []delivery, error) {
	before, retried := b.pushStats(users), b.retried()
	mark := b.costMark(log)
	b.sb.Gmail.ResetUsage()
	ds, err := b.play(ctx, users, episodes, size)
	if err != nil {
		return Phase{}, nil, err
	}
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.id
	}
	log.wait(ctx, ids, time.Minute)
	b.settle(ctx)
	p := Phase{Messages: len(ds), Episodes: len(users) * episodes, Calls: map[string]int64{}}
	for _, u := range users {
		us := b.sb.Gmail.Usage(u)
		p.Units += us.Units
		p.RateLimited += us.RateLimited
		for m, n := range us.Calls {
			p.Calls[m] += n
		}
	}
	after := b.pushStats(users)
	p.Retried = b.retried() - retried
	p.Pushes, p.DuplicatePushes = after.Published-before.Published, after.Duplicated-before.Duplicated
	p.UnitsPerMessage = round2(float64(p.Units) / float64(p.Messages))
	p.FloorPerMessage = round2(float64(b.floorUnits(p.Messages, p.Episodes)) / float64(p.Messages))
	p.Announced, p.DuplicateEvents, p.Missing, p.Latency = tally(log, ds)
	if log == b.sysEvents {
		c := b.costSince(mark, log, p.Announced)
		p.Cost = &c
	}
	return p, ds, ctx.Err()
}

// tally counts the deliveries announced, the events beyond the first for
// each and those with none, and times them from delivery to first event.
func tally(log *eventLog, ds []delivery) (announced, twice, missing int, latency Dist) {
	var lat []time.Duration
	for _, d := range ds {
		first, copies, ok := log.first(d.id)
		if !ok {
			missing++
			continue
		}
		announced++
		twice += copies - 1
		lat = append(lat, first.Sub(d.at))
	}
	return announced, twice, missing, distOf(lat)
}

// dropped runs episodes of a pushed message followed, within its push's
// second, by one whose push Gmail drops, and measures the second messages.
func (b *bench) dropped(ctx context.Context, users []string, log *eventLog, episodes int) (*Dropped, error) {
	before := b.pushStats(users)
	var mu sync.Mutex
	var firsts, seconds []delivery
	err := b.schedule(ctx, users, episodes, func(u string, i, e int) error {
		first := time.Now()
		a, err := b.sb.Deliver(gmailapi.Delivery{To: u, Subject: fmt.Sprintf("Pushed %d", e), Body: "Benchmark message."})
		if err != nil {
			return fmt.Errorf("deliver to %s: %w", u, err)
		}
		sleep(ctx, time.Until(first.Add(100*time.Millisecond+time.Duration(e*i%8)*100*time.Millisecond)))
		at := time.Now()
		d, err := b.sb.Deliver(gmailapi.Delivery{To: u, Subject: fmt.Sprintf("Not pushed %d", e), Body: "Benchmark message."})
		if err != nil {
			return fmt.Errorf("deliver to %s: %w", u, err)
		}
		mu.Lock()
		defer mu.Unlock()
		firsts = append(firsts, delivery{id: a.ID, user: u, at: first, historyID: a.HistoryID})
		seconds = append(seconds, delivery{id: d.ID, user: u, at: at, historyID: d.HistoryID})
		return nil
	})
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(seconds))
	for i, d := range seconds {
		ids[i] = d.id
	}
	log.wait(ctx, ids, time.Minute)
	b.settle(ctx)
	// The earliest read that can show the second message: the one the first
	// push starts, if that push arrives after it; else one after the push's second.
	var waits []time.Duration
	for i, d := range seconds {
		wait := firsts[i].at.Add(time.Second).Sub(d.at)
		if pushed, ok := b.hops.at(firsts[i]); ok && pushed.After(d.at) {
			wait = pushed.Sub(d.at)
		}
		waits = append(waits, wait)
	}
	out := &Dropped{Messages: len(seconds), Wait: distOf(waits), RateDropped: b.pushStats(users).RateDropped - before.RateDropped}
	out.Announced, out.DuplicateEvents, out.Missing, out.Latency = tally(log, seconds)
	return out, ctx.Err()
}

// play runs every user's episodes at once; a burst is delivered back to back.
func (b *bench) play(ctx context.Context, users []string, episodes, size int) ([]delivery, error) {
	var mu sync.Mutex
	var out []delivery
	err := b.schedule(ctx, users, episodes, func(u string, _, e int) error {
		for k := range size {
			at := time.Now()
			d, err := b.sb.Deliver(gmailapi.Delivery{To: u, Subject: fmt.Sprintf("Bench %d.%d", e, k), Body: "Benchmark message."})
			if err != nil {
				return fmt.Errorf("deliver to %s: %w", u, err)
			}
			mu.Lock()
			out = append(out, delivery{id: d.ID, user: u, at: at, historyID: d.HistoryID})
			mu.Unlock()
		}
		return nil
	})
	return out, err
}

// schedule runs every user's episodes at once, each user's start staggered
// over one gap and its episodes a gap apart, and returns the first error.
func (b *bench) schedule(ctx context.Context, users []string, episodes int, episode func(user string, i, e int) error) error {
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for i, u := range users {
		wg.Go(func() {
			offset := episodeGap * time.Duration(i) / time.Duration(len(users))
			for e := range episodes {
				sleep(ctx, time.Until(start.Add(offset+time.Duration(e)*episodeGap)))
				if ctx.Err() != nil {
					return
				}
				if err := episode(u, i, e); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

// settle waits out coalesced and duplicated pushes: at least a push interval
// and a half, then until Gmail's call count stays still for a second.
func (b *bench) settle(ctx context.Context) {
	sleep(ctx, 1500*time.Millisecond)
	calls := func() (n int64) {
		for _, c := range b.sb.Gmail.Usage("").Calls {
			n += c
		}
		return n
	}
	last, still := calls(), 0
	for end := time.Now().Add(20 * time.Second); still < 2 && time.Now().Before(end) && ctx.Err() == nil; {
		sleep(ctx, 500*time.Millisecond)
		if n := calls(); n != last {
			last, still = n, 0
		} else {
			still++
		}
	}
}

func (b *bench) pushStats(users []string) gmailapi.PushStats {
	var sum gmailapi.PushStats
	for _, u := range users {
		w, err := b.sb.Gmail.Watch(u)
		if err != nil {
			continue
		}
		sum.Published += w.Notifications.Published
		sum.Duplicated += w.Notifications.Duplicated
		sum.RateDropped += w.Notifications.RateDropped
	}
	return sum
}

// probe sends, for every user, its newest push again twice and a push older
// than it, straight to the mode's handler, and counts the Gmail calls they
// cause. The newest push is the one the mode recorded, not the system's
// cursor: a push for an id the cursor passed without a push (one Gmail
// dropped) would be news, owed its look after its second.
func (b *bench) probe(ctx context.Context, mode string, users []string) (*Probe, error) {
	b.sb.Gmail.ResetUsage()
	p := &Probe{}
	url := b.st.NotifyPushURL()
	if mode == modeBaseline {
		url = b.base.url
	}
	for _, u := range users {
		var newest int64
		if mode == modeSystem {
			rec, err := b.users.Get(ctx, store.Key(u))
			if err != nil {
				return nil, err
			}
			newest = rec.PendingHistoryID
		} else {
			newest = b.base.last(u)
		}
		for _, h := range []int64{newest, newest, newest - 1} {
			if err := b.push(ctx, url, u, h); err != nil {
				return nil, fmt.Errorf("probe push to %s: %w", mode, err)
			}
		}
		p.Duplicate += 2
		p.Stale++
	}
	b.settle(ctx)
	for _, u := range users {
		us := b.sb.Gmail.Usage(u)
		p.Units += us.Units
		for _, n := range us.Calls {
			p.Calls += n
		}
	}
	return p, nil
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// eventLog records, per Gmail message id, when its first event was
// published and how many distinct Pub/Sub messages announced it.
type eventLog struct {
	mu            sync.Mutex
	seen          map[string]*announced
	count, nbytes int64 // messages received and their data and attribute bytes
}

// volume returns the messages received so far and their bytes.
func (l *eventLog) volume() (int64, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count, l.nbytes
}

type announced struct {
	first  time.Time
	msgIDs map[string]bool
}

func newEventLog() *eventLog { return &eventLog{seen: map[string]*announced{}} }

// receive reads sub until ctx ends. An event's time is the publish time Pub/Sub
// stamped on it: when it was on the topic, whatever the pull's delay.
func (l *eventLog) receive(ctx context.Context, sub *pubsub.Subscriber) error {
	sub.ReceiveSettings.MaxOutstandingMessages = 10_000
	err := sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		e, err := events.Decode(m.Data)
		if err != nil || e.Type != events.MessageReceived {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.count++
		l.nbytes += int64(len(m.Data))
		for k, v := range m.Attributes {
			l.nbytes += int64(len(k) + len(v))
		}
		a := l.seen[e.MessageID]
		if a == nil {
			a = &announced{first: m.PublishTime, msgIDs: map[string]bool{}}
			l.seen[e.MessageID] = a
		}
		if m.PublishTime.Before(a.first) {
			a.first = m.PublishTime
		}
		a.msgIDs[m.ID] = true
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (l *eventLog) first(id string) (time.Time, int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.seen[id]
	if a == nil {
		return time.Time{}, 0, false
	}
	return a.first, len(a.msgIDs), true
}

// wait returns once every id has an event, or after timeout.
func (l *eventLog) wait(ctx context.Context, ids []string, timeout time.Duration) {
	for end := time.Now().Add(timeout); time.Now().Before(end) && ctx.Err() == nil; sleep(ctx, 50*time.Millisecond) {
		missing := 0
		l.mu.Lock()
		for _, id := range ids {
			if l.seen[id] == nil {
				missing++
			}
		}
		l.mu.Unlock()
		if missing == 0 {
			return
		}
	}
}

// hopLog records when each Gmail push first reached the baseline's endpoint.
type hopLog struct {
	mu      sync.Mutex
	arrived map[hopKey]time.Time
}

type hopKey struct {
	email     string
	historyID uint64
}

func newHopLog() *hopLog { return &hopLog{arrived: map[hopKey]time.Time{}} }

func (h *hopLog) record(email string, historyID uint64, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := hopKey{email, historyID}
	if _, ok := h.arrived[k]; !ok {
		h.arrived[k] = at
	}
}

// hop measures, for single messages, delivery to the arrival of the push
// carrying the message's own history id.
// at returns when d's push first arrived.
func (h *hopLog) at(d delivery) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	at, ok := h.arrived[hopKey{d.user, d.historyID}]
	return at, ok
}

func (h *hopLog) hop(ds []delivery) Dist {
	h.mu.Lock()
	defer h.mu.Unlock()
	var hops []time.Duration
	for _, d := range ds {
		if at, ok := h.arrived[hopKey{d.user, d.historyID}]; ok {
			hops = append(hops, at.Sub(d.at))
		}
	}
	return distOf(hops)
}
