// Package gmailapi is a faithful stand-in for the subset of the Gmail REST API
// v1 that the system uses: users.getProfile, users.watch, users.stop,
// users.history.list, users.messages.get, users.messages.list and
// users.labels.list, served under /gmail/v1/users/{userId}/ so the real
// google.golang.org/api/gmail/v1 client talks to it through
// option.WithEndpoint. It checks OAuth access tokens and scopes as Gmail does,
// keeps per-mailbox history with increasing ids, accounts quota units per user
// and per project, publishes watch notifications to the Pub/Sub emulator, and
// injects faults (errors, latency, dropped, duplicated or reordered
// notifications, delayed or expired history) for tests.
package gmailapi

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/pubsub/v2"
)

// TokenChecker validates an OAuth access token, returning its account and
// granted scopes (the sandbox's googleauth server).
type TokenChecker interface {
	Check(accessToken string) (email string, scopes []string, err error)
}

// Options configure a Server. Auth is required.
type Options struct {
	Auth                  TokenChecker
	PubSub                *pubsub.Client // client on the Pub/Sub emulator; nil refuses users.watch
	Quota                 QuotaProfile   // Standard2026 (the default) or Legacy
	UserUnitsPerMinute    int            // default: the quota profile's (6,000 in standard-2026)
	ProjectUnitsPerMinute int            // default: the quota profile's (1,200,000)
	HistoryRetention      time.Duration  // default 7 days
	PushInterval          time.Duration  // at most one notification per user per interval; default 1s
	Profile               Profile        // Strict (the default) or Kind
	MaxConcurrent         int            // calls in flight per user before 429; default 5
	Seed                  uint64         // seeds history and message ids; 0 picks one at random
	Now                   func() time.Time
	// AfterFunc runs f once Now has advanced by d (the push limiter's and
	// the push faults' delays); stop cancels it and reports whether it did.
	// Default time.AfterFunc; set it with Now when Now is a test's clock.
	AfterFunc func(d time.Duration, f func()) (stop func() bool)
	Logger    *slog.Logger
}

// Profile chooses how harsh the sandbox is where Google's documentation
// allows more than one reading (scripts/sandbox/README.md cites each).
type Profile string

const (
	// Strict does the harsher thing wherever the documentation allows it:
	// notifications above the per-user rate are dropped, history.list
	// answers with the mailbox's current history id even while records are
	// hidden, records show each message's current labels, pages may be
	// empty and still carry a nextPageToken, and quota errors come in every
	// documented shape.
	Strict Profile = ""
	// Kind coalesces notifications above the rate into a later one, answers
	// history.list with the newest visible record's id, shows the labels a
	// message had when each record was written, and fills every page.
	Kind Profile = "kind"
)

// Server is the Gmail fake. It is safe for concurrent use.
type Server struct {
	opts   Options
	quota  *quota
	faults *faultSet
	pushes *pusher

	mu            sync.Mutex
	inFlight      map[string]int // calls being served per mailbox
	rng           *rand.Rand
	lastMessageID uint64
	mailboxes     map[string]*mailbox
}

// New returns a Server with no mailboxes.
func New(opts Options) *Server {
	if opts.Quota == "" {
		opts.Quota = Standard2026
	}
	if opts.HistoryRetention <= 0 {
		opts.HistoryRetention = 7 * 24 * time.Hour
	}
	if opts.PushInterval <= 0 {
		opts.PushInterval = time.Second
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 5
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AfterFunc == nil {
		opts.AfterFunc = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s := &Server{
		opts:          opts,
		quota:         newQuota(opts.Quota, opts.UserUnitsPerMinute, opts.ProjectUnitsPerMinute, opts.Profile != Kind, opts.Now),
		inFlight:      map[string]int{},
		faults:        newFaultSet(),
		rng:           rng,
		lastMessageID: 0x190000000000000 + rng.Uint64N(1<<48),
		mailboxes:     map[string]*mailbox{},
	}
	s.pushes = newPusher(opts.PubSub, opts.PushInterval, opts.Profile == Kind, s.faults, opts.Logger, opts.Now, opts.AfterFunc)
	return s
}

// Register serves the Gmail API on mux under /gmail/v1/.
func (s *Server) Register(mux *http.ServeMux) { mux.Handle("/gmail/v1/", s) }

// Close stops pending notifications and waits for in-flight publishes.
func (s *Server) Close() error {
	s.pushes.close()
	return nil
}

// AddMailbox creates an empty mailbox whose history starts at a random large id.
func (s *Server) AddMailbox(email string) error {
	addr, e := normalizeEmail(email)
	if e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.mailboxes[addr]; ok {
		return &Error{409, "ALREADY_EXISTS", "duplicate", "mailbox " + addr + " already exists", ""}
	}
	base := 1_000_000 + s.rng.Uint64N(9_000_000)
	s.mailboxes[addr] = &mailbox{email: addr, historyID: base, floor: base, messages: map[string]*message{}, drafts: map[string]string{}}
	return nil
}

// Mailboxes returns every mailbox address, sorted.
func (s *Server) Mailboxes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.mailboxes))
	for a := range s.mailboxes {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// lookup returns the mailbox for email; callers hold s.mu.
func (s *Server) lookup(email string) (*mailbox, *Error) {
	mb := s.mailboxes[strings.ToLower(strings.TrimSpace(email))]
	if mb == nil {
		return nil, invalidArgument("unknown mailbox %q", email)
	}
	return mb, nil
}

// HistoryID returns the mailbox's current history id.
func (s *Server) HistoryID(email string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mb, e := s.lookup(email)
	if e != nil {
		return 0, e
	}
	return mb.historyID, nil
}

// Deliver adds a message to d.To's mailbox, writes a messageAdded history
// record and notifies the mailbox's watch if the message matches its filter.
func (s *Server) Deliver(d Delivery) (Delivered, error) {
	if d.From == "" {
		d.From = "Sandbox Sender <sender@example.com>"
	}
	if d.LabelIDs == nil {
		d.LabelIDs = []string{"INBOX", "UNREAD"}
	}
	for name, v := range map[string]string{"to": d.To, "from": d.From, "subject": d.Subject} {
		if e := checkHeaderValue(name, v); e != nil {
			return Delivered{}, e
		}
	}
	if len(d.Body) > maxBody || !utf8.ValidString(d.Body) {
		return Delivered{}, invalidArgument("body must be valid UTF-8 of at most %d bytes", maxBody)
	}
	if e := checkLabels(d.LabelIDs); e != nil {
		return Delivered{}, e
	}
	now := s.opts.Now()
	s.mu.Lock()
	mb, e := s.lookup(d.To)
	if e != nil {
		s.mu.Unlock()
		return Delivered{}, e
	}
	thread := ""
	if d.ThreadID != "" {
		if !slices.ContainsFunc(mb.order, func(o *message) bool { return o.threadID == d.ThreadID }) {
			s.mu.Unlock()
			return Delivered{}, invalidArgument("unknown thread %q", d.ThreadID)
		}
		thread = d.ThreadID
	}
	m := s.newMessage(mb, d.From, d.To, d.Subject, d.Body, d.LabelIDs, thread, now)
	rec := record{id: m.historyID, at: now, kind: MessageAdded, msgID: m.id, thread: m.threadID, labels: slices.Clone(m.labels)}
	s.commit(mb, rec) // unlocks
	return Delivered{ID: m.id, ThreadID: m.threadID, HistoryID: m.historyID}, nil
}

// DeleteMessage removes a message for good (messageDeleted) and returns the
// new history id.
func (s *Server) DeleteMessage(email, id string) (uint64, error) {
	now := s.opts.Now()
	s.mu.Lock()
	mb, e := s.lookup(email)
	if e != nil {
		s.mu.Unlock()
		return 0, e
	}
	m := mb.messages[id]
	if m == nil {
		s.mu.Unlock()
		return 0, errEntityNotFound
	}
	rec := s.removeMessage(mb, m, now)
	h := rec.id
	s.commit(mb, rec)
	return h, nil
}

// ModifyLabels adds and removes labels on a message, writing a labelAdded
// and/or labelRemoved record, and returns the new history id.
func (s *Server) ModifyLabels(email, id string, add, remove []string) (uint64, error) {
	if e := checkLabels(append(slices.Clone(add), remove...)); e != nil {
		return 0, e
	}
	now := s.opts.Now()
	s.mu.Lock()
	mb, e := s.lookup(email)
	if e != nil {
		s.mu.Unlock()
		return 0, e
	}
	m := mb.messages[id]
	if m == nil {
		s.mu.Unlock()
		return 0, errEntityNotFound
	}
	var added, removed []string
	for _, l := range uniq(add) {
		if !m.hasLabel(l) && !slices.Contains(remove, l) {
			m.labels = append(m.labels, l)
			added = append(added, l)
		}
	}
	for _, l := range uniq(remove) {
		if m.hasLabel(l) {
			m.labels = slices.DeleteFunc(m.labels, func(x string) bool { return x == l })
			removed = append(removed, l)
		}
	}
	var recs []record
	if len(added) > 0 {
		recs = append(recs, record{kind: LabelAdded, changed: added})
	}
	if len(removed) > 0 {
		recs = append(recs, record{kind: LabelRemoved, changed: removed})
	}
	if len(recs) == 0 {
		h := mb.historyID
		s.mu.Unlock()
		return h, nil
	}
	for i := range recs {
		recs[i].id, recs[i].at, recs[i].msgID, recs[i].thread = s.nextHistoryID(mb), now, m.id, m.threadID
		recs[i].labels = slices.Clone(m.labels)
		m.historyID = recs[i].id
	}
	h := m.historyID
	s.commit(mb, recs...)
	return h, nil
}

// commit appends history records, then, with s.mu released, notifies the
// watch if any record matches its label filter. Callers hold s.mu.
func (s *Server) commit(mb *mailbox, recs ...record) {
	for _, r := range recs {
		mb.add(r)
	}
	w := mb.watch
	var topic string
	var notify bool
	if w != nil && s.opts.Now().Before(w.expiration) {
		topic = w.topic
		for _, r := range recs {
			labels := r.labels
			if w.behavior == "include" {
				labels = append(slices.Clone(labels), r.changed...)
			}
			notify = notify || w.matches(labels)
		}
	}
	email, h := mb.email, mb.historyID
	s.mu.Unlock()
	if notify {
		s.pushes.notify(email, topic, h)
	}
}

// WatchState is what users.watch set up for a mailbox, and the fate of its
// notifications so far.
type WatchState struct {
	Active              bool      `json:"active"`
	TopicName           string    `json:"topicName,omitempty"`
	LabelIDs            []string  `json:"labelIds,omitempty"`
	LabelFilterBehavior string    `json:"labelFilterBehavior,omitempty"` // INCLUDE or EXCLUDE
	HistoryID           uint64    `json:"historyId,omitempty"`           // the mailbox's history id when watch was called
	Created             time.Time `json:"created,omitzero"`
	Expiration          time.Time `json:"expiration,omitzero"`
	Notifications       PushStats `json:"notifications"`
}

// Watch returns the mailbox's watch state. Active is false when no watch was
// set, it was stopped, or it expired.
func (s *Server) Watch(email string) (WatchState, error) {
	s.mu.Lock()
	mb, e := s.lookup(email)
	if e != nil {
		s.mu.Unlock()
		return WatchState{}, e
	}
	var st WatchState
	if w := mb.watch; w != nil {
		st = WatchState{
			Active:              s.opts.Now().Before(w.expiration),
			TopicName:           w.topic,
			LabelIDs:            slices.Clone(w.labels),
			LabelFilterBehavior: strings.ToUpper(w.behavior),
			HistoryID:           w.historyID,
			Created:             w.created,
			Expiration:          w.expiration,
		}
	}
	addr := mb.email
	s.mu.Unlock()
	st.Notifications = s.pushes.stats(addr)
	return st, nil
}

// Usage returns the quota counters of one mailbox, or of the project when
// email is "".
func (s *Server) Usage(email string) Usage { return s.quota.usage(strings.ToLower(email)) }

// ResetUsage zeroes every quota counter and window.
func (s *Server) ResetUsage() { s.quota.reset() }

// SetQuota switches to quota profile p, taking its limits and costs, then
// sets the per-minute unit limits given as positive numbers. p == "" keeps
// the profile in force and a limit given as 0 as it is. Usage counted so far
// stays.
func (s *Server) SetQuota(p QuotaProfile, userUnitsPerMinute, projectUnitsPerMinute int) error {
	if p != "" && !validQuotaProfile(p) {
		return invalidArgument("unknown quota profile %q (want one of %v)", p, QuotaProfiles)
	}
	if userUnitsPerMinute < 0 || projectUnitsPerMinute < 0 {
		return invalidArgument("quota limits must not be negative")
	}
	s.quota.setQuota(p, userUnitsPerMinute, projectUnitsPerMinute)
	return nil
}

// Quota returns the quota profile in force, its limits and costs.
func (s *Server) Quota() QuotaState { return s.quota.state() }

// SetFaults replaces the faults of one mailbox, or the global ones when email
// is "". A mailbox's own faults take the place of the global ones.
func (s *Server) SetFaults(email string, f Faults) error {
	if e := f.validate(); e != nil {
		return e
	}
	key := ""
	thresholds := map[string]uint64{}
	s.mu.Lock()
	if email != "" {
		mb, e := s.lookup(email)
		if e != nil {
			s.mu.Unlock()
			return e
		}
		key = mb.email
		thresholds[key] = mb.historyID
	} else {
		for a, mb := range s.mailboxes {
			thresholds[a] = mb.historyID
		}
	}
	s.mu.Unlock()
	if !f.ExpireHistory {
		thresholds = nil
	}
	s.faults.set(key, f, thresholds)
	return nil
}

// ClearFaults removes one mailbox's faults, or every fault when email is "".
func (s *Server) ClearFaults(email string) { s.faults.clear(strings.ToLower(email)) }

// Faults returns the faults in force: "" for the global ones, and per mailbox.
func (s *Server) Faults() map[string]Faults { return s.faults.all() }

// ServeHTTP serves one Gmail API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			s.opts.Logger.Error("gmail handler panic", "panic", v)
			statusError(500, "").Respond(w)
		}
	}()
	resp, e := s.serve(r)
	if e != nil {
		e.Respond(w)
		return
	}
	if resp == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// call is one authenticated request to a mailbox.
type call struct {
	ctx      context.Context
	email    string
	metadata bool // only the gmail.metadata scope was granted
	query    url.Values
	body     io.Reader
	id       string // message id for messages.get
}

func (s *Server) serve(r *http.Request) (any, *Error) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/gmail/v1/users/")
	if !ok {
		return nil, notFound("Method not found.")
	}
	parts := strings.Split(rest, "/")
	m, id := route(r.Method, parts)
	if m == nil {
		return nil, notFound("Method not found: %s %s", r.Method, r.URL.Path)
	}
	userID, err := url.PathUnescape(parts[0])
	if err != nil || userID == "" {
		return nil, invalidArgument("Invalid user id.")
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || strings.TrimSpace(token) == "" {
		return nil, errNoCredentials
	}
	email, scopes, err := s.opts.Auth.Check(strings.TrimSpace(token))
	if err != nil {
		return nil, errBadCredentials
	}
	email = strings.ToLower(email)
	c := &call{ctx: r.Context(), email: email, query: r.URL.Query(), body: r.Body, id: id}
	switch {
	case hasAny(scopes, ScopeFull, ScopeModify, ScopeReadonly):
	case hasAny(scopes, ScopeMetadata):
		c.metadata = true
	default:
		return nil, errScopes
	}
	if userID != "me" && !strings.EqualFold(userID, email) {
		return nil, forbidden("forbidden", "Delegation denied for %s", userID)
	}
	s.mu.Lock()
	_, exists := s.mailboxes[email]
	s.mu.Unlock()
	if !exists {
		return nil, errMailDisabled
	}
	if s.opts.Profile != Kind {
		release, ok := s.enter(email)
		if !ok {
			s.quota.countRefused(email)
			return nil, errConcurrent
		}
		defer release()
	}
	if e := s.quota.charge(email, m.name); e != nil {
		return nil, e
	}
	if d := s.faults.latency(email, m.name); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return nil, statusError(503, "")
		}
	}
	if e := s.faults.injectedError(email, m.name, s.opts.Profile != Kind); e != nil {
		s.quota.countInjected(email)
		return nil, e
	}
	return m.handle(s, c)
}

// enter admits one more call in flight for email, up to the per-user
// concurrency cap Gmail enforces. Google does not publish its number;
// clients meet it above 5 (amp-labs/connectors#2942, "cap concurrent
// messages.get fetches at 5" to stay under "Too many concurrent requests
// for user"), so the default is 5.
func (s *Server) enter(email string) (release func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inFlight[email] >= s.opts.MaxConcurrent {
		return nil, false
	}
	s.inFlight[email]++
	return func() {
		s.mu.Lock()
		s.inFlight[email]--
		s.mu.Unlock()
	}, true
}

// method is one Gmail API method: its quota name and handler.
type method struct {
	name   string
	handle func(*Server, *call) (any, *Error)
}

// Method names as counted in quota usage and named in faults.
const (
	GetProfile   = "getProfile"
	WatchMethod  = "watch"
	Stop         = "stop"
	HistoryList  = "history.list"
	MessagesGet  = "messages.get"
	MessagesList = "messages.list"
	LabelsList   = "labels.list"
)

func route(httpMethod string, parts []string) (*method, string) {
	if len(parts) < 2 {
		return nil, ""
	}
	key := httpMethod + " " + parts[1]
	if len(parts) == 3 && parts[1] == "messages" && parts[2] != "" {
		key += "/{id}"
	} else if len(parts) != 2 {
		return nil, ""
	}
	var h func(*Server, *call) (any, *Error)
	var name string
	switch key {
	case "GET profile":
		name, h = GetProfile, (*Server).getProfile
	case "POST watch":
		name, h = WatchMethod, (*Server).watch
	case "POST stop":
		name, h = Stop, (*Server).stop
	case "GET history":
		name, h = HistoryList, (*Server).listHistory
	case "GET messages/{id}":
		name, h = MessagesGet, (*Server).getMessage
	case "GET messages":
		name, h = MessagesList, (*Server).listMessages
	case "GET labels":
		name, h = LabelsList, (*Server).listLabels
	default:
		return nil, ""
	}
	id := ""
	if len(parts) == 3 {
		id, _ = url.PathUnescape(parts[2])
	}
	return &method{name: name, handle: h}, id
}

// OAuth scopes Gmail understands.
const (
	ScopeFull     = "https://mail.google.com/"
	ScopeModify   = "https://www.googleapis.com/auth/gmail.modify"
	ScopeReadonly = "https://www.googleapis.com/auth/gmail.readonly"
	ScopeMetadata = "https://www.googleapis.com/auth/gmail.metadata"
)

func hasAny(have []string, want ...string) bool {
	return slices.ContainsFunc(have, func(s string) bool { return slices.Contains(want, s) })
}

func uniq(ids []string) []string {
	var out []string
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}
