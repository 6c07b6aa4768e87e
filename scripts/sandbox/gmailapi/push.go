package gmailapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var errNoPubSub = errors.New("no Pub/Sub client")

// PushStats counts what happened to a mailbox's notifications.
type PushStats struct {
	Published     int64  `json:"published"`   // Pub/Sub messages stored, copies included
	Coalesced     int64  `json:"coalesced"`   // changes folded into a later notification by the per-user interval (kind profile)
	RateDropped   int64  `json:"rateDropped"` // changes whose notification the per-user rate dropped (strict profile)
	Dropped       int64  `json:"dropped"`     // dropped by a fault
	Duplicated    int64  `json:"duplicated"`  // extra copies published by a fault
	Reordered     int64  `json:"reordered"`   // held back by a fault and published after a later one
	Failed        int64  `json:"failed"`      // publish errors
	LastHistoryID uint64 `json:"lastHistoryId,omitempty"`
}

// Notification is the JSON Gmail publishes to a watch's topic.
type Notification struct {
	EmailAddress string `json:"emailAddress"`
	HistoryID    uint64 `json:"historyId"`
}

type push struct {
	topic     string
	historyID uint64
	copies    int
}

type pushState struct {
	last      time.Time   // when the last notification went out
	pending   uint64      // history id waiting for the interval to pass
	topic     string      // the watch's topic for pending
	timer     func() bool // stops the flush that sends pending when it may go out; nil: none
	held      []push      // held back by the reorder fault
	heldTimer func() bool
	stats     PushStats
}

// pusher publishes watch notifications, at most one per user per interval,
// applying notification faults. A change within the interval after a
// notification gets none: Gmail's push guide says notifications above that
// rate are dropped. The kind profile coalesces them into one that goes out
// when the interval has passed, carrying the newest history id. It never
// blocks its callers on Pub/Sub.
type pusher struct {
	client   *pubsub.Client
	interval time.Duration
	coalesce bool
	faults   *faultSet
	log      *slog.Logger
	now      func() time.Time                                   // the sandbox's clock (Options.Now)
	after    func(d time.Duration, f func()) (stop func() bool) // and its timers (Options.AfterFunc)
	wg       sync.WaitGroup

	done       chan struct{} // closed by close: delayed notifications are forgotten
	mu         sync.Mutex
	closed     bool
	publishers map[string]*pubsub.Publisher
	users      map[string]*pushState
}

func newPusher(client *pubsub.Client, interval time.Duration, coalesce bool, faults *faultSet, log *slog.Logger,
	now func() time.Time, after func(time.Duration, func()) func() bool) *pusher {
	return &pusher{client: client, interval: interval, coalesce: coalesce, faults: faults, log: log, now: now, after: after, done: make(chan struct{}),
		publishers: map[string]*pubsub.Publisher{}, users: map[string]*pushState{}}
}

func (p *pusher) topicExists(ctx context.Context, topic string) (bool, error) {
	if p.client == nil {
		return false, errNoPubSub
	}
	_, err := p.client.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: topic})
	if status.Code(err) == codes.NotFound {
		return false, nil
	}
	return err == nil, err
}

func (p *pusher) state(email string) *pushState {
	st := p.users[email]
	if st == nil {
		st = &pushState{}
		p.users[email] = st
	}
	return st
}

func (p *pusher) stats(email string) PushStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state(email).stats
}

// notify announces that email's mailbox reached historyID.
func (p *pusher) notify(email, topic string, historyID uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.client == nil {
		return
	}
	st := p.state(email)
	st.topic = topic
	if st.timer != nil {
		st.pending = max(st.pending, historyID)
		st.stats.Coalesced++
		return
	}
	wait := st.last.Add(p.interval).Sub(p.now())
	if wait > 0 && !p.coalesce {
		st.stats.RateDropped++
		return
	}
	if wait > 0 {
		st.pending = historyID
		st.timer = p.after(wait, func() { p.flush(email) })
		return
	}
	p.sendLocked(email, st, push{topic: topic, historyID: historyID})
}

func (p *pusher) flush(email string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state(email)
	st.timer = nil
	if p.closed || st.pending == 0 {
		return
	}
	h := st.pending
	st.pending = 0
	p.sendLocked(email, st, push{topic: st.topic, historyID: h})
}

// cancel forgets email's pending and held notifications (users.stop).
func (p *pusher) cancel(email string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state(email)
	for _, stop := range []func() bool{st.timer, st.heldTimer} {
		if stop != nil {
			stop()
		}
	}
	st.timer, st.heldTimer, st.pending, st.held = nil, nil, 0, nil
}

func (p *pusher) sendLocked(email string, st *pushState, n push) {
	st.last = p.now()
	drop, copies, hold := p.faults.pushFate(email)
	if drop {
		st.stats.Dropped++
		return
	}
	n.copies = copies
	st.stats.Duplicated += int64(copies - 1)
	if hold {
		st.stats.Reordered++
		st.held = append(st.held, n)
		if st.heldTimer == nil {
			st.heldTimer = p.after(3*p.interval, func() { p.releaseHeld(email) })
		}
		return
	}
	batch := append([]push{n}, st.held...)
	st.held = nil
	if st.heldTimer != nil {
		st.heldTimer()
		st.heldTimer = nil
	}
	p.publishLocked(email, batch)
}

func (p *pusher) releaseHeld(email string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state(email)
	st.heldTimer = nil
	if p.closed || len(st.held) == 0 {
		return
	}
	batch := st.held
	st.held = nil
	p.publishLocked(email, batch)
}

// publishLocked publishes batch in order in the background.
func (p *pusher) publishLocked(email string, batch []push) {
	pubs := make([]*pubsub.Publisher, len(batch))
	for i, n := range batch {
		pub := p.publishers[n.topic]
		if pub == nil {
			pub = p.client.Publisher(n.topic)
			pub.PublishSettings.DelayThreshold = time.Millisecond
			p.publishers[n.topic] = pub
		}
		pubs[i] = pub
	}
	// The pushDelay fault: Pub/Sub hands the notification over late. The
	// push guide promises no delivery time, and Pub/Sub's delivery is
	// "at least once" with no bound on latency
	// (docs.cloud.google.com/pubsub/docs/subscription-overview).
	delay := p.faults.pushDelay(email)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if delay > 0 {
			due := make(chan struct{})
			defer p.after(delay, func() { close(due) })()
			select {
			case <-due:
			case <-p.done:
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i, n := range batch {
			data, _ := json.Marshal(Notification{EmailAddress: email, HistoryID: n.historyID})
			for range n.copies {
				_, err := pubs[i].Publish(ctx, &pubsub.Message{Data: data}).Get(ctx)
				p.mu.Lock()
				st := p.state(email)
				if err != nil {
					st.stats.Failed++
					p.log.Warn("publish notification", "topic", n.topic, "error", err)
				} else {
					st.stats.Published++
					st.stats.LastHistoryID = max(st.stats.LastHistoryID, n.historyID)
				}
				p.mu.Unlock()
			}
		}
	}()
}

// close stops timers, waits for in-flight publishes and stops the publishers.
func (p *pusher) close() {
	p.mu.Lock()
	if !p.closed {
		close(p.done)
	}
	p.closed = true
	for _, st := range p.users {
		for _, stop := range []func() bool{st.timer, st.heldTimer} {
			if stop != nil {
				stop()
			}
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pub := range p.publishers {
		pub.Stop()
	}
}
