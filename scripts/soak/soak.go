package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"golang.org/x/sync/errgroup"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/scripts/sandbox/googleauth"
	"github.com/gmailwatch/gmailwatch/scripts/stack"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

// Config is one soak run.
type Config struct {
	Users      int           // mailboxes connected through the consent flow
	Messages   int           // messages delivered during the send phase
	FaultRate  float64       // 0..0.9: baseline Gmail error and push fault rate, and how often episodes and outages come
	Seed       uint64        // the schedule's seed
	Kills      int           // function processes killed (kill -9) and restarted during the send phase
	Revoke     int           // users whose tokens are revoked mid-run
	Duration   time.Duration // the send phase
	Drain      time.Duration // at most this long, after faults clear, for everything to arrive
	RenewEvery time.Duration // the renew function runs this often, as Cloud Scheduler would
	Delegation bool          // the users are a Workspace org unit watched through domain-wide delegation, not consent
	AllTypes   bool          // every mailbox event type on, and the mailbox changed beyond arrivals
	Dir        string        // the stack's binaries, logs and state
	Progress   io.Writer     // progress lines; nil discards them
}

// Limits that keep a run bounded in time and requests.
const (
	maxUsers    = 500
	maxMessages = 100_000
	maxKills    = 1_000
)

// The functions run with their timescales compressed to the soak's: renew
// runs every few seconds instead of hourly, so the safety-net sync is due
// after seconds, and a killed sync's lease lapses in half a minute.
const (
	leaseTTL       = 5 * time.Second
	reconcileAfter = 5 * time.Second
	renewBudget    = 30 * time.Second
	revokeWait     = 45 * time.Second // for a user's earlier mail to arrive before its tokens are revoked
	settle         = 5 * time.Second  // after everything arrived, for late repeats to show
)

func (c Config) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Users >= 1 && c.Users <= maxUsers, "-users %d: want 1..%d", c.Users, maxUsers)
	check(c.Messages >= 1 && c.Messages <= maxMessages, "-messages %d: want 1..%d", c.Messages, maxMessages)
	check(!math.IsNaN(c.FaultRate) && c.FaultRate >= 0 && c.FaultRate <= 0.9, "-fault-rate %v: want 0..0.9", c.FaultRate)
	check(c.Kills >= 0 && c.Kills <= maxKills, "-kills %d: want 0..%d", c.Kills, maxKills)
	check(c.Revoke >= 0 && c.Revoke < max(c.Users, 1), "-revoke %d: want 0..%d (at least one user stays connected)", c.Revoke, max(c.Users-1, 0))
	check(c.Duration >= 5*time.Second && c.Duration <= 2*time.Hour, "-duration %v: want 5s..2h", c.Duration)
	check(c.Drain >= 10*time.Second && c.Drain <= time.Hour, "-drain %v: want 10s..1h", c.Drain)
	check(c.RenewEvery >= time.Second && c.RenewEvery <= time.Minute, "-renew-every %v: want 1s..1m", c.RenewEvery)
	check(c.Dir != "", "-dir: want a directory for the stack's logs")
	check(!c.Delegation || c.Revoke == 0, "-revoke %d with -delegation: delegated users have no token of their own to revoke; want 0", c.Revoke)
	return errors.Join(errs...)
}

// soak is one run in progress.
type soak struct {
	cfg     Config
	plan    plan
	st      *stack.Stack
	gate    *gate
	topic   *eventLog
	dead    *eventLog
	cursors *cursorWatch
	emails  []string
	keys    []string
	began   time.Time
	start   time.Time // of the send phase

	mu         sync.Mutex // sends and revocations
	sent       map[string]*sentMessage
	expected   map[string]*expectation // with -all-types: event id -> what caused it
	expireFrom map[int]int64           // user -> its cursor when its history began to expire
	sendErrs   int
	held       map[int][]int // user -> sends held while its revocation waits
	revokedAt  map[int]time.Time
	revoking   sync.WaitGroup
	following  sync.WaitGroup // mailbox changes after a delivery, with -all-types

	tallyMu  sync.Mutex // kills and renew runs
	kills    []killed
	renewRun int
	renewErr int
}

type sentMessage struct {
	ID          string
	User        int
	HistoryID   int64 // of its arrival
	At          time.Time
	Watched     bool
	AfterRevoke bool // its user's tokens were already revoked
	Excused     bool // still undelivered when its user's tokens were revoked
	Deleted     bool // deleted for good soon after: announced only if a sync saw it first
}

type killed struct {
	Function string    `json:"function"`
	At       time.Time `json:"at"`
	Error    string    `json:"error,omitempty"`
}

// Run starts the stack, connects the users, plays the plan, drains, and
// reports. An error means the soak itself could not run.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration+revokeWait+cfg.Drain+settle+10*time.Minute)
	defer cancel()
	s := &soak{cfg: cfg, plan: newPlan(cfg), began: time.Now(), topic: newEventLog(), dead: newEventLog(), cursors: newCursorWatch(),
		sent: map[string]*sentMessage{}, expected: map[string]*expectation{}, expireFrom: map[int]int64{}, held: map[int][]int{}, revokedAt: map[int]time.Time{}}
	if s.gate, err = newGate(); err != nil {
		return nil, fmt.Errorf("webhook gate: %w", err)
	}
	defer s.gate.close()
	s.progress("starting the stack in %s", cfg.Dir)
	opts := stack.Options{Dir: cfg.Dir, Env: map[string]string{
		"WEBHOOK_URL":     s.gate.URL,
		"SYNC_LEASE_TTL":  leaseTTL.String(),
		"RECONCILE_AFTER": reconcileAfter.String(),
		"RUN_BUDGET":      renewBudget.String(),
	}}
	if cfg.Delegation {
		opts.Sandbox.Domain = soakDomain
		for k, v := range delegationEnv {
			opts.Env[k] = v
		}
	}
	if cfg.AllTypes {
		opts.Env["EVENT_TYPES"] = strings.Join(events.MessageTypes, ",")
	}
	s.st, err = stack.Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start stack: %w", err)
	}
	defer s.st.Stop()
	if err := s.gate.open(s.st.ReceiverURL); err != nil {
		return nil, err
	}
	fs, err := firestore.NewClient(ctx, s.st.Project)
	if err != nil {
		return nil, fmt.Errorf("firestore client: %w", err)
	}
	defer fs.Close()
	users := store.New(fs, nil)

	observe, stopObserving := context.WithCancel(ctx)
	var observers errgroup.Group
	observers.Go(func() error { return s.topic.receive(observe, s.st.PubSub().Subscriber(stack.EventsPull)) })
	observers.Go(func() error { return s.dead.receive(observe, s.st.PubSub().Subscriber(stack.DeadLetterPull)) })

	if err := s.connectAll(ctx, users); err != nil {
		stopObserving()
		return nil, err
	}
	observers.Go(func() error { s.cursors.run(observe, users, 500*time.Millisecond); return nil })
	s.st.Sandbox.Gmail.ResetUsage()

	renewing, stopRenew := context.WithCancel(ctx)
	renewDone := make(chan struct{})
	go func() { defer close(renewDone); s.renewLoop(renewing) }()

	s.play(ctx)
	drained := s.drain(ctx)
	stopRenew()
	<-renewDone
	s.progress("settling %v for late repeats", settle)
	sleep(ctx, settle)
	s.cursors.poll(ctx, users)
	stopObserving()
	if err := observers.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return nil, fmt.Errorf("read events: %w", err)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("soak cut short: %w", ctx.Err())
	}
	return s.report(drained), nil
}

func (s *soak) progress(format string, args ...any) {
	fmt.Fprintf(s.cfg.Progress, "soak %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// connectAll connects every user through the consent flow, as a browser
// would: consent -> Google (sandbox, approving at once) -> callback; or,
// with delegation, as a Workspace org unit the renew run watches.
func (s *soak) connectAll(ctx context.Context, users *store.Store) error {
	if s.cfg.Delegation {
		return s.delegateAll(ctx, users)
	}
	s.st.Sandbox.Auth.SetBehavior(googleauth.Behavior{AutoApprove: true})
	for i := range s.cfg.Users {
		email := fmt.Sprintf("soak.user%03d@example.com", i)
		if err := s.st.Sandbox.AddMailbox(email); err != nil {
			return fmt.Errorf("mailbox %s: %w", email, err)
		}
		s.emails = append(s.emails, email)
	}
	s.keys = make([]string, len(s.emails)) // known once connected: keys derive from the account id
	s.progress("connecting %d users through the consent flow", s.cfg.Users)
	var g errgroup.Group
	g.SetLimit(4)
	for i, email := range s.emails {
		g.Go(func() (err error) { s.keys[i], err = s.connect(ctx, users, email); return err })
	}
	return g.Wait()
}

func (s *soak) connect(ctx context.Context, users *store.Store, email string) (string, error) {
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.st.ConsentURL+"?login_hint="+url.QueryEscape(email), nil)
	resp, err := browser.Do(req)
	if err != nil {
		return "", fmt.Errorf("consent flow of %s: %w", email, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("consent flow of %s ended with %s", email, resp.Status)
	}
	u, err := users.ByEmail(ctx, email)
	if err != nil || u.Status != store.Active {
		return "", fmt.Errorf("consent flow of %s left no active user (status %q): %v", email, u.Status, err)
	}
	return u.Key, nil
}

// play runs the plan's timeline: sends, fault episodes and outages in
// order; kills on a worker of their own (a restart takes a moment);
// revocations each on their own, as they wait for earlier mail to arrive.
func (s *soak) play(ctx context.Context) {
	gmail := s.st.Sandbox.Gmail
	if err := gmail.SetFaults("", s.plan.Baseline); err != nil {
		s.progress("baseline faults refused: %v", err)
	}
	type action struct {
		at time.Duration
		do func()
	}
	var timeline []action
	for i, m := range s.plan.Sends {
		timeline = append(timeline, action{m.At, func() { s.send(i) }})
	}
	active := map[int][]*episode{}
	apply := func(u int) {
		if len(active[u]) == 0 {
			gmail.ClearFaults(s.emails[u])
			s.expiring(u, false)
			return
		}
		f := merge(s.plan.Baseline, active[u])
		if err := gmail.SetFaults(s.emails[u], f); err != nil {
			s.progress("faults refused for user %d: %v", u, err)
		}
		s.expiring(u, f.ExpireHistory)
	}
	for i := range s.plan.Episodes {
		e := &s.plan.Episodes[i]
		timeline = append(timeline,
			action{e.At, func() { active[e.User] = append(active[e.User], e); apply(e.User) }},
			action{e.At + e.For, func() {
				active[e.User] = slices.DeleteFunc(active[e.User], func(x *episode) bool { return x == e })
				apply(e.User)
			}})
	}
	for _, o := range s.plan.Outages {
		timeline = append(timeline, action{o.At, func() { s.gate.setOutage(o.Mode) }}, action{o.At + o.For, func() { s.gate.setOutage("") }})
	}
	kills := make(chan kill, len(s.plan.Kills))
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		for k := range kills {
			s.kill(ctx, k.Function)
		}
	}()
	for _, k := range s.plan.Kills {
		timeline = append(timeline, action{k.At, func() { kills <- k }})
	}
	for _, r := range s.plan.Revokes {
		timeline = append(timeline, action{r.At, func() {
			s.revoking.Add(1)
			go func() { defer s.revoking.Done(); s.revoke(ctx, r.User) }()
		}})
	}
	slices.SortStableFunc(timeline, func(a, b action) int { return int(a.at - b.at) })

	s.progress("send phase: %d messages to %d users over %v, fault rate %.2f, %d episodes, %d outages, %d kills, %d revocations",
		len(s.plan.Sends), s.cfg.Users, s.cfg.Duration, s.cfg.FaultRate, len(s.plan.Episodes), len(s.plan.Outages), len(s.plan.Kills), len(s.plan.Revokes))
	s.start = time.Now()
	nextStatus := s.start.Add(10 * time.Second)
	for _, a := range timeline {
		if !sleep(ctx, time.Until(s.start.Add(a.at))) {
			break
		}
		a.do()
		if time.Now().After(nextStatus) {
			s.status()
			nextStatus = nextStatus.Add(10 * time.Second)
		}
	}
	close(kills)
	<-killerDone
	sleep(ctx, time.Until(s.start.Add(s.cfg.Duration)))
}

// expiring notes each fault change of user u while its history expires or
// just stopped expiring: what a catch-up in between may have skipped is
// excused (excuseExpired).
func (s *soak) expiring(u int, now bool) {
	if !s.cfg.AllTypes {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	from, was := s.expireFrom[u]
	if !was && !now {
		return
	}
	if !was {
		from = s.cursors.cursor(s.keys[u])
		s.expireFrom[u] = from
	}
	below, _ := s.st.Sandbox.Gmail.HistoryID(s.emails[u])
	s.excuseExpired(u, below+1, from)
	if !now {
		delete(s.expireFrom, u)
	}
}

func (s *soak) send(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.plan.Sends[i]
	if held, ok := s.held[m.User]; ok {
		s.held[m.User] = append(held, i)
		return
	}
	s.deliver(i)
}

// deliver puts send i into its mailbox; callers hold s.mu.
func (s *soak) deliver(i int) {
	m := s.plan.Sends[i]
	if s.cfg.AllTypes && s.plan.Follow[i] == sendIt {
		s.sendDraft(i)
		return
	}
	labels := []string{"INBOX", "UNREAD"}
	if !m.Watched {
		labels = []string{"CATEGORY_PROMOTIONS", "UNREAD"}
	}
	at := time.Now()
	d, err := s.st.Sandbox.Deliver(gmailapi.Delivery{
		To: s.emails[m.User], From: fmt.Sprintf("Sender %d <sender%d@example.net>", i%17, i%17),
		Subject: fmt.Sprintf("Soak message %d", i), Body: fmt.Sprintf("Message %d of the soak.", i), LabelIDs: labels,
	})
	if err != nil {
		s.sendErrs++
		return
	}
	_, revoked := s.revokedAt[m.User]
	s.sent[d.ID] = &sentMessage{ID: d.ID, User: m.User, HistoryID: int64(d.HistoryID), At: at, Watched: m.Watched, AfterRevoke: revoked}
	if s.cfg.AllTypes {
		if m.Watched {
			s.expect(events.MessageReceived, m.User, d.ID, d.HistoryID, false)
		}
		if s.plan.Follow[i] != "" {
			s.following.Add(1)
			go func() { defer s.following.Done(); s.followUp(i, d.ID) }()
		}
	}
}

// revoke holds the user's new mail and waits until every message sent to
// it so far has been announced (at most revokeWait), then revokes the
// user's tokens and delivers the held mail, which is then not required.
// Messages still unannounced at the revocation are excused: no sync can
// read them any more.
func (s *soak) revoke(ctx context.Context, u int) {
	s.mu.Lock()
	s.held[u] = []int{}
	s.mu.Unlock()
	deadline := time.Now().Add(revokeWait)
	for {
		s.mu.Lock()
		var waiting []*sentMessage
		for _, m := range s.sent {
			if m.User == u && m.Watched {
				if _, ok := s.topic.first(s.eventID(m)); !ok {
					waiting = append(waiting, m)
				}
			}
		}
		if len(waiting) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			s.st.Sandbox.Revoke(s.emails[u])
			s.revokedAt[u] = time.Now()
			for _, m := range waiting {
				m.Excused = true
			}
			for key, e := range s.expected {
				if _, ok := s.topic.first(s.resolve(key, e)); !ok && e.User == u && e.Excused == "" {
					e.Excused = "revoked"
				}
			}
			held := s.held[u]
			delete(s.held, u)
			for _, i := range held {
				s.deliver(i)
			}
			s.mu.Unlock()
			s.progress("revoked user %d's tokens (%d messages excused, %d held until now)", u, len(waiting), len(held))
			return
		}
		s.mu.Unlock()
		sleep(ctx, 200*time.Millisecond)
	}
}

func (s *soak) kill(ctx context.Context, function string) {
	k := killed{Function: function, At: time.Now()}
	if err := s.st.Restart(ctx, function); err != nil {
		k.Error = err.Error()
	}
	s.tallyMu.Lock()
	s.kills = append(s.kills, k)
	s.tallyMu.Unlock()
}

func (s *soak) renewLoop(ctx context.Context) {
	for {
		_, err := s.st.Renew(ctx)
		if ctx.Err() != nil {
			return
		}
		s.tallyMu.Lock()
		s.renewRun++
		if err != nil {
			s.renewErr++
		}
		s.tallyMu.Unlock()
		if !sleep(ctx, s.cfg.RenewEvery) {
			return
		}
	}
}

// drain clears every fault and waits until every required message has
// arrived on both paths and every revoked user is marked, or Drain passes.
func (s *soak) drain(ctx context.Context) time.Duration {
	s.progress("send phase over; waiting for revocations, then clearing faults")
	s.revoking.Wait()
	s.following.Wait()
	s.st.Sandbox.ClearFaults("")
	s.gate.setOutage("")
	start := time.Now()
	end := start.Add(s.cfg.Drain)
	for next := start.Add(10 * time.Second); time.Now().Before(end); {
		if s.complete() {
			s.progress("drained in %v", time.Since(start).Round(time.Millisecond))
			return time.Since(start)
		}
		if time.Now().After(next) {
			s.status()
			next = next.Add(10 * time.Second)
		}
		if !sleep(ctx, 250*time.Millisecond) {
			break
		}
	}
	s.progress("drain gave up after %v", s.cfg.Drain)
	return -1
}

func (s *soak) complete() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.sent {
		if s.required(m) {
			id := s.eventID(m)
			if _, ok := s.topic.first(id); !ok {
				return false
			}
			if _, ok := s.gate.first(id); !ok {
				return false
			}
		}
	}
	for key, e := range s.expected {
		if id := s.resolve(key, e); e.Excused == "" && !e.Optional {
			if _, ok := s.topic.first(id); !ok {
				return false
			}
			if _, ok := s.gate.first(id); !ok {
				return false
			}
		}
	}
	for u := range s.revokedAt {
		if s.cursors.status(s.keys[u]) != store.ReauthRequired {
			return false
		}
	}
	return true
}

func (s *soak) status() {
	s.mu.Lock()
	sent, required, onTopic, onHook := len(s.sent), 0, 0, 0
	for _, m := range s.sent {
		if s.required(m) {
			required++
			id := s.eventID(m)
			if _, ok := s.topic.first(id); ok {
				onTopic++
			}
			if _, ok := s.gate.first(id); ok {
				onHook++
			}
		}
	}
	s.mu.Unlock()
	s.tallyMu.Lock()
	kills, renews := len(s.kills), s.renewRun
	s.tallyMu.Unlock()
	s.progress("sent %d, required %d, announced %d, webhook %d, kills %d, renew runs %d", sent, required, onTopic, onHook, kills, renews)
}

// required reports whether m must be announced: sent to a watched label of
// a user whose tokens were not yet revoked, not excused, and not deleted for
// good right after.
func (s *soak) required(m *sentMessage) bool {
	return m.Watched && !m.AfterRevoke && !m.Excused && !m.Deleted
}

func (s *soak) eventID(m *sentMessage) string {
	return events.ID(events.MessageReceived, s.keys[m.User], m.ID)
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
